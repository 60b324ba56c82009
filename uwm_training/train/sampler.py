"""A deterministic, sharded, resumable index stream over a weighted mixture of datasets.

One global stream of sample indices is a pure function of the seed: mixture epoch ``e`` (as
many draws as the sources have windows together) draws each position's source with the
configured probabilities, and within a source walks fresh permutations of its windows (without
replacement, like a DistributedSampler epoch). Optimizer step ``k`` consumes the global positions
``[k G, (k+1) G)`` with ``G = batch_size * grad_accum * world``, cut into shards of
``batch_size``; micro-step ``m`` of rank ``r`` takes shard ``m * world + r``::

    step k:  | shard 0 | shard 1 | shard 2 | shard 3 |      world 2, grad_accum 2
               rank 0    rank 1    rank 0    rank 1
               micro 0   micro 0   micro 1   micro 1

Ranks never share a sample, the union of a step's shards does not depend on how they are split
over ranks and micro-steps, and resuming at step k needs no state beyond k.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class MixtureSampler(Sampler[int]):
    """Infinite index stream into the concatenation of ``sizes`` for one rank.

    Args:
        sizes: windows per source, in ConcatDataset order.
        weights: relative sampling probability per source.
        seed: the stream is a pure function of it.
        batch_size: samples per shard (per rank per micro-step).
        grad_accum: micro-steps per optimizer step.
        rank, world: this process among the DDP ranks.
        start_step: first optimizer step to serve (resume).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        weights: Sequence[float],
        seed: int,
        batch_size: int,
        grad_accum: int = 1,
        rank: int = 0,
        world: int = 1,
        start_step: int = 0,
    ) -> None:
        if len(sizes) != len(weights) or not sizes:
            raise ValueError("one weight per source, at least one source")
        if min(sizes) < 1:
            raise ValueError(f"every source needs at least one window, got sizes {list(sizes)}")
        self.sizes = np.asarray(sizes, np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        w = np.asarray(weights, np.float64)
        self.probs = w / w.sum()
        self.seed, self.batch_size, self.grad_accum = seed, batch_size, grad_accum
        self.rank, self.world, self.start_step = rank, world, start_step
        self.epoch_len = int(self.sizes.sum())
        self._cache: tuple[int, np.ndarray, np.ndarray] | None = None  # (epoch, index, source)

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.grad_accum * self.world

    def epoch(self, e: int) -> tuple[np.ndarray, np.ndarray]:
        """(concat index, source) of every position of mixture epoch ``e``."""
        if self._cache is None or self._cache[0] != e:
            rng = np.random.default_rng([self.seed, e])
            source = rng.choice(len(self.sizes), size=self.epoch_len, p=self.probs)
            index = np.empty(self.epoch_len, np.int64)
            for s, size in enumerate(self.sizes):
                where = np.flatnonzero(source == s)
                rounds = -(-len(where) // size)  # ceil: a heavy small source repeats its windows
                if rounds:
                    order = np.concatenate([rng.permutation(size) for _ in range(rounds)])
                    index[where] = self.offsets[s] + order[: len(where)]
            self._cache = (e, index, source)
        return self._cache[1], self._cache[2]

    def positions(self, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """(concat index, source) of global stream positions ``start .. start + count``."""
        pos = np.arange(start, start + count)
        epochs, within = np.divmod(pos, self.epoch_len)
        index, source = np.empty(count, np.int64), np.empty(count, np.int64)
        for e in np.unique(epochs):
            sel = epochs == e
            idx, src = self.epoch(int(e))
            index[sel], source[sel] = idx[within[sel]], src[within[sel]]
        return index, source

    def shard_start(self, step: int, micro: int) -> int:
        """Global position of this rank's shard at (step, micro-step)."""
        shard = micro * self.world + self.rank
        return step * self.global_batch + shard * self.batch_size

    def __iter__(self) -> Iterator[int]:
        step = self.start_step
        while True:
            for micro in range(self.grad_accum):
                index, _ = self.positions(self.shard_start(step, micro), self.batch_size)
                yield from index.tolist()
            step += 1
