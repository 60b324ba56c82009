"""PolicyRuntime: observations in, safe and scheduled action chunks out. No ROS in here.

Callbacks feed ``on_image``/``on_joints`` (cheap, never block; bad inputs are refused there); a
control timer calls ``tick``, which watches the clock, the engine and the inputs, collects a
finished inference, applies the safety rules, merges the chunk into the plan (see
``scheduler``) and starts the next inference on the engine thread when it is due. Any fault
drops the plan (``ChunkScheduler.reset``): the node then publishes a stop, never old actions.

The ``policy`` sampler always makes the executed actions. Predicted frames, every
``frames_every``-th chunk, come from forward dynamics given that chunk, run after the chunk is
handed over, so they show what the published actions lead to and never change them. The
``joint`` sampler (actions and frames from one sample) drives the robot only when configured.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from uwm_ros.engines import Engine, Observation, Prediction

from .health import ERROR, OK, STALE, WARN, Health
from .history import History, MissingSample
from .inputs import InputError, JointMerger
from .scheduler import ChunkScheduler

log = logging.getLogger(__name__)
SAMPLERS = ("policy", "joint")


@dataclass
class RuntimeConfig:
    """Scheduling and safety parameters (node parameters of the same names).

    Args:
        execute_steps: k, actions executed from each chunk before the next takes over.
        seam: "switch" (default) or "blend" (cross-fade ``blend_steps`` actions) at a chunk seam;
            blending two chunks of a multimodal policy that went different ways averages two
            plans into neither (on the sim: 44 % success blended vs 67 % switched).
        max_age: seconds after which an input is stale: no inference, no output. Also how far
            time may go backwards before the history is cleared.
        max_skew: largest spread of the newest stamps of cameras and joints, seconds.
        lower, upper: per-dimension bounds on the published actions (joint limits for
            positions; deltas are bounded as the positions they become); actions are clipped.
        enabled: publish chunks at all; False still runs inference for monitoring.
        frames_every: every N-th chunk also yields predicted frames (0: never).
        sampler: "policy" (actions from the policy mode) or "joint" (from the joint sampler).
        engine_timeout: seconds an engine call may take before the node reports ERROR and
            stops publishing; 0 = the duration of one chunk, at least 1 s.
    """

    execute_steps: int = 4
    seam: str = "switch"
    blend_steps: int = 4
    max_age: float = 0.5
    max_skew: float = 0.1
    lower: Sequence[float] | None = None
    upper: Sequence[float] | None = None
    enabled: bool = False
    frames_every: int = 0
    sampler: str = "policy"
    engine_timeout: float = 0.0

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        for name in ("max_age", "max_skew"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 seconds, got {getattr(self, name)}")
        if self.frames_every < 0 or self.engine_timeout < 0:
            raise ValueError("frames_every and engine_timeout must be >= 0")


@dataclass
class Chunk:
    """A chunk ready to publish: actions[i] is meant for ``start + i*dt`` (robot units)."""

    sequence: int  # number of the inference it came from
    stamp: float  # reference time of the observation used
    start: float
    dt: float
    names: tuple[str, ...]
    actions: np.ndarray  # (n, d): the model chunk from row ``offset`` on
    mode: str
    inference_ms: float
    kind: str  # what actions are: positions (deltas arrive integrated), velocities, twist...
    offset: int = 0  # index in the model's chunk of actions[0]


@dataclass
class Frames:
    """Predicted frames of one chunk: per camera (h_o', S, S, 3) uint8, frame j depicting
    ``stamp + (horizon + j) * dt`` (the frames after the whole chunk, as in training)."""

    sequence: int
    stamp: float
    dt: float
    horizon: int
    mode: str
    images: dict[str, np.ndarray]

    def stamps(self, count: int) -> list[float]:
        return [self.stamp + (self.horizon + j) * self.dt for j in range(count)]


@dataclass
class _Request:
    epoch: int
    sequence: int
    stamp: float
    obs: Observation
    mode: str
    frames: bool
    base: np.ndarray | None  # joints at ``stamp`` under the action names (deltas only)
    submitted: float  # time.monotonic()


class PolicyRuntime:
    def __init__(
        self,
        engine: Engine,
        cfg: RuntimeConfig,
        clock: Callable[[], float],
        on_ready: Callable[[], None] | None = None,
    ):
        """``on_ready`` is called from the inference thread when a result waits for ``tick``,
        so a node can publish at once instead of at its next timer tick."""
        self.engine, self.cfg, self.clock, self.on_ready = engine, cfg, clock, on_ready
        spec, model = engine.manifest.spec, engine.cfg
        self.dt, self.horizon = 1.0 / spec.fps, model.horizon
        self.action_names, self.action_kind = spec.action_names, spec.action_kind
        self.kind = "positions" if spec.action_kind == "deltas" else spec.action_kind
        self.joint_names = spec.proprio_names
        tracked = list(spec.proprio_names)
        if spec.action_kind == "deltas":  # integrating deltas needs those joints' positions
            tracked += [n for n in spec.action_names if n not in tracked]
        self.merger = JointMerger(tracked)
        self._proprio = [tracked.index(n) for n in spec.proprio_names]
        self._delta_joints = [tracked.index(n) for n in spec.action_names] if spec.action_kind \
            == "deltas" else []  # fmt: skip
        self.history = History(model.cameras, model.n_obs_steps, self.dt, self._keep(),
                               joints=bool(tracked))  # fmt: skip
        self.scheduler = ChunkScheduler(self.dt, cfg.execute_steps, cfg.seam, cfg.blend_steps)
        self.lower = None if cfg.lower is None else np.asarray(cfg.lower, np.float64)
        self.upper = None if cfg.upper is None else np.asarray(cfg.upper, np.float64)
        self.health = Health()
        self.counts = dict.fromkeys(
            ("chunks", "rejected_inputs", "rejected_nonfinite", "clipped", "engine_errors",
             "engine_timeouts", "time_resets", "discarded"), 0)  # fmt: skip
        self._sequence = self._epoch = 0
        self._last_now: float | None = None
        self._hung = False
        self._cleared = ""  # why the inputs' history was cleared, until the next tick
        # Unbounded: the inference thread submits the next request itself (via on_ready ->
        # tick), so a bounded put could block the queue's only consumer. _busy keeps it at 1.
        self._requests: queue.Queue[_Request | None] = queue.Queue()
        self._results: queue.Queue[tuple[_Request, Prediction | Exception, float]] = queue.Queue()
        self._frames: queue.Queue[Frames] = queue.Queue()
        self._busy, self._submitted = False, 0.0
        self._thread = threading.Thread(target=self._work, name="uwm-inference", daemon=True)
        self._thread.start()

    @property
    def status(self) -> str:
        return self.health.message

    @property
    def deadline(self) -> float:
        """Seconds an engine call may run (``engine_timeout``, default one chunk, >= 1 s)."""
        return self.cfg.engine_timeout or max(self.horizon * self.dt, 1.0)

    # ----- inputs (called from subscription callbacks) ---------------------------------------
    def on_image(self, camera: str, stamp: float, rgb: np.ndarray) -> None:
        if camera not in self.history.cameras:
            return
        self._arrive(camera, stamp, self.history.went_back(camera, stamp))
        event = self.history.add(camera, stamp, rgb)
        if event:
            self.health.problem(camera, event)

    def on_joints(
        self, stamp: float, names: Sequence[str], positions: Sequence[float], source: str = ""
    ) -> None:
        """Merge a JointState by name (any order, any publisher); refuse a bad one whole."""
        newest = self.merger.stamps.max(initial=-np.inf)
        self._arrive("joints", stamp, max(0.0, newest - stamp) if np.isfinite(newest) else 0.0)
        try:
            merged = self.merger.update(stamp, names, positions)
        except InputError as e:
            self.reject(source or "joint_states", e.field, e.detail)
            return
        # a snapshot with a joint older than max_age (a silent publisher) is not a frame
        if merged is not None and stamp - self.merger.stamps.min() <= self.cfg.max_age:
            self.history.add("joints", stamp, merged)

    def reject(self, source: str, field: str, detail: str) -> None:
        """An input message that must not be used (the node calls this for undecodable ones)."""
        self.counts["rejected_inputs"] += 1
        self.health.problem(source, f"message refused: field '{field}': {detail}")

    # ----- live settings ----------------------------------------------------------------------
    def update(self, **changes: object) -> None:
        """Change settings at run time (validated as a whole); a change of ``enabled`` drops
        the plan, so re-enabling starts from a fresh chunk and disabling stops at once."""
        cfg = dataclasses.replace(self.cfg, **changes)  # type: ignore[arg-type]
        toggled = cfg.enabled != self.cfg.enabled
        self.cfg = cfg
        self.history.keep = max(self._keep(), self.history.n_obs_steps * self.dt)
        if toggled:
            self.scheduler.reset()
            self._epoch += 1

    def _keep(self) -> float:
        """History span: the observation's frames below a reference up to max_skew behind."""
        return self.cfg.max_skew + (self.engine.cfg.n_obs_steps + 1) * self.dt

    # ----- control timer ------------------------------------------------------------------------
    def tick(self) -> Chunk | None:
        """Watch, collect, check and schedule; returns a chunk to publish, or None."""
        now = self.clock()
        back = now < (self._last_now or now) - self.cfg.max_age
        if back and not self._cleared:  # inputs that went back already cleared the history
            self._clear(f"node clock went backwards by {(self._last_now or now) - now:.3f} s")
        self._last_now = now
        why, self._cleared = self._cleared, ""
        if why:  # here, not in the input callback: the plan belongs to the timer's thread
            self._epoch += 1
            self.counts["time_resets"] += 1
            self._halt(WARN, why)
        chunk = self._collect(now)
        if self._busy and time.monotonic() - self._submitted > self.deadline:
            if not self._hung:
                self._hung = True
                self.counts["engine_timeouts"] += 1
            running = time.monotonic() - self._submitted
            self._halt(ERROR, f"engine call running for {running:.1f} s, past its "
                              f"{self.deadline:.1f} s deadline: not publishing")  # fmt: skip
            return None
        stale = self.merger.stale(now, self.cfg.max_age)  # first: it names the joint
        if stale and not self.merger.unseen():
            ages = ", ".join(f"{n} {a * 1e3:.0f} ms" for n, a in sorted(stale.items()))
            self._halt(STALE, f"stale joints (max age {self.cfg.max_age * 1e3:.0f} ms): {ages}")
            return None
        check = self.history.check(now, self.cfg.max_age, self.cfg.max_skew)
        if not check.ok:  # watchdog: inputs stopped or drifted apart -> stop and start over
            unseen = self.merger.unseen()
            reason = f"{check.reason} (joints never received: {unseen})" if unseen else check.reason
            self._halt(check.level, reason)
            return None
        if not self._busy and now >= self.scheduler.trigger_time():
            self._submit(check.stamp)
        if chunk is None:
            return None
        if not self.cfg.enabled:
            self.health.set(OK, "disabled (parameter 'enabled' is false): chunks are not published")
            return None
        self.health.set(OK, "ok")
        return chunk

    def pop_frames(self) -> list[Frames]:
        """Predicted frames finished since the last call."""
        out = []
        while not self._frames.empty():
            out.append(self._frames.get_nowait())
        return out

    def close(self) -> None:
        self._requests.put(None)
        self._thread.join(timeout=5)

    # ----- internals ------------------------------------------------------------------------------
    def _arrive(self, stream: str, stamp: float, back: float) -> None:
        if back > self.cfg.max_age:
            self._clear(f"{stream} stamps went backwards by {back:.3f} s")

    def _clear(self, why: str) -> None:
        """Time went backwards (a bag loop, a sim reset): forget everything stamped before;
        the next tick drops the plan and any inference still running."""
        self.history.clear()
        self.merger.reset()
        message = f"{why} (bag loop or sim reset?): history cleared"
        log.warning(message)
        self.health.problem("time", message)
        self._cleared = message

    def _halt(self, level: int, message: str) -> None:
        self.health.set(level, message)
        self.scheduler.reset()

    def _submit(self, stamp: float) -> None:
        try:
            images, joints = self.history.observation(stamp)
        except MissingSample as e:
            self.health.set(WARN, f"observation incomplete: {e}")
            return
        self._sequence += 1
        every = self.cfg.frames_every
        frames = bool(every) and self._sequence % every == 0
        proprio = joints[:, self._proprio] if joints is not None and self._proprio else None
        base = joints[-1, self._delta_joints] if self._delta_joints and joints is not None else None
        self._busy, self._submitted = True, time.monotonic()
        obs = Observation(images, proprio)
        request = _Request(self._epoch, self._sequence, stamp, obs, self.cfg.sampler, frames, base,
                           self._submitted)  # fmt: skip
        self._requests.put(request)

    def _work(self) -> None:
        while (req := self._requests.get()) is not None:
            result: Prediction | Exception
            try:
                result = self.engine.predict(req.obs, req.mode, decode=req.frames)
            except Exception as e:  # an engine failure must not kill the thread silently
                log.exception("inference failed")
                result = e
            self._results.put((req, result, time.monotonic()))
            self._notify()
            if isinstance(result, Prediction) and req.frames:
                self._predict_frames(req, result)

    def _predict_frames(self, req: _Request, pred: Prediction) -> None:
        """Frames of a finished chunk: the joint sample's own, or forward dynamics given the
        policy's actions (clipped as published), after the chunk went out."""
        images, actions, mode = pred.frames, pred.actions, "joint"
        if req.mode == "policy":
            images, mode = None, "forward_dynamics"
            if actions is not None and np.isfinite(actions).all():
                if req.base is None:  # bounds are in position units: deltas stay as sampled
                    actions = self._clip(actions)
                try:
                    fd = self.engine.predict(req.obs, "forward_dynamics", actions=actions)
                    images = fd.frames
                except Exception:
                    log.exception("forward dynamics for predicted frames failed")
        if images:
            self._frames.put(Frames(req.sequence, req.stamp, self.dt, self.horizon, mode, images))
            self._notify()

    def _notify(self) -> None:
        if self.on_ready is not None:
            self.on_ready()

    def _clip(self, actions: np.ndarray) -> np.ndarray:
        if self.lower is None and self.upper is None:
            return actions
        return np.clip(actions, self.lower, self.upper)

    def _collect(self, now: float) -> Chunk | None:
        try:
            req, pred, finished = self._results.get_nowait()
        except queue.Empty:
            return None
        self._busy = False
        if req.epoch != self._epoch or self._hung:  # from before a reset, or past its deadline
            self._hung = False
            self.counts["discarded"] += 1
            return None
        self.scheduler.observe_delay(finished - req.submitted)
        if isinstance(pred, Exception):
            self.counts["engine_errors"] += 1
            self._halt(ERROR, f"inference failed: {type(pred).__name__}: {pred}")
            return None
        actions = pred.actions
        if actions is None or not np.isfinite(actions).all():
            self.counts["rejected_nonfinite"] += 1
            self._halt(ERROR, "engine returned non-finite actions: chunk dropped")
            return None
        if req.base is not None:  # per-step deltas -> positions from the observed joints
            actions = req.base + np.cumsum(actions.astype(np.float64), axis=0)
        clipped = self._clip(actions)
        self.counts["clipped"] += int((clipped != actions).any())
        times, plan = self.scheduler.merge(req.stamp, clipped, now)
        if not len(times):
            self.health.set(WARN, "chunk arrived after its horizon: inference slower than chunks")
            return None
        self.counts["chunks"] += 1
        offset = int(round((times[0] - req.stamp) / self.dt))
        actions = plan.astype(np.float32)
        start = float(times[0])
        return Chunk(req.sequence, req.stamp, start, self.dt, self.action_names, actions, req.mode,
                     pred.inference_ms, self.kind, offset)  # fmt: skip
