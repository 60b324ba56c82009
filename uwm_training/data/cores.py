"""Is a core free for the frame writer? Other processes' CPU use, sampled from /proc.

The 1-minute load average lags a job that just ended by a minute, so the check samples
/proc/stat over a short window instead, and subtracts this process's own threads (the
hasher runs on one while the check is made: it is work of ours, not a reason to stay on one
core). Measured with the other core busy, a second process made a conversion 1.2-1.5x slower,
both processes sharing one.
"""

from __future__ import annotations

import os
import time
from typing import NamedTuple

FREE_CORES = 1.6  # the reader's core and most of another: what a second process needs


class CpuSample(NamedTuple):
    """Jiffies of all CPUs (idle + iowait, total) and of this process's threads, at ``wall``."""

    wall: float
    idle: int
    total: int
    own: int


def cpu_sample() -> CpuSample | None:
    """Now, from /proc (None where there is none: macOS, Windows)."""
    try:
        with open("/proc/stat") as f:
            cpu = [int(x) for x in f.readline().split()[1:9]]
        with open("/proc/self/stat") as f:  # fields after the command name; utime, stime
            own = f.read().rsplit(")", 1)[1].split()[11:13]
        return CpuSample(time.monotonic(), cpu[3] + cpu[4], sum(cpu), int(own[0]) + int(own[1]))
    except (OSError, ValueError, IndexError):
        return None


def other_load(since: CpuSample | None = None, window_s: float = 0.1) -> float | None:
    """Cores kept busy by other processes from ``since`` (default: now) until ``window_s``
    after it (it sleeps what is left of the window); None without /proc."""
    start = since or cpu_sample()
    if start is None:
        return None
    time.sleep(max(0.0, start.wall + window_s - time.monotonic()))
    end = cpu_sample()
    if end is None:
        return None
    total = max(end.total - start.total, 1)
    busy = total - (end.idle - start.idle) - (end.own - start.own)
    return max(busy, 0) / total * (os.cpu_count() or 1)


def core_free(since: CpuSample | None = None, window_s: float = 0.1) -> bool:
    """Another core idles beside the reader's own: other processes leave ``FREE_CORES`` of
    the cores this process may use (measured over ``window_s``, else the load average)."""
    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count()) or 1  # fmt: skip
    if cores < 2:
        return False
    others = other_load(since, window_s)
    if others is not None:
        return min(cores, (os.cpu_count() or 1) - others) >= FREE_CORES
    try:  # the load average, where there is one (it counts this process too)
        return cores - os.getloadavg()[0] >= 1
    except (AttributeError, OSError):
        return False
