"""A deploy install runs the policy: ``uwm policy`` with the training stack made unimportable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from dds_helpers import dds_domain, feed_inputs, spin_until, subprocess_env  # noqa: F401

from uwm_ros.transport.dds import DDSTransport

# What `pip install .[deploy]` lacks: everything only the "train" extra brings (setup.py).
TRAINING_STACK = ("torch", "safetensors", "zarr", "onnx", "onnxscript", "av", "pyarrow")
BLOCKER = f"""
import sys

class _TrainingStackBlocker:
    '''Raise for the training stack, as a deploy install (pip install .[deploy]) would.'''

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {TRAINING_STACK!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (deploy install)", name=name)
        return None

sys.meta_path.insert(0, _TrainingStackBlocker())
"""


@pytest.fixture
def deploy_env(tmp_path: Path, dds_domain: int) -> dict[str, str]:  # noqa: F811
    """The test's DDS domain, the repo, and a sitecustomize that hides the training stack."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER)
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "site"), env["PYTHONPATH"]])
    return env


def test_the_blocker_hides_torch(deploy_env: dict[str, str]) -> None:
    """Without this, the test below would pass whatever the node imports."""
    out = subprocess.run(
        [sys.executable, "-c", "import torch"], env=deploy_env, capture_output=True, text=True
    )
    assert out.returncode != 0 and "deploy install" in out.stderr


def test_uwm_policy_without_torch_publishes_chunks_over_dds(
    deploy_env: dict[str, str], tiny_bundle
) -> None:  # type: ignore[no-untyped-def]
    bundle, model, spec = tiny_bundle
    uwm = Path(sys.executable).with_name("uwm")  # the console script, as a user runs it
    params = ["enabled=true", "execute_steps=2", "max_age=1.0", "max_skew=0.5", "control_rate=20"]
    cmd = [str(uwm), "policy", "--bundle", str(bundle), "--transport", "dds"]
    for p in params:
        cmd += ["-p", p]
    node = subprocess.Popen(cmd, env=deploy_env, stderr=subprocess.PIPE, text=True)
    tester = DDSTransport("tester")
    chunks: list = []  # type: ignore[type-arg]
    tester.subscribe("/uwm_policy/action_chunk", "uwm_ros/msg/ActionChunk", chunks.append)
    feeder = feed_inputs(tester, model.cfg.cameras, spec.proprio_names)
    try:
        # Generous: the child imports onnxruntime and warms every graph on a loaded machine.
        spin_until(tester, lambda: len(chunks) >= 2 or node.poll() is not None, timeout_s=180)
    finally:
        feeder.cancel()
        tester.shutdown()
        node.send_signal(signal.SIGINT)
        try:
            _, stderr = node.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            node.kill()
            _, stderr = node.communicate()
    assert len(chunks) >= 2, stderr
    assert list(chunks[0].names) == list(spec.action_names)
    assert "engine: onnxruntime on cpu" in stderr and "torch not installed" in stderr
    assert "Traceback" not in stderr, stderr
