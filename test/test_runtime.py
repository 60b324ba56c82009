"""PolicyRuntime and its scheduler in simulated time, with a real engine on a tiny bundle."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from uwm_ros.engines import Observation
from uwm_ros.engines.torch_engine import TorchEngine
from uwm_ros.runtime import ERROR, OK, STALE, ChunkScheduler, PolicyRuntime, RuntimeConfig

NAMES = ["extra", "joint1", "joint0"]  # any order, an extra joint the model does not use


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
        rt.on_joints(t, NAMES, [9.0, 0.2, -0.3])


def run_until_chunk(rt: PolicyRuntime, clock: SimClock, timeout: float = 20.0, feeder=None, **kw):  # type: ignore[no-untyped-def]
    """Feed inputs (``feed``, or ``feeder()`` when given) and tick until a chunk comes out;
    simulated time moves 50 ms a step, but not while an inference runs (so inference takes no
    simulated time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        feeder() if feeder else feed(rt, clock.now, **kw)
        chunk = rt.tick()
        if chunk is not None:
            return chunk
        time.sleep(0.01)
        if not rt._busy:
            clock.now += 0.05
    return None


@pytest.fixture
def runtime_factory(tiny_bundle):  # type: ignore[no-untyped-def]
    made = []

    def make(engine=None, **cfg):  # type: ignore[no-untyped-def]
        engine = engine or TorchEngine(tiny_bundle[0])
        clock = SimClock()
        # a generous engine deadline: a loaded machine must not trip the watchdog here
        cfg = {"enabled": True, "engine_timeout": 60.0, **cfg}
        rt = PolicyRuntime(engine, RuntimeConfig(**cfg), clock)
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
    trigger = rt.scheduler.trigger_time()  # t0 + k*dt - measured delay
    assert trigger == pytest.approx(chunk.stamp + 2 * 0.1 - rt.scheduler.delay)

    def advance(to: float) -> None:  # inputs every 50 ms up to ``to``, then one tick
        while clock.now < to:
            clock.now = min(clock.now + 0.05, to)
            feed(rt, clock.now)
        rt.tick()

    if trigger > clock.now + 0.01:  # before it nothing starts (unless inference is that slow)
        advance(trigger - 0.01)
        assert not rt._busy
    advance(max(clock.now, trigger) + 0.01)  # past it: the next inference starts
    assert rt._busy


def test_disabled_gate_publishes_nothing(runtime_factory) -> None:  # type: ignore[no-untyped-def]
    rt, clock, _ = runtime_factory(enabled=False)
    assert run_until_chunk(rt, clock, timeout=3.0) is None
    assert "disabled" in rt.status
    rt.update(enabled=True)  # live: the next chunk goes out
    assert run_until_chunk(rt, clock) is not None
    rt.update(enabled=False)
    assert rt.scheduler.chunk_t0 is None  # the plan is dropped at once
    assert run_until_chunk(rt, clock, timeout=2.0) is None


def test_stale_inputs_dropout_and_recovery(runtime_factory) -> None:  # type: ignore[no-untyped-def]
    rt, clock, _ = runtime_factory(max_age=0.3)
    assert run_until_chunk(rt, clock) is not None
    clock.now += 0.5  # the right camera stops, the rest keeps coming
    feed(rt, clock.now, cameras=("left",))
    assert rt.tick() is None and "stale inputs" in rt.status and "right" in rt.status
    assert rt.health.level == STALE
    assert rt.scheduler.chunk_t0 is None  # plan dropped: nothing left to execute
    assert run_until_chunk(rt, clock) is not None  # camera back: chunks again
    assert rt.health.level == OK


def test_nonfinite_engine_output_is_never_published(runtime_factory) -> None:  # type: ignore[no-untyped-def]
    rt, clock, engine = runtime_factory()
    with torch.no_grad():
        engine.model.denoiser.action_decoder[2].bias.fill_(float("nan"))
    assert run_until_chunk(rt, clock, timeout=3.0) is None
    assert rt.counts["rejected_nonfinite"] >= 1 and "non-finite" in rt.status
    assert rt.health.level == ERROR


def test_actions_are_clipped_to_bounds(runtime_factory) -> None:  # type: ignore[no-untyped-def]
    rt, clock, _ = runtime_factory(lower=[-0.01, -0.01, -0.01], upper=[0.01, 0.01, 0.01])
    chunk = run_until_chunk(rt, clock)
    assert chunk is not None and np.abs(chunk.actions).max() <= 0.01 + 1e-7
    assert rt.counts["clipped"] == 1


def _observed(rt: PolicyRuntime, stamp: float) -> Observation:
    """The observation the runtime builds for ``stamp``, in engine input form."""
    images, joints = rt.history.observation(stamp)
    return Observation(images, joints[:, rt._proprio])


def test_predicted_frames_never_change_the_executed_actions(runtime_factory, tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    """frames_every=1: the executed chunk is still the policy sampler's for the same noise;
    the frames come from forward dynamics given it, stamped after the whole horizon."""
    rt, clock, _ = runtime_factory(frames_every=1, seam="switch")
    chunk = run_until_chunk(rt, clock)
    assert chunk is not None and chunk.mode == "policy" and chunk.offset == 0
    reference = TorchEngine(tiny_bundle[0])  # same seed: the same first start noise
    expected = reference.predict(_observed(rt, chunk.stamp), "policy").actions
    np.testing.assert_allclose(chunk.actions, expected, rtol=1e-5, atol=1e-6)
    deadline = time.monotonic() + 20
    while not (frames := rt.pop_frames()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert frames and frames[0].sequence == chunk.sequence
    assert frames[0].mode == "forward_dynamics" and set(frames[0].images) == {"left", "right"}
    h = tiny_bundle[1].cfg.horizon
    assert frames[0].stamps(2) == pytest.approx(
        [chunk.stamp + h * 0.1, chunk.stamp + (h + 1) * 0.1]
    )


def test_joint_sampler_only_when_configured(runtime_factory) -> None:  # type: ignore[no-untyped-def]
    rt, clock, _ = runtime_factory(sampler="joint", frames_every=1)
    chunk = run_until_chunk(rt, clock)
    assert chunk is not None and chunk.mode == "joint"
    with pytest.raises(ValueError, match="sampler"):
        RuntimeConfig(sampler="video")


def test_history_frames_are_one_period_apart_with_jittered_stamps(runtime_factory) -> None:  # type: ignore[no-untyped-def]
    """A camera at the model rate with +-5 ms jitter: frame t pairs with t-1, never t-2."""
    rt, _, _ = runtime_factory()
    rng = np.random.default_rng(0)
    stamps = 100.0 + np.arange(40) * 0.1 + rng.uniform(-0.005, 0.005, 40)
    for k, t in enumerate(stamps):
        rt.on_image("left", t, np.full((8, 8, 3), k, np.uint8))
        rt.on_image("right", t, np.full((8, 8, 3), k, np.uint8))
        rt.on_joints(t, NAMES, [0.0, float(k), 0.0])
        if k:
            images, joints = rt.history.observation(t)
            assert images["left"][:, 0, 0, 0].tolist() == [k - 1, k], k
            assert joints[:, 1].tolist() == [k - 1, k]  # model joints in order: joint0, joint1


def test_history_start_pads_with_the_same_frame(runtime_factory) -> None:  # type: ignore[no-untyped-def]
    """Two frames 20 ms apart at the start: frame t-1 repeats frame t (as training pads an
    episode start), never pairs it with a frame 20 ms older."""
    rt, _, _ = runtime_factory()
    for k, t in enumerate((100.0, 100.02)):
        for cam in ("left", "right"):
            rt.on_image(cam, t, np.full((8, 8, 3), k, np.uint8))
        rt.on_joints(t, NAMES, [0.0, float(k), 0.0])
    images, joints = rt.history.observation(100.02)
    assert images["left"][:, 0, 0, 0].tolist() == [1, 1] and joints[:, 1].tolist() == [1, 1]


def test_history_spans_time_not_a_count_for_1khz_joints(runtime_factory) -> None:  # type: ignore[no-untyped-def]
    rt, clock, _ = runtime_factory()
    t = 100.0 + np.arange(1500) * 0.001  # 1.5 s at 1 kHz, the value of joint0 is its stamp
    for x in t:
        rt.on_joints(x, ["joint0", "joint1"], [x, 0.0])
    for cam in ("left", "right"):
        rt.on_image(cam, t[-1] - 0.1, np.zeros((8, 8, 3), np.uint8))
        rt.on_image(cam, t[-1], np.zeros((8, 8, 3), np.uint8))
    _, joints = rt.history.observation(t[-1])
    np.testing.assert_allclose(joints[:, 0], [t[-1] - 0.1, t[-1]], atol=0.0006)


def test_joint_states_from_two_publishers_merge_by_name(runtime_factory) -> None:  # type: ignore[no-untyped-def]
    rt, clock, _ = runtime_factory(max_age=0.3)

    def feed_split(gripper: bool = True) -> None:
        for cam in ("left", "right"):
            rt.on_image(cam, clock.now, np.zeros((40, 40, 3), np.uint8))
        rt.on_joints(clock.now, ["joint0"], [0.1])  # the arm
        if gripper:
            rt.on_joints(clock.now, ["joint1", "finger"], [0.2, 9.0])  # the gripper

    chunk = run_until_chunk(rt, clock, feeder=feed_split)
    assert chunk is not None
    _, joints = rt.history.observation(chunk.stamp)
    assert joints[-1].tolist() == [0.1, 0.2]
    for _ in range(10):  # the gripper publisher stops: its joint goes stale, named
        clock.now += 0.05
        feed_split(gripper=False)
    assert rt.tick() is None and rt.health.level == STALE and "joint1" in rt.status


def test_bad_joint_states_are_refused_with_the_field_named(runtime_factory) -> None:  # type: ignore[no-untyped-def]
    rt, clock, _ = runtime_factory()
    rt.on_joints(clock.now, ["joint0", "joint1"], [0.0, float("nan")], "/joint_states")
    rt.on_joints(clock.now, ["joint0", "joint1", "joint2"], [0.0, 1.0], "/joint_states")  # short
    rt.on_joints(clock.now, ["joint0", "joint0", "joint1"], [0.0, 1.0, 2.0], "/joint_states")
    assert rt.counts["rejected_inputs"] == 3
    assert rt.history.streams["joints"].received == 0  # nothing of them was used
    level, message = rt.health.report()
    assert level != OK and "/joint_states" in message and "'name'" in message
    rt.on_joints(clock.now, ["joint0", "joint1"], [0.0, float("inf")])
    assert "position[1]" in rt.health.report()[1]


def test_time_going_backwards_resets_the_history(runtime_factory) -> None:  # type: ignore[no-untyped-def]
    """A bag loop / sim reset: stamps jump 100 s back; nothing from before is used again."""
    rt, clock, _ = runtime_factory()
    clock.now = 200.0
    assert run_until_chunk(rt, clock) is not None
    clock.now = 100.0
    feed(rt, clock.now)
    assert rt.tick() is None and rt.counts["time_resets"] == 1
    assert "backwards" in rt.health.report()[1]
    assert all((s.newest or 0) < 150 for s in rt.history.streams.values())
    chunk = run_until_chunk(rt, clock)
    assert chunk is not None and chunk.stamp < 150


class HangingEngine:
    """Delegates to a real engine; ``hang`` blocks calls until cleared, ``crash`` raises."""

    def __init__(self, engine: TorchEngine) -> None:
        self.engine, self.manifest, self.cfg = engine, engine.manifest, engine.cfg
        self.hang, self.crash = threading.Event(), False
        self.released = threading.Event()

    def predict(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.crash:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        if self.hang.is_set():
            self.released.wait(timeout=30)
        return self.engine.predict(*args, **kwargs)


def test_hung_or_crashing_engine_stops_chunks_and_recovers(runtime_factory, tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    engine = HangingEngine(TorchEngine(tiny_bundle[0]))
    rt, clock, _ = runtime_factory(engine=engine, engine_timeout=3.0, max_age=5.0, max_skew=5.0)
    assert run_until_chunk(rt, clock) is not None
    engine.hang.set()
    deadline = time.monotonic() + 20
    while rt.health.level != ERROR and time.monotonic() < deadline:
        run_until_chunk(rt, clock, timeout=0.1)
    assert rt.health.level == ERROR and "deadline" in rt.status
    assert rt.scheduler.chunk_t0 is None and rt.counts["engine_timeouts"] == 1
    engine.hang.clear()
    engine.released.set()  # the call returns: its late result is dropped, then chunks again
    assert run_until_chunk(rt, clock) is not None and rt.health.level == OK
    assert rt.counts["discarded"] == 1
    engine.crash = True
    deadline = time.monotonic() + 20
    while rt.health.level != ERROR and time.monotonic() < deadline:
        run_until_chunk(rt, clock, timeout=0.1)
    assert "illegal memory access" in rt.status and rt.scheduler.chunk_t0 is None
    engine.crash = False
    assert run_until_chunk(rt, clock) is not None and rt.health.level == OK


def test_deltas_are_published_as_positions(runtime_factory, tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    """A model trained on joint deltas: positions = observed joints + running sum of deltas."""
    engine = TorchEngine(tiny_bundle[0])
    engine.manifest.spec.action_kind = "deltas"
    engine.manifest.spec.action_names = ("joint0", "joint1", "extra")
    rt, clock, _ = runtime_factory(engine=engine, seam="switch")
    chunk = run_until_chunk(rt, clock)
    assert chunk is not None and chunk.kind == "positions" and chunk.offset == 0
    reference = TorchEngine(tiny_bundle[0])
    deltas = reference.predict(_observed(rt, chunk.stamp), "policy").actions
    expected = np.array([-0.3, 0.2, 9.0]) + np.cumsum(deltas, axis=0)
    np.testing.assert_allclose(chunk.actions, expected, rtol=1e-5, atol=1e-5)


def test_runtime_core_does_not_import_rclpy() -> None:
    code = "import sys, uwm_ros.runtime, uwm_ros.engines; assert 'rclpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
