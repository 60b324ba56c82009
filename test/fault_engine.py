"""An oracle engine for the fault suite: actions that are an exact function of the observation.

Real weights make it impossible to tell a right action from a wrong one; this engine makes it
easy. For joints q (h_o = 2 frames, a period apart) it returns the linear extrapolation
``q1 + (i + 1) * (q1 - q0)`` for action i, and as a last dimension the time between the two
history frames in periods (the feeder writes each frame's stamp, in ms, into its first
pixel), so a chunk built from the wrong frames, the wrong joints or a wrong history span has
visibly wrong actions. A control file injects engine faults: ``hang`` blocks calls until it
changes, ``crash`` raises. Run as a script it is the node's process: ``fault_engine.py BUNDLE
CONTROL PARAMS_JSON`` starts the policy node over DDS with this engine.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from helpers import tiny_config

from uwm_ros.bundle.manifest import WEIGHTS, Manifest, file_record
from uwm_ros.engines.base import Engine, Observation, Prediction
from uwm_training.model import PolicySpec

JOINTS = ("joint0", "joint1")
ACTIONS = (*JOINTS, "frame_gap")
CAMERAS = ("left", "right")
FPS = 10.0


def write_bundle(root: Path) -> Path:
    """A bundle.yaml the oracle can load (it needs no graphs; the weights file is empty)."""
    cfg = tiny_config(cameras=CAMERAS, proprio_dim=len(JOINTS), action_dim=len(ACTIONS))
    stats = {"min": [-10.0] * 3, "max": [10.0] * 3}
    spec = PolicySpec(
        FPS,
        ACTIONS,
        JOINTS,
        {"actions": stats, "proprio": {"min": [-10.0] * 2, "max": [10.0] * 2}},
        action_kind="positions",
    )
    root.mkdir(parents=True, exist_ok=True)
    (root / WEIGHTS).write_bytes(b"")
    files = {WEIGHTS: file_record(root / WEIGHTS)}
    manifest = Manifest(cfg, spec, 18, ["policy", "forward_dynamics"], [], files)
    (root / "bundle.yaml").write_text(yaml.safe_dump(manifest.to_dict(), sort_keys=False))
    return root


def stamp_pixel(stamp: float) -> np.ndarray:
    """A frame's stamp in ms (mod 2^24) as the RGB of its first pixel."""
    ms = int(round(stamp * 1000)) % (1 << 24)
    return np.array([ms & 255, ms >> 8 & 255, ms >> 16], np.uint8)


def pixel_stamp(rgb: np.ndarray) -> int:
    return int(rgb[0, 0, 0]) | int(rgb[0, 0, 1]) << 8 | int(rgb[0, 0, 2]) << 16


def oracle_actions(q0: np.ndarray, q1: np.ndarray, gap: float, horizon: int) -> np.ndarray:
    steps = np.arange(1, horizon + 1)[:, None]
    joints = q1[None, :] + steps * (q1 - q0)[None, :]
    return np.concatenate([joints, np.full((horizon, 1), gap)], axis=1)


class OracleEngine(Engine):
    backend = "oracle"

    def __init__(self, bundle: str | Path, control: str | Path) -> None:
        super().__init__(bundle)
        self.control = Path(control)

    def _fault(self) -> str:
        try:
            return self.control.read_text().strip()
        except OSError:
            return ""

    def run_loop(self, mode: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def decode(self, latents: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(
        self,
        obs: Observation,
        mode: str,
        actions=None,
        future_latents=None,  # type: ignore[no-untyped-def,override]
        noise=None,
        decode=True,
    ) -> Prediction:
        while self._fault() == "hang":
            time.sleep(0.02)
        if self._fault() == "crash":
            raise RuntimeError("injected engine crash")
        t0 = time.perf_counter()
        S = self.cfg.image_size
        frames = {c: np.zeros((2, S, S, 3), np.uint8) for c in CAMERAS}
        if mode == "forward_dynamics":
            return Prediction(None, frames, (time.perf_counter() - t0) * 1e3)
        left = obs.images["left"]
        gap = (pixel_stamp(left[-1]) - pixel_stamp(left[0])) % (1 << 24) * 1e-3 * FPS
        q = np.asarray(obs.joint_positions, np.float64)
        out = oracle_actions(q[0], q[-1], gap, self.cfg.horizon).astype(np.float32)
        ms = (time.perf_counter() - t0) * 1e3
        return Prediction(out, frames if mode == "joint" else None, ms)


def main(argv: list[str]) -> None:
    """The policy node on DDS with the oracle engine, until SIGTERM."""
    import signal

    from uwm_ros.nodes.policy_node import run
    from uwm_ros.transport.dds import DDSTransport

    bundle, control, params = argv[0], argv[1], json.loads(argv[2])
    transport = DDSTransport("uwm_policy", params=params)
    signal.signal(signal.SIGTERM, lambda *_: transport.shutdown())
    print("node starting", flush=True)
    run(transport, OracleEngine(bundle, control))


if __name__ == "__main__":
    main(sys.argv[1:])
