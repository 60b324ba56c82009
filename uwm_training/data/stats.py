"""Normalisation statistics computed while frames are written, mergeable across bags/appends.

Stored per low-dim key as ``{"count", "min", "max", "mean", "std"}`` lists: the contract's
``Normalizer.from_stats`` reads min/max, and count/mean/std merge exactly (Chan et al.).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


class RunningStats:
    """count, min, max, mean and M2 (sum of squared deviations) of (N, d) rows."""

    def __init__(self, dim: int) -> None:
        self.count = 0
        self.mean = np.zeros(dim, np.float64)
        self.m2 = np.zeros(dim, np.float64)
        self.min = np.full(dim, np.inf)
        self.max = np.full(dim, -np.inf)

    def update(self, rows: np.ndarray) -> None:
        """Add a block of rows."""
        if len(rows):
            rows = np.asarray(rows, np.float64)
            block = RunningStats(rows.shape[1])
            block.count = len(rows)
            block.mean = rows.mean(0)
            block.m2 = ((rows - block.mean) ** 2).sum(0)
            block.min, block.max = rows.min(0), rows.max(0)
            self.merge(block)

    def merge(self, other: RunningStats) -> None:
        if not other.count:
            return
        n = self.count + other.count
        delta = other.mean - self.mean
        self.mean = self.mean + delta * other.count / n
        self.m2 = self.m2 + other.m2 + delta**2 * self.count * other.count / n
        self.min, self.max = np.minimum(self.min, other.min), np.maximum(self.max, other.max)
        self.count = n

    def to_dict(self) -> dict[str, Any]:
        std = np.sqrt(self.m2 / self.count) if self.count else self.m2
        return {
            "count": self.count,
            "min": self.min.tolist() if self.count else [],
            "max": self.max.tolist() if self.count else [],
            "mean": self.mean.tolist(),
            "std": std.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], dim: int) -> RunningStats:
        stats = cls(dim)
        stats.count = int(d.get("count", 0))
        if stats.count:
            stats.mean = np.asarray(d["mean"], np.float64)
            stats.m2 = np.asarray(d["std"], np.float64) ** 2 * stats.count
            stats.min, stats.max = np.asarray(d["min"], np.float64), np.asarray(d["max"])
        return stats


def merge_stats(
    a: Mapping[str, Mapping[str, Any]], b: Mapping[str, Mapping[str, Any]], dims: Mapping[str, int]
) -> dict[str, dict[str, Any]]:
    """Stats of two datasets' union, per key of ``dims``."""
    out = {}
    for key, dim in dims.items():
        if not b.get(key, {}).get("count"):  # nothing to add: keep a's numbers exactly
            out[key] = dict(a.get(key) or RunningStats(dim).to_dict())
            continue
        merged = RunningStats.from_dict(a.get(key, {}), dim)
        merged.merge(RunningStats.from_dict(b.get(key, {}), dim))
        out[key] = merged.to_dict()
    return out
