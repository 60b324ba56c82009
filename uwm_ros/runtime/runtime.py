"""PolicyRuntime: observations in, safe and scheduled action chunks out. No ROS in here.

Callbacks feed ``on_image``/``on_joints`` (cheap, never block); a control timer calls ``tick``,
which collects a finished inference, applies the safety rules, merges the chunk into the plan
(see ``scheduler``) and starts the next inference on the engine thread when it is due.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from uwm_ros.engines import Engine, Observation

from .history import History
from .scheduler import ChunkScheduler

log = logging.getLogger(__name__)


@dataclass
class RuntimeConfig:
    """Scheduling and safety parameters (node parameters of the same names).

    Args:
        execute_steps: k, actions executed from each chunk before the next takes over.
        seam: "blend" (cross-fade ``blend_steps`` actions) or "switch" at a chunk seam.
        max_age: seconds after which an input is stale: no inference, no output.
        max_skew: largest spread of the newest stamps of cameras and joints, seconds.
        lower, upper: per-dimension action bounds (joint limits); actions are clipped.
        enabled: publish chunks at all; False still runs inference for monitoring.
        frames_every: every N-th chunk runs the joint mode and carries predicted frames (0: never).
    """

    execute_steps: int = 8
    seam: str = "blend"
    blend_steps: int = 4
    max_age: float = 0.5
    max_skew: float = 0.1
    lower: Sequence[float] | None = None
    upper: Sequence[float] | None = None
    enabled: bool = False
    frames_every: int = 0


@dataclass
class Chunk:
    """A chunk ready to publish: actions[i] is meant for ``start + i*dt`` (robot units)."""

    sequence: int
    stamp: float  # time of the newest observation used
    start: float
    dt: float
    names: tuple[str, ...]
    actions: np.ndarray  # (n, d)
    mode: str
    inference_ms: float
    frames: dict[str, np.ndarray] | None  # camera -> (h_o', S, S, 3) uint8


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
        self.dt = 1.0 / spec.fps
        self.joint_names = spec.proprio_names
        self.action_names = spec.action_names
        self.history = History(model.cameras, model.n_obs_steps, self.dt)
        self.scheduler = ChunkScheduler(self.dt, cfg.execute_steps, cfg.seam, cfg.blend_steps)
        self.lower = None if cfg.lower is None else np.asarray(cfg.lower, np.float64)
        self.upper = None if cfg.upper is None else np.asarray(cfg.upper, np.float64)
        self.status = "starting"
        self.counts = {"chunks": 0, "rejected_nonfinite": 0, "clipped": 0, "skipped_inputs": 0}
        self._sequence = 0
        # Unbounded: the inference thread submits the next request itself (via on_ready ->
        # tick), so a bounded put could block the queue's only consumer. _busy keeps it at 1.
        self._requests: queue.Queue[tuple[float, Observation, str, float] | None] = queue.Queue()
        self._results: queue.Queue[tuple[float, str, object, float, float]] = queue.Queue()
        self._busy = False
        self._thread = threading.Thread(target=self._work, name="uwm-inference", daemon=True)
        self._thread.start()

    # ----- inputs (called from subscription callbacks) ---------------------------------------
    def on_image(self, camera: str, stamp: float, rgb: np.ndarray) -> None:
        if camera in self.history.cameras:
            self.history.add(camera, stamp, rgb)

    def on_joints(self, stamp: float, names: Sequence[str], positions: Sequence[float]) -> None:
        """Select and order the model's joints by name; a message lacking one is skipped."""
        index = {n: i for i, n in enumerate(names)}
        missing = [n for n in self.joint_names if n not in index]
        if missing:
            self.counts["skipped_inputs"] += 1
            self.status = f"joint_states lacks joints {missing}"
            return
        self.history.add("joints", stamp, np.array([positions[index[n]] for n in self.joint_names]))

    # ----- control timer ------------------------------------------------------------------------
    def tick(self) -> Chunk | None:
        """Collect, check and schedule; returns a chunk to publish, or None."""
        now = self.clock()
        result = self._collect(now)
        check = self.history.check(now, self.cfg.max_age, self.cfg.max_skew)
        if not check.ok:  # watchdog: inputs stopped or drifted apart -> stop and start over
            self.status = check.reason
            self.scheduler.reset()
            return None
        if not self._busy and now >= self.scheduler.trigger_time():
            self._submit(check.stamp, now)
        if result is None:
            return None
        if not self.cfg.enabled:
            self.status = "disabled (parameter 'enabled' is false): chunks are not published"
            return None
        self.status = "ok"
        return result

    def close(self) -> None:
        self._requests.put(None)
        self._thread.join(timeout=5)

    # ----- internals ------------------------------------------------------------------------------
    def _submit(self, stamp: float, now: float) -> None:
        images, joints = self.history.observation(stamp)
        self._sequence += 1
        every = self.cfg.frames_every
        mode = "joint" if every and self._sequence % every == 0 else "policy"
        self._busy = True
        self._requests.put((stamp, Observation(images, joints), mode, now))

    def _work(self) -> None:
        while (req := self._requests.get()) is not None:
            stamp, obs, mode, submitted = req
            try:
                pred = self.engine.predict(obs, mode)
                self._results.put((stamp, mode, pred, submitted, self.clock()))
            except Exception as e:  # an engine failure must not kill the thread silently
                log.exception("inference failed")
                self._results.put((stamp, mode, e, submitted, self.clock()))
            if self.on_ready is not None:
                self.on_ready()

    def _collect(self, now: float) -> Chunk | None:
        try:
            stamp, mode, pred, submitted, finished = self._results.get_nowait()
        except queue.Empty:
            return None
        self._busy = False
        self.scheduler.observe_delay(finished - submitted)
        if isinstance(pred, Exception):
            self.status = f"inference failed: {pred}"
            return None
        actions = pred.actions  # type: ignore[attr-defined]
        if actions is None or not np.isfinite(actions).all():
            self.counts["rejected_nonfinite"] += 1
            self.status = "engine returned non-finite actions: chunk dropped"
            return None
        bounded = self.lower is not None or self.upper is not None
        clipped = np.clip(actions, self.lower, self.upper) if bounded else actions
        self.counts["clipped"] += int((clipped != actions).any())
        times, plan = self.scheduler.merge(stamp, clipped, now)
        if not len(times):
            self.status = "chunk arrived after its horizon: inference slower than the chunk"
            return None
        self.counts["chunks"] += 1
        ms = pred.inference_ms  # type: ignore[attr-defined]
        frames = pred.frames  # type: ignore[attr-defined]
        return Chunk(
            self._sequence,
            stamp,
            float(times[0]),
            self.dt,
            self.action_names,
            plan.astype(np.float32),
            mode,
            ms,
            frames,
        )
