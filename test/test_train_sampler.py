"""The mixture sampler: configured proportions, disjoint rank shards, resume by step."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from uwm_training.train.sampler import MixtureSampler


def take(sampler: MixtureSampler, n: int) -> list[int]:
    return list(itertools.islice(iter(sampler), n))


@pytest.mark.parametrize(("sizes", "weights"), [([300, 100], [3, 1]), ([50, 400], [1, 1])])
def test_sources_are_drawn_in_the_configured_proportions(
    sizes: list[int], weights: list[float]
) -> None:
    sampler = MixtureSampler(sizes, weights, seed=1, batch_size=8)
    index = np.array(take(sampler, 8000))
    share = float((index < sizes[0]).mean())  # ConcatDataset order: source 0 first
    assert share == pytest.approx(weights[0] / sum(weights), abs=0.02)


def test_windows_are_drawn_without_replacement_within_an_epoch() -> None:
    sampler = MixtureSampler([40, 60], [1, 1], seed=0, batch_size=10)
    index, source = sampler.epoch(0)
    for s, (lo, size) in enumerate([(0, 40), (40, 60)]):
        drawn = index[source == s]
        assert ((drawn >= lo) & (drawn < lo + size)).all()
        counts = np.bincount(drawn - lo, minlength=size)
        assert counts.max() - counts.min() <= 1  # every window once before any twice


def test_shards_split_a_step_the_same_way_over_ranks_or_micro_steps() -> None:
    kwargs = dict(sizes=[20, 30], weights=[1, 2], seed=3, batch_size=4)
    ranks = [MixtureSampler(**kwargs, world=2, rank=r) for r in range(2)]  # type: ignore[arg-type]
    accum = MixtureSampler(**kwargs, grad_accum=2)  # type: ignore[arg-type]
    steps = 7
    per_rank = [np.array(take(s, 4 * steps)).reshape(steps, 4) for s in ranks]
    single = np.array(take(accum, 8 * steps)).reshape(steps, 2, 4)
    for k in range(steps):  # micro-step m of one process = rank m of two
        np.testing.assert_array_equal(single[k, 0], per_rank[0][k])
        np.testing.assert_array_equal(single[k, 1], per_rank[1][k])
    positions = [{s.shard_start(k, 0) + j for k in range(steps) for j in range(4)} for s in ranks]
    assert not positions[0] & positions[1]  # ranks never share a stream position


def test_resuming_at_a_step_continues_the_stream() -> None:
    kwargs = dict(sizes=[7, 5], weights=[1, 1], seed=9, batch_size=3, grad_accum=2)
    whole = take(MixtureSampler(**kwargs), 6 * 20)  # type: ignore[arg-type]
    resumed = take(MixtureSampler(**kwargs, start_step=13), 6 * 7)  # type: ignore[arg-type]
    assert resumed == whole[6 * 13 :]
    other_seed = take(MixtureSampler(**{**kwargs, "seed": 10}), 6 * 20)  # type: ignore[arg-type]
    assert other_seed != whole
