"""Resample asynchronous streams onto a fixed frame grid while a bag streams past.

::

    grid ticks        t0             t0+Δ            t0+2Δ          Δ = 1/fps
    camera 30 Hz      c0    c1    c2 |  c3    c4    c5|   c6
    joints 250 Hz     ||||||||||||||||||||||||||||||||||||||||
    tick k takes each stream's latest sample stamped at or before t_k (nearest previous);
    skew = t_k - stamp; a skew above the stream's max_skew makes the stream STALE at t_k.

A tick is *resolved* for a stream once no later message can change it: a sample stamped after
t_k arrived, or the stream's clock passed t_k (receive-stamped streams: the bag's receive
clock; header-stamped ones: the receive clock minus the stream's worst latency seen so far and
a slack), or the bag ended. Only ticks resolved by some streams but not yet by all are held,
so memory is bounded by how far streams lag each other, not by the bag's length.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

OK, STALE, NONE = "ok", "stale", "none"
SLACK_NS = 1_000_000_000  # header stamps may lag receive time by this much beyond the worst seen
_NOMINAL_INTERVALS = 32  # intervals that fix a stream's nominal period (for gap counting)


class StampsBackwards(ValueError):
    """A stream's stamp is older than its previous one."""


class Resolved(NamedTuple):
    """One stream at one tick (a NamedTuple: made for every stream at every tick)."""

    status: str  # OK, STALE, or NONE (no sample yet)
    payload: Any = None
    seq: int = -1  # index of the sample within its stream (duplicates share it)
    skew_ns: int = 0


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
            "gaps": self.gaps,
            "missing_messages": self.missing,
        }


class Stream:
    """One stream's samples -> its value at every grid tick, in tick order."""

    def __init__(self, name: str, max_skew_ns: int, by_receive: bool) -> None:
        self.name, self.max_skew_ns, self.by_receive = name, max_skew_ns, by_receive
        self.stats = StreamStats()
        self.out: deque[Resolved] = deque()
        self._prev: tuple[int, int, Any] | None = None  # (seq, stamp, payload)
        self._next = 0  # first unresolved tick
        self._next_ns = -1  # its time (-1: the grid has not started)
        self._latency = 0

    def push(self, stamp: int, payload: Any, recv_ns: int, grid: Timeline) -> None:
        """A sample, visible from ``stamp`` on."""
        if self._prev is not None and stamp < self._prev[1]:
            raise StampsBackwards(
                f"stamps go backwards: {stamp / 1e9:.6f} s after {self._prev[1] / 1e9:.6f} s"
            )
        if stamp > self._next_ns:  # past the first unresolved tick (or the grid is new)
            self._resolve_before(stamp, grid)
        self._prev = (self.stats.messages, stamp, payload)
        self.stats.add(stamp)
        if recv_ns - stamp > self._latency:
            self._latency = recv_ns - stamp

    def clock(self, now_ns: int, grid: Timeline) -> None:
        """Resolve ticks no future message of this stream can reach any more."""
        if self.by_receive:
            self._resolve_before(now_ns, grid)
        elif self._prev is not None:
            self._resolve_before(now_ns - self._latency - SLACK_NS, grid)

    def idle_until(self) -> float:
        """``clock(now)`` resolves nothing while now <= this (a bound that only grows)."""
        if self._next_ns < 0 or (self._prev is None and not self.by_receive):
            return -math.inf  # not started: the first tick or sample changes what clock does
        return self._next_ns if self.by_receive else self._next_ns + self._latency + SLACK_NS

    def finish(self, grid: Timeline) -> None:
        """The bag ended: resolve the ticks the last sample still covers."""
        if self._prev is not None:
            self._resolve_before(self._prev[1] + self.max_skew_ns + 1, grid)

    def _resolve_before(self, limit: int, grid: Timeline) -> None:
        if self._next_ns < 0:
            if not grid.started:
                return
            self._next_ns = grid.tick(self._next)
        while self._next_ns < limit:
            self.out.append(self._resolve(self._next_ns))
            self._next += 1
            self._next_ns = grid.tick(self._next)
            grid.resolved = True

    def _resolve(self, t: int) -> Resolved:
        if self._prev is None:
            return Resolved(NONE)
        seq, stamp, payload = self._prev
        # A payload may know an older age than its stamp (merged joint states: the oldest
        # joint), or that it is not complete yet (None).
        age = payload.age_ns() if hasattr(payload, "age_ns") else stamp
        if age is None:
            return Resolved(NONE)
        skew = t - age
        return Resolved(OK if skew <= self.max_skew_ns else STALE, payload, seq, skew)


Tick = tuple[int, int, dict[str, Resolved]]  # (tick index, tick ns, stream -> value)


class Timeline:
    """The frame grid and its streams; ``ready()`` returns ticks every stream has resolved."""

    def __init__(self, fps: float) -> None:
        self.period_ns = 1e9 / fps
        self.t0: int | None = None
        self.streams: dict[str, Stream] = {}
        self.resolved = False  # a stream resolved a tick since the last ready()
        self._next = 0
        self._idle_until = -math.inf  # clock() before this receive time is a no-op

    @property
    def started(self) -> bool:
        return self.t0 is not None

    def tick(self, k: int) -> int:
        assert self.t0 is not None
        return self.t0 + round(k * self.period_ns)

    def add(self, name: str, max_skew_ns: int, by_receive: bool) -> None:
        self.streams[name] = Stream(name, max_skew_ns, by_receive)

    def push(self, name: str, stamp: int, payload: Any, recv_ns: int) -> None:
        """A sample; the grid starts at the first sample of any stream."""
        if self.t0 is None:
            self.t0 = stamp
        self.streams[name].push(stamp, payload, recv_ns, self)

    def clock(self, now_ns: int) -> None:
        """The bag's receive clock reached ``now_ns``."""
        if now_ns <= self._idle_until:  # (called every few ms of bag time: usually nothing)
            return
        for stream in self.streams.values():
            stream.clock(now_ns, self)
        self._idle_until = min((s.idle_until() for s in self.streams.values()), default=math.inf)

    def finish(self) -> None:
        for stream in self.streams.values():
            stream.finish(self)

    def ready(self) -> list[Tick]:
        """The ticks all streams have resolved since the last call (called per message)."""
        if not self.resolved:
            return []
        self.resolved = False
        streams, ticks = self.streams.values(), []
        while streams and all(s.out for s in streams):
            k = self._next
            self._next += 1
            ticks.append((k, self.tick(k), {s.name: s.out.popleft() for s in streams}))
        return ticks
