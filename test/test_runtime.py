"""PolicyRuntime and its scheduler in simulated time, with a real engine on a tiny bundle."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from uwm_ros.engines.torch_engine import TorchEngine
from uwm_ros.runtime import ChunkScheduler, PolicyRuntime, RuntimeConfig


def test_seam_blend_and_switch_in_simulated_time() -> None:
    # The old plan ends at 0.7: three overlapping actions cross-fade (w = 1/4, 2/4, 3/4).
    for seam, expected in (("blend", [0.25, 0.5, 0.75, 1, 1, 1]), ("switch", [1, 1, 1, 1, 1, 1])):
        s = ChunkScheduler(dt=0.1, execute_steps=4, seam=seam, blend_steps=4)
        assert s.trigger_time() == -np.inf  # no plan: infer at once
        times, _ = s.merge(0.0, np.zeros((8, 1)), now=0.05)
        np.testing.assert_allclose(times, np.arange(1, 8) * 0.1)  # action 0 was already past
        s.observe_delay(0.15)
        assert s.trigger_time() == pytest.approx(0.4 - 0.15)  # ready when action k=4 is due
        times, plan = s.merge(0.25, np.ones((8, 1)), now=0.4)
        np.testing.assert_allclose(times, 0.25 + np.arange(2, 8) * 0.1)  # delay dropped
        np.testing.assert_allclose(plan[:, 0], expected)
    s.observe_delay(0.05)  # the estimate decays slowly: triggers err early
    assert 0.05 < s.delay < 0.15


class SimClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def feed(rt: PolicyRuntime, t: float, cameras=("left", "right"), joints=True) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(int(t * 1000))
    for cam in cameras:
        rt.on_image(cam, t, rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    if joints:
        rt.on_joints(t, ["extra", "joint1", "joint0"], [9.0, 0.2, -0.3])  # any order, extra joints


def run_until_chunk(rt: PolicyRuntime, clock: SimClock, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        feed(rt, clock.now)
        chunk = rt.tick()
        if chunk is not None:
            return chunk
        time.sleep(0.01)
    return None


@pytest.fixture
def runtime_factory(tiny_bundle):  # type: ignore[no-untyped-def]
    made = []

    def make(**cfg):  # type: ignore[no-untyped-def]
        engine = TorchEngine(tiny_bundle[0])
        clock = SimClock()
        rt = PolicyRuntime(engine, RuntimeConfig(**{"enabled": True, **cfg}), clock)
        made.append(rt)
        return rt, clock, engine

    yield make
    for rt in made:
        rt.close()


def test_chunks_have_names_shapes_and_future_stamps(runtime_factory, tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    rt, clock, engine = runtime_factory(execute_steps=2)
    chunk = run_until_chunk(rt, clock)
    assert chunk is not None and rt.status == "ok"
    spec = tiny_bundle[2]
    assert chunk.names == spec.action_names and chunk.dt == pytest.approx(0.1)
    assert chunk.actions.shape[1] == len(spec.action_names) and np.isfinite(chunk.actions).all()
    assert chunk.stamp == clock.now and chunk.start >= clock.now and chunk.mode == "policy"
    clock.now += 0.05  # before the trigger time: no new inference is started
    feed(rt, clock.now)
    rt.tick()
    assert not rt._busy
    clock.now += 0.2  # past t0 + k*dt - delay: the next inference starts
    feed(rt, clock.now)
    rt.tick()
    assert rt._busy


def test_disabled_gate_publishes_nothing(runtime_factory) -> None:  # type: ignore[no-untyped-def]
    rt, clock, _ = runtime_factory(enabled=False)
    assert run_until_chunk(rt, clock, timeout=3.0) is None
    assert "disabled" in rt.status


def test_stale_inputs_dropout_and_recovery(runtime_factory) -> None:  # type: ignore[no-untyped-def]
    rt, clock, _ = runtime_factory(max_age=0.3)
    assert run_until_chunk(rt, clock) is not None
    clock.now += 0.5  # the right camera stops, the rest keeps coming
    feed(rt, clock.now, cameras=("left",))
    assert rt.tick() is None and "stale inputs" in rt.status and "right" in rt.status
    assert rt.scheduler.chunk_t0 is None  # plan dropped: nothing left to execute
    assert run_until_chunk(rt, clock) is not None  # camera back: chunks again


def test_nonfinite_engine_output_is_never_published(runtime_factory) -> None:  # type: ignore[no-untyped-def]
    rt, clock, engine = runtime_factory()
    with torch.no_grad():
        engine.model.denoiser.action_decoder[2].bias.fill_(float("nan"))
    assert run_until_chunk(rt, clock, timeout=3.0) is None
    assert rt.counts["rejected_nonfinite"] >= 1 and "non-finite" in rt.status


def test_actions_are_clipped_to_bounds(runtime_factory) -> None:  # type: ignore[no-untyped-def]
    rt, clock, _ = runtime_factory(lower=[-0.01, -0.01, -0.01], upper=[0.01, 0.01, 0.01])
    chunk = run_until_chunk(rt, clock)
    assert chunk is not None and np.abs(chunk.actions).max() <= 0.01 + 1e-7
    assert rt.counts["clipped"] == 1


def test_joint_states_without_a_model_joint_are_skipped(runtime_factory) -> None:  # type: ignore[no-untyped-def]
    rt, clock, _ = runtime_factory()
    rt.on_joints(clock.now, ["joint0"], [0.0])
    assert rt.counts["skipped_inputs"] == 1 and "joint1" in rt.status


def test_runtime_core_does_not_import_rclpy() -> None:
    code = "import sys, uwm_ros.runtime, uwm_ros.engines; assert 'rclpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
