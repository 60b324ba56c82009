"""Latest inputs with their stamps, and the h_o-frame observation sampled at the model's rate.

Each stream (a camera, the joint states) keeps the samples of the last ``keep`` seconds of its
own stamps, whatever their rate (a 1 kHz joint stream holds a second of samples, not a count).
An observation is built for a reference time t: per stream, frame j is the sample *nearest* to
t - (h_o-1-j)*dt within half a period (``uwm_ros.timing.nearest``, the converter's rule), so
jittered stamps never pair frame t with frame t-2. Before enough history exists the frame of
the next later time repeats, as the training windows pad episode starts; a gap inside the
history makes the observation unusable. Time going backwards is the runtime's call
(``went_back``, ``clear``).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from uwm_ros.timing import nearest

from .health import STALE, WARN

MAX_SAMPLES = 20_000  # memory bound per stream, far above any real rate x span


@dataclass(frozen=True)
class InputCheck:
    """Why an observation cannot be used (``ok`` False) or the reference time it uses."""

    ok: bool
    reason: str = ""
    stamp: float = 0.0  # reference time of the observation: the newest common stamp
    level: int = STALE  # diagnostic level of the reason


class MissingSample(LookupError):
    """A history frame has no sample within half a period of its time."""


class Stream:
    """A stamp-ordered buffer of one input over a time span; out-of-order samples are dropped."""

    def __init__(self) -> None:
        self.stamps: deque[float] = deque(maxlen=MAX_SAMPLES)
        self.values: deque[np.ndarray] = deque(maxlen=MAX_SAMPLES)
        self.received = 0
        self.dropped_out_of_order = 0

    def add(self, stamp: float, value: np.ndarray, keep: float) -> None:
        if self.stamps and stamp < self.stamps[-1]:
            self.dropped_out_of_order += 1
            return
        self.stamps.append(stamp)
        self.values.append(value)
        self.received += 1
        while self.stamps[0] < stamp - keep:
            self.stamps.popleft()
            self.values.popleft()

    def clear(self) -> None:
        self.stamps.clear()
        self.values.clear()

    @property
    def newest(self) -> float | None:
        return self.stamps[-1] if self.stamps else None

    def at(self, t: float, tolerance: float) -> np.ndarray | None:
        """The sample nearest to ``t`` within ``tolerance``; None for times before the history
        starts (the caller pads); ``MissingSample`` for a gap."""
        if not self.stamps:
            raise MissingSample("no samples")
        if t < self.stamps[0] - tolerance:
            return None
        i = nearest(self.stamps, t, tolerance)
        if i is None:
            raise MissingSample(f"no sample within {tolerance * 1e3:.0f} ms of {t:.3f} s")
        return self.values[i]


class History:
    """Thread-safe store of camera frames and joint positions for ``PolicyRuntime``.

    Args:
        cameras: camera stream names.
        n_obs_steps: h_o, frames per observation.
        dt: model period, seconds.
        keep: seconds of samples each stream keeps (at least the observation's span).
        joints: whether a "joints" stream exists (a model without joint inputs needs none).
    """

    def __init__(
        self,
        cameras: tuple[str, ...],
        n_obs_steps: int,
        dt: float,
        keep: float,
        joints: bool = True,
    ):
        self.cameras, self.n_obs_steps, self.dt = cameras, n_obs_steps, dt
        self.keep = max(keep, n_obs_steps * dt)
        self.streams = {name: Stream() for name in (*cameras, *(["joints"] if joints else []))}
        self.resets = 0
        self.lock = threading.Lock()

    def went_back(self, name: str, stamp: float) -> float:
        """Seconds ``stamp`` lies before the newest sample of stream ``name`` (0 if not)."""
        newest = self.streams[name].newest
        return 0.0 if newest is None else max(0.0, newest - stamp)

    def add(self, name: str, stamp: float, value: np.ndarray) -> str:
        """Store a sample; returns what had to be reset because of it ("" if nothing)."""
        with self.lock:
            stream = self.streams[name]
            event = ""
            if stream.values and value.shape != stream.values[-1].shape:
                old = stream.values[-1].shape
                stream.clear()
                event = f"{name}: size changed from {old} to {value.shape}: its history restarts"
            stream.add(stamp, value, self.keep)
            return event

    def clear(self) -> None:
        with self.lock:
            for s in self.streams.values():
                s.clear()
            self.resets += 1

    def check(self, now: float, max_age: float, max_skew: float) -> InputCheck:
        """Every stream present, fresh (age <= max_age, not from the future) and in sync."""
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
        ahead = {n: t - now for n, t in stamps.items() if t - now > max_age}
        if ahead:
            text = ", ".join(f"{n} +{a:.3f} s" for n, a in sorted(ahead.items()))
            return InputCheck(False, f"inputs stamped after the node's clock: {text}", level=WARN)
        skew = max(stamps.values()) - min(stamps.values())
        if skew > max_skew:
            reason = f"inputs out of sync by {skew * 1e3:.0f} ms (max {max_skew * 1e3:.0f})"
            return InputCheck(False, reason, level=WARN)
        return InputCheck(True, stamp=min(stamps.values()))

    def observation(self, t: float) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """Frames per camera (h_o, H, W, 3) and joints (h_o, P) at t - (h_o-1-j)*dt; raises
        ``MissingSample`` naming the stream when a frame has no sample near its time."""
        times = [t - (self.n_obs_steps - 1 - j) * self.dt for j in range(self.n_obs_steps)]
        with self.lock:
            picked = {name: self._frames(name, times) for name in self.streams}
        joints = picked.pop("joints", None)
        return picked, joints

    def _frames(self, name: str, times: list[float]) -> np.ndarray:
        """Newest first, so a time before the history starts repeats the frame after it: the
        same frame, as training pads an episode's start (not an older neighbour)."""
        frames: list[np.ndarray] = []
        for x in reversed(times):
            try:
                value = self.streams[name].at(x, self.dt / 2)
            except MissingSample as e:
                raise MissingSample(f"{name}: {e}") from None
            frames.append(frames[-1] if value is None else value)
        return np.stack(frames[::-1])
