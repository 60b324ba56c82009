"""Resample asynchronous streams onto a fixed frame grid while a bag streams past.

::

    grid ticks        t0             t0+Δ            t0+2Δ          Δ = 1/fps
    camera 10 Hz      c0 (= t0)     c1             c2              (stamps jitter around ticks)
    joints 250 Hz     ||||||||||||||||||||||||||||||||||||||||
    tick k takes each stream's sample stamped *nearest* to t_k (``uwm_ros.timing.nearest``,
    the rule the runtime's observation history uses too); skew = |t_k - stamp|, and a skew
    above the stream's max_skew makes the stream STALE at t_k.

The grid is anchored on the first frame of the clock stream (the first camera). While that
camera runs at the grid rate, the grid also follows its phase (a slow phase-locked loop, gain
``PHASE_GAIN``): a camera whose clock drifts (29.97 Hz on a 30 fps grid) then keeps every frame
once instead of losing or repeating frames each time its phase crosses half a period, and stamp
jitter averages out instead of moving ticks. Nearest-previous lookup on a grid anchored anywhere
lost most frames of a camera at the grid rate whose stamps jitter around the ticks.

A tick is resolved for a stream once no later message can change its nearest sample: a sample
stamped at or after t_k arrived, or the stream's clock passed far enough beyond t_k (receive-
stamped streams: the bag's receive clock; header-stamped ones: the receive clock minus the
stream's worst latency seen so far and a slack), or the bag ended. Each stream keeps its
samples from the one nearest the last resolved tick on, so memory is bounded by how far streams
lag each other, not by the bag's length.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from uwm_ros.timing import nearest

OK, STALE, NONE = "ok", "stale", "none"
SLACK_NS = 1_000_000_000  # header stamps may lag receive time by this much beyond the worst seen
PHASE_GAIN = 1 / 16  # share of the clock camera's error the grid follows per tick
GRID_RATE_MATCH = 0.02  # a clock camera whose period is this close to the grid's is tracked
_NOMINAL_INTERVALS = 32  # intervals that fix a stream's nominal period (for gap counting)


class StampsBackwards(ValueError):
    """A stream's stamp is older than its previous one."""


class Resolved(NamedTuple):
    """One stream at one tick (a NamedTuple: made for every stream at every tick)."""

    status: str  # OK, STALE, or NONE (no sample yet)
    payload: Any = None
    seq: int = -1  # index of the sample within its stream (duplicates share it)
    skew_ns: int = 0
    stamp: int = 0  # of the sample


