"""The one rule that pairs samples with grid times, shared by the runtime and the converter.

A grid time t (an observation frame of the runtime, a tick of the dataset converter) takes, per
stream, the sample stamped *nearest* to t, and only if it lies within ``tolerance`` of t
(half a period for frames at the grid rate). Nearest-previous lookup fails on real stamps:
a camera at exactly the grid rate whose stamps jitter around the ticks alternates between the
right frame and the one a period older.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence


def nearest(stamps: Sequence[float], t: float, tolerance: float) -> int | None:
    """Index of the stamp nearest to ``t`` in sorted ``stamps`` (a tie takes the earlier one),
    or None when it is farther than ``tolerance`` from ``t`` (or there are no stamps)."""
    i = bisect.bisect_left(stamps, t)
    best = None
    for j in (i - 1, i):
        if 0 <= j < len(stamps) and (best is None or abs(stamps[j] - t) < abs(stamps[best] - t)):
            best = j
    if best is None or abs(stamps[best] - t) > tolerance:
        return None
    return best
