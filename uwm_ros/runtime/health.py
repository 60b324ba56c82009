"""What the node reports on /diagnostics: a level ROS tools understand and why.

Levels are diagnostic_msgs/DiagnosticStatus's: OK, WARN, ERROR, STALE (no recent inputs). The
runtime's state (``set``) says whether chunks can flow; a refused input message (``problem``)
is an event, so it stays reported for ``hold`` seconds, at least one diagnostics period, or a
single bad message between two reports would never be seen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

OK, WARN, ERROR, STALE = 0, 1, 2, 3
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}
_SEVERITY = {OK: 0, WARN: 1, STALE: 2, ERROR: 3}  # which of two reports wins


class Health:
    """The runtime's level and message, plus input problems seen within ``hold`` seconds."""

    def __init__(self, hold: float = 1.5, clock: Callable[[], float] = time.monotonic) -> None:
        self.hold, self.clock = hold, clock
        self.level, self.message = STALE, "starting"
        self._problems: dict[str, tuple[float, str]] = {}  # source -> (when, what)
        self._lock = threading.Lock()

    def set(self, level: int, message: str) -> None:
        self.level, self.message = level, message

    def problem(self, source: str, message: str) -> None:
        """An input from ``source`` was refused (WARN while recent)."""
        with self._lock:
            self._problems[source] = (self.clock(), message)

    def report(self) -> tuple[int, str]:
        """The worst of the state and the recent input problems, with every message."""
        now = self.clock()
        with self._lock:
            self._problems = {s: p for s, p in self._problems.items() if now - p[0] <= self.hold}
            recent = [f"{s}: {m}" for s, (_, m) in sorted(self._problems.items())]
        level = self.level
        if recent and _SEVERITY[WARN] > _SEVERITY[level]:
            level = WARN
        return level, "; ".join([self.message, *recent])
