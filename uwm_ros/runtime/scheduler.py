"""Chunk scheduling: one executable plan out of overlapping action chunks.

Timeline (dt = 1/fps, k = ``execute_steps``, d = measured inference delay)::

    chunk n    obs at t0 ─► a0 a1 a2 ... a(k-1) a(k) ... a(h-1)      (action i meant for t0 + i*dt)
                             │                 ▲
    trigger n+1 at  t0 + k*dt - d ─────────────┘  so chunk n+1 (obs at ~t0 + k*dt - d) is
                                                  ready when chunk n reaches action k
    chunk n+1  arrives at ~t0 + k*dt: its actions stamped before "now" are dropped (they are
               the inference delay), the rest replace the plan from there on; with
               seam="blend" the first ``blend_steps`` cross-fade from chunk n's plan.
"""

from __future__ import annotations

import numpy as np


class ChunkScheduler:
    """Merges chunks into a plan of (time, action) and says when to start the next inference."""

    def __init__(self, dt: float, execute_steps: int, seam: str = "switch", blend_steps: int = 4):
        if seam not in ("blend", "switch"):
            raise ValueError(f"seam must be 'blend' or 'switch', got {seam!r}")
        if execute_steps < 1:
            raise ValueError(f"execute_steps must be >= 1, got {execute_steps}")
        self.dt, self.k, self.seam, self.blend_steps = dt, execute_steps, seam, blend_steps
        self.delay = 0.0  # running estimate of the inference delay, seconds
        self.reset()

    def reset(self) -> None:
        """Forget the plan (inputs stopped): the next inference starts at once."""
        self.times: np.ndarray = np.zeros(0)
        self.actions: np.ndarray = np.zeros((0, 0))
        self.chunk_t0: float | None = None

    def observe_delay(self, seconds: float) -> None:
        """Track the inference delay; rises at once, decays slowly, so triggers err early."""
        self.delay = seconds if seconds > self.delay else 0.9 * self.delay + 0.1 * seconds

    def trigger_time(self) -> float:
        """When the next inference should start (-inf: now)."""
        if self.chunk_t0 is None:
            return -np.inf
        return self.chunk_t0 + self.k * self.dt - self.delay

    def merge(self, t0: float, actions: np.ndarray, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Add a chunk observed at ``t0``; return the new plan from its first future action."""
        times = t0 + np.arange(len(actions)) * self.dt
        future = times >= now - 1e-9
        times, actions = times[future], np.array(actions[future], dtype=np.float64)
        if self.seam == "blend" and len(self.times) and len(times):
            overlap = times <= self.times[-1] + 1e-9
            n = min(int(overlap.sum()), self.blend_steps)
            old = np.stack(
                [
                    np.interp(times[:n], self.times, self.actions[:, j])
                    for j in range(actions.shape[1])
                ],
                axis=1,
            )
            w = (np.arange(1, n + 1) / (n + 1))[:, None]  # ramps towards the new chunk
            actions[:n] = (1 - w) * old + w * actions[:n]
        self.times, self.actions, self.chunk_t0 = times, actions, t0
        return times, actions
