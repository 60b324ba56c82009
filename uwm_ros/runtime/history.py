"""Latest inputs with their stamps, and the h_o-frame observation sampled at the model's rate.

Each stream (a camera, the joint states) keeps a short ring of (stamp, value). An observation
is built for a reference time t: per stream the newest sample at or before t - j*dt for
j = h_o-1 .. 0 (nearest previous, as the dataset converter resamples). Before enough history
exists the oldest sample repeats, as the training windows pad episode starts.
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class InputCheck:
    """Why an observation cannot be used (``ok`` False) or the reference time it uses."""

    ok: bool
    reason: str = ""
    stamp: float = 0.0  # reference time of the observation: the newest common stamp


class Stream:
    """A bounded, stamp-ordered buffer of one input; out-of-order samples are dropped."""

    def __init__(self, capacity: int):
        self.stamps: deque[float] = deque(maxlen=capacity)
        self.values: deque[np.ndarray] = deque(maxlen=capacity)
        self.received = 0
        self.dropped_out_of_order = 0

    def add(self, stamp: float, value: np.ndarray) -> None:
        if self.stamps and stamp < self.stamps[-1]:
            self.dropped_out_of_order += 1
            return
        self.stamps.append(stamp)
        self.values.append(value)
        self.received += 1

    @property
    def newest(self) -> float | None:
        return self.stamps[-1] if self.stamps else None

    def at(self, t: float) -> np.ndarray:
        """Newest value stamped at or before ``t`` (the oldest one if all are later)."""
        i = bisect.bisect_right(self.stamps, t) - 1
        return self.values[max(i, 0)]


class History:
    """Thread-safe store of camera frames and joint positions for ``PolicyRuntime``."""

    def __init__(self, cameras: tuple[str, ...], n_obs_steps: int, dt: float, capacity: int = 64):
        self.cameras, self.n_obs_steps, self.dt = cameras, n_obs_steps, dt
        self.streams = {name: Stream(capacity) for name in (*cameras, "joints")}
        self.lock = threading.Lock()

    def add(self, name: str, stamp: float, value: np.ndarray) -> None:
        with self.lock:
            self.streams[name].add(stamp, value)

    def check(self, now: float, max_age: float, max_skew: float) -> InputCheck:
        """Every stream present, fresh (age <= max_age) and in sync (spread <= max_skew)."""
        with self.lock:
            newest = {n: s.newest for n, s in self.streams.items()}
        missing = sorted(n for n, t in newest.items() if t is None)
        if missing:
            return InputCheck(False, f"waiting for {', '.join(missing)}")
        stamps = {n: t for n, t in newest.items() if t is not None}
        stale = {n: now - t for n, t in stamps.items() if now - t > max_age}
        if stale:
            ages = ", ".join(f"{n} {a * 1e3:.0f} ms" for n, a in sorted(stale.items()))
            return InputCheck(False, f"stale inputs (max age {max_age * 1e3:.0f} ms): {ages}")
        skew = max(stamps.values()) - min(stamps.values())
        if skew > max_skew:
            return InputCheck(
                False, f"inputs out of sync by {skew * 1e3:.0f} ms (max {max_skew * 1e3:.0f})"
            )
        return InputCheck(True, stamp=min(stamps.values()))

    def observation(self, t: float) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Frames per camera (h_o, H, W, 3) and joints (h_o, P) at t - (h_o-1-j)*dt."""
        times = [t - (self.n_obs_steps - 1 - j) * self.dt for j in range(self.n_obs_steps)]
        with self.lock:
            images = {c: np.stack([self.streams[c].at(x) for x in times]) for c in self.cameras}
            joints = np.stack([self.streams["joints"].at(x) for x in times])
        return images, joints
