"""Joint states, decoded lazily: only messages a frame uses are deserialised.

Several publishers often share /joint_states (arm, gripper), each naming its own joints in any
order. The value of joint j at a sample is the one from the latest message up to that sample
that names j. Each message becomes a ``JointSample`` linked to its predecessor; when a frame
needs one, it is decoded and, if it does not name every joint, merged with its predecessors
(newest first, stopping as soon as every joint is covered, or at the last sample a frame used,
whose merged state is kept). With one publisher that is one decode per frame instead of one per
message (joint states come at 100-500 Hz, frames at 10-30), which is most of a bag's messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import BagError

_SETTLE_NS = 2 * 10**9  # every configured joint must appear within this much of the first message


Merged = tuple[np.ndarray, np.ndarray, int | None]  # values, per-joint stamps, age


class JointDecoder:
    """Decodes and merges one joint-state topic's samples (names and fields from the config)."""

    def __init__(
        self,
        names: tuple[str, ...],
        fields: tuple[str, ...],
        decode: Callable[[bytes], Any],
        bag: str,
        topic: str,
    ) -> None:
        self.names, self.fields, self.decode = names, fields, decode
        self.bag, self.topic = bag, topic
        self.index = {n: i for i, n in enumerate(names)}
        self.first_ns: int | None = None
        self.complete_seen = False
        self._newest: dict[tuple[str, ...], int] = {}  # per publisher (name set): newest stamp
        self._slots: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}
        self._orders: dict[tuple[str, ...], np.ndarray | None] = {}  # complete name lists

    def sample(self, raw: bytes, stamp: int, prev: JointSample | None) -> JointSample:
        if self.first_ns is None:
            self.first_ns = stamp
        return JointSample(raw, stamp, prev, self)

    def _fail(self, detail: str, field: str) -> BagError:
        return BagError(self.bag, detail, self.topic, field)

    def _backwards(self, stamp: int, after: int) -> None:
        raise self._fail(
            f"stamps go backwards: {stamp / 1e9:.6f} s after {after / 1e9:.6f} s", "header.stamp"
        )

    def merge(self, node: JointSample) -> Merged:
        """(fields, joints) values, per-joint stamps (-1: never seen) and the age (the oldest
        stamp; None while a joint is unseen) at ``node``."""
        msg = self.decode(node.raw)  # (merge runs once per node, before it has a state)
        key = tuple(msg.name)
        if key not in self._orders:
            picked = {n: i for i, n in enumerate(key) if n in self.index}  # last of a repeat
            complete = len(picked) == len(self.names)
            self._orders[key] = np.array([picked[n] for n in self.names]) if complete else None
        order = self._orders[key]
        if order is not None:  # it names every joint (one publisher): nothing older is needed
            return self._merge_complete(node, msg, key, order)
        return self._merge_walk(node, msg)

    def _merge_complete(self, node: JointSample, msg: Any, key: tuple[str, ...],
                        order: np.ndarray) -> Merged:  # fmt: skip
        if node.stamp < self._newest.get(key, -1):
            self._backwards(node.stamp, self._newest[key])
        self._newest[key] = node.stamp
        fields = [getattr(msg, name) for name in self.fields]
        for name, field in zip(self.fields, fields):
            if len(field) != len(key):
                raise self._fail(f"{len(field)} values for {len(key)} names", name)
        self.complete_seen = True
        values = np.array(fields, np.float32)[:, order]
        return values, np.full(len(self.names), node.stamp, np.int64), node.stamp

    def _merge_walk(self, node: JointSample, first: Any) -> Merged:
        """Merge newest first down the chain (``first``: ``node`` decoded)."""
        values = np.zeros((len(self.fields), len(self.names)), np.float32)
        stamps = np.full(len(self.names), -1, np.int64)
        unseen = len(self.names)  # joints without a value yet (counted here: numpy is slower)
        newest: dict[tuple[str, ...], int] = {}  # per publisher, in this walk
        last: dict[tuple[str, ...], int] = {}
        current: JointSample | None = node
        while current is not None and unseen:
            if current.state is not None:  # a merged state: take what is still missing from it
                missing = stamps < 0
                values[:, missing] = current.state[0][:, missing]
                stamps[missing] = current.state[1][missing]
                break
            msg = first if current is node else self.decode(current.raw)
            key = tuple(msg.name)
            # Walking newest first: a publisher's stamps must not rise, nor undercut its newest
            # stamp of earlier walks.
            if key in last:
                if current.stamp > last[key]:
                    self._backwards(last[key], current.stamp)
            else:
                newest[key] = current.stamp
                if current.stamp < self._newest.get(key, -1):
                    self._backwards(current.stamp, self._newest[key])
            last[key] = current.stamp
            unseen -= self._apply(msg, key, current.stamp, values, stamps, unseen)
            current = current.prev
        for key, stamp in newest.items():
            self._newest[key] = max(stamp, self._newest.get(key, -1))
        age = int(stamps.min())
        if age < 0:
            assert self.first_ns is not None
            if node.stamp - self.first_ns > _SETTLE_NS:
                raise self._fail(f"joints {self.missing(stamps)} never appear", "name")
            return values, stamps, None
        self.complete_seen = True
        return values, stamps, age

    def _apply(
        self,
        msg: Any,
        key: tuple[str, ...],
        stamp: int,
        values: np.ndarray,
        stamps: np.ndarray,
        unseen: int,
    ) -> int:
        """Fill the joints ``msg`` names that are not filled yet; returns how many it filled."""
        if key not in self._slots:  # (message positions, dataset positions) of our joints
            # A joint named twice takes its last value (as numpy's assignment would).
            picked = {n: i for i, n in enumerate(key) if n in self.index}
            self._slots[key] = (
                np.array(list(picked.values()), np.intp),
                np.array([self.index[n] for n in picked], np.intp),
            )
        src, dst = self._slots[key]
        if not len(src):
            return 0
        fields = [getattr(msg, name) for name in self.fields]
        for name, field in zip(self.fields, fields):
            if len(field) != len(key):
                raise self._fail(f"{len(field)} values for {len(key)} names", name)
        if unseen < len(self.names):  # newer messages filled some joints: keep their values
            open_ = stamps[dst] < 0
            src, dst = src[open_], dst[open_]
        stamps[dst] = stamp
        values[:, dst] = np.stack(fields)[:, src]
        return len(dst)

    def missing(self, stamps: np.ndarray) -> list[str]:
        return [n for n, s in zip(self.names, stamps) if s < 0]

    def require_complete(self, last: JointSample | None) -> None:
        """At the end of a bag: every configured joint must have appeared."""
        if last is not None:
            last.age_ns()  # merges; marks complete_seen if every joint is there
        if not self.complete_seen:
            stamps = last.state[1] if last and last.state else np.full(len(self.names), -1)
            raise self._fail(f"joints {self.missing(stamps)} never appear", "name")


class JointSample:
    """One joint-state message; its merged value is computed once, when a frame asks for it."""

    __slots__ = ("raw", "stamp", "prev", "state", "decoder")

    def __init__(
        self, raw: bytes, stamp: int, prev: JointSample | None, decoder: JointDecoder
    ) -> None:
        self.raw, self.stamp, self.prev, self.decoder = raw, stamp, prev, decoder
        self.state: Merged | None = None

    def _resolve(self) -> Merged:
        if self.state is None:
            self.state = self.decoder.merge(self)
            self.prev = None  # older messages are no longer needed
        return self.state

    def age_ns(self) -> int | None:
        """Stamp of the oldest joint value (skews count from it); None if a joint is unseen."""
        return self._resolve()[2]

    def values(self) -> np.ndarray:
        """(fields, joints) float32."""
        return self._resolve()[0]