@dataclass
class StreamStats:
    """What the report says about one stream's messages."""

    messages: int = 0
    first_ns: int = 0
    last_ns: int = 0
    gaps: int = 0  # intervals longer than 1.75 nominal periods (one lost message makes 2)
    missing: int = 0  # messages those gaps are estimated to have lost
    _intervals: list[int] = field(default_factory=list)
    _nominal: float = 0.0
    _gap_ns: float = 0.0  # 1.75 nominal periods

    def add(self, stamp: int) -> None:
        if self.messages:
            interval = stamp - self.last_ns
            if self._nominal:
                if interval > self._gap_ns:  # (runs per message: the common case inline)
                    self._count_gap(interval)
            elif interval > 0:
                self._intervals.append(interval)
                if len(self._intervals) == _NOMINAL_INTERVALS:
                    self._fix_nominal()
        else:
            self.first_ns = stamp
        self.messages += 1
        self.last_ns = stamp

    @property
    def nominal_ns(self) -> float:
        """The median of the first intervals (0 until there are enough of them)."""
        return self._nominal

    def _fix_nominal(self) -> None:
        self._nominal = float(sorted(self._intervals)[len(self._intervals) // 2])
        self._gap_ns = 1.75 * self._nominal
        for interval in self._intervals:
            if interval > self._gap_ns:
                self._count_gap(interval)
        self._intervals.clear()

    def _count_gap(self, interval: int) -> None:
        self.gaps += 1
        self.missing += round(interval / self._nominal) - 1

    def to_dict(self) -> dict[str, Any]:
        if self._intervals:
            self._fix_nominal()
        span = (self.last_ns - self.first_ns) / 1e9
        return {
            "messages": self.messages,
            "rate_hz": round((self.messages - 1) / span, 2) if span > 0 else 0.0,
            "nominal_hz": round(1e9 / self._nominal, 2) if self._nominal else None,
            "gaps": self.gaps,
            "missing_messages": self.missing,
        }


class Stream:
    """One stream's samples, held from the one nearest the last resolved tick on."""

    def __init__(self, name: str, max_skew_ns: int, by_receive: bool) -> None:
        self.name, self.max_skew_ns, self.by_receive = name, max_skew_ns, by_receive
        self.stats = StreamStats()
        self.stamps: deque[int] = deque()
        self.payloads: deque[Any] = deque()
        self.first_seq = 0  # index in the stream of payloads[0]
        self.last: float = -math.inf  # the newest stamp
        self._latency = 0  # receive time - stamp, the most seen

    def push(self, stamp: int, payload: Any, recv_ns: int) -> None:
        """A sample (stamps must not go backwards)."""
        if stamp < self.last:
            raise StampsBackwards(
                f"stamps go backwards: {stamp / 1e9:.6f} s after {self.last / 1e9:.6f} s"
            )
        self.last = stamp
        self.stamps.append(stamp)
        self.payloads.append(payload)
        self.stats.add(stamp)
        if recv_ns - stamp > self._latency:
            self._latency = recv_ns - stamp

    def wake(self, t: int) -> float:
        """The receive time after which no later sample can be nearer to ``t`` (within the
        tolerance) than the ones held (-inf: already; inf: only a sample can tell)."""
        if self.last >= t:
            return -math.inf
        reach = min(self.max_skew_ns, t - self.last)
        if self.by_receive:  # later samples are stamped at or after the receive clock
            return t + reach
        if not self.stats.messages:
            return math.inf  # the latency of header stamps is unknown before a sample
        return t + reach + self._latency + SLACK_NS

    def resolve(self, t: int) -> Resolved:
        """This stream at tick ``t`` (resolvable); forgets the samples no later tick can use."""
        i = nearest(self.stamps, t, self.max_skew_ns)
        if i is None:
            started = self.stats.messages and self.stats.first_ns <= t + self.max_skew_ns
            self._forget(bisect.bisect_right(self.stamps, t) - 1)
            return Resolved(STALE if started else NONE)
        stamp, payload, seq = self.stamps[i], self.payloads[i], self.first_seq + i
        self._forget(i)
        # A payload may know an older age than its stamp (merged joint states: the oldest
        # joint), or that it is not complete yet (None).
        age = payload.age_ns() if hasattr(payload, "age_ns") else stamp
        if age is None:
            return Resolved(NONE)
        skew = max(abs(stamp - t), t - age)
        return Resolved(OK if skew <= self.max_skew_ns else STALE, payload, seq, skew, stamp)

    def _forget(self, n: int) -> None:
        for _ in range(n):
            self.stamps.popleft()
            self.payloads.popleft()
        self.first_seq += max(n, 0)


Tick = tuple[int, int, dict[str, Resolved]]  # (tick index, tick ns, stream -> value)


class Timeline:
    """The frame grid and its streams; ``ready()`` returns ticks every stream has resolved.

    ``clock`` names the stream (a camera) whose first sample anchors the grid and whose phase
    the grid follows while it runs at the grid rate. The reader sets ``now``, the bag's
    receive clock, as it goes (``finish()``: the bag ended).
    """

    def __init__(self, fps: float, clock: str) -> None:
        self.period_ns = 1e9 / fps
        self.clock_stream = clock
        self.t0: int | None = None
        self.phase = 0.0  # ns the grid has moved to follow the clock camera
        self.streams: dict[str, Stream] = {}
        self.now: float = -math.inf
        self._next = 0  # the next tick: index, time
        self._t = 0
        self._end = math.inf  # after finish(): the last tick any stream can serve
        self._blocker: Stream | None = None  # a stream that cannot resolve the next tick ...
        self._wake = math.inf  # ... before this receive time (or a new sample)

    @property
    def started(self) -> bool:
        return self.t0 is not None

    def tick(self, k: int) -> int:
        assert self.t0 is not None
        return self.t0 + round(k * self.period_ns + self.phase)

    def add(self, name: str, max_skew_ns: int, by_receive: bool) -> Stream:
        stream = self.streams[name] = Stream(name, max_skew_ns, by_receive)
        return stream

    def push(self, name: str, stamp: int, payload: Any, recv_ns: int) -> None:
        self.streams[name].push(stamp, payload, recv_ns)

    def finish(self) -> None:
        """The bag ended: every tick any stream can still serve becomes resolvable."""
        self.now = math.inf
        self._end = min(s.last + s.max_skew_ns for s in self.streams.values())

    def ready(self) -> tuple[Tick, ...] | list[Tick]:
        """The ticks all streams have resolved since the last call (called per message)."""
        b = self._blocker
        if b is not None and b.last < self._t and self.now <= self._wake:
            return ()  # (the common case, per message: nothing new for the stream waited on)
        if self.t0 is None and not self._start():
            return ()
        streams, ticks = self.streams.values(), list[Tick]()
        t = self._t
        while t <= self._end:
            for s in streams:
                wake = s.wake(t)
                if self.now <= wake:
                    self._blocker, self._wake = s, wake
                    return ticks
            values = {s.name: s.resolve(t) for s in streams}
            ticks.append((self._next, t, values))
            self._follow(values[self.clock_stream], t)
            self._next += 1
            t = self._t = self.tick(self._next)
        self._blocker, self._wake = None, math.inf
        return ticks

    def _start(self) -> bool:
        """Anchor the grid on the clock stream's first sample, once there is one; until then
        the other streams hold only what that sample could still need."""
        clock = self.streams[self.clock_stream]
        if not clock.stamps:
            for s in self.streams.values():
                if len(s.stamps) > 1:
                    s._forget(bisect.bisect_left(s.stamps, s.last - 2 * SLACK_NS) - 1)
            return False
        self.t0 = self._t = clock.stamps[0]
        return True

    def _follow(self, clock: Resolved, t: int) -> None:
        """Move the grid toward the clock camera's frame (when it runs at the grid rate)."""
        nominal = self.streams[self.clock_stream].stats.nominal_ns
        if clock.status == OK and abs(nominal - self.period_ns) <= GRID_RATE_MATCH * nominal:
            self.phase += PHASE_GAIN * (clock.stamp - t)
