"""Closed-loop success on the simulated push task, in process: what ``uwm eval`` measures.

Episodes on fixed seeds run in lock step, so one batched engine call serves every episode that
needs a new chunk. Chunks are executed through the node's own ``ChunkScheduler`` (execute k of
each chunk, blend at the seam) on the sim's clock; inference takes no sim time, which is what
the node achieves when inference is faster than a control period. The observation is what the
node assembles: the last h_o camera frames and joint positions, one control period apart, the
first frame repeated at an episode start (as the training windows pad).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from uwm_ros.engines.base import Engine, Observation
from uwm_ros.runtime.scheduler import ChunkScheduler

from .expert import Controller, RandomController, expert
from .node import CAMERA, EpisodeResult
from .render import render
from .world import DT, World

EVAL_SEED = 100_000  # evaluation layouts: never recorded for training (those start at 0)
Z95 = 1.959964  # two-sided 95 % normal quantile

BatchPolicy = Callable[[Sequence[Observation]], list[np.ndarray]]


@dataclass(frozen=True)
class Execution:
    """How chunks are executed: the node's parameters of the same names. The defaults are the
    best measured for the push task's policies: 4 of 16 actions per chunk, and a clean switch
    at the seam (blending cross-fades chunks that may have chosen different ways around the
    block, an average of two plans that is neither: 44 % vs 67 % in the study)."""

    execute_steps: int = 4
    seam: str = "switch"
    blend_steps: int = 4


@dataclass(frozen=True)
class Summary:
    """Success rate over the episodes, with its Wilson 95 % interval."""

    episodes: int
    successes: int
    rate: float
    low: float
    high: float
    mean_time_to_success_s: float | None

    @classmethod
    def of(cls, results: Sequence[EpisodeResult]) -> Summary:
        n, k = len(results), sum(r.success for r in results)
        low, high = wilson_interval(k, n)
        times = [r.steps * DT for r in results if r.success]
        mean = round(float(np.mean(times)), 2) if times else None
        return cls(n, k, k / n if n else 0.0, low, high, mean)

    def line(self) -> str:
        """``62 % (31/50, 95 % CI 48-74 %), 2.9 s to success``."""
        time = f", {self.mean_time_to_success_s:.1f} s to success" if self.successes else ""
        return (f"{self.rate:.0%} ({self.successes}/{self.episodes}, 95 % CI "
                f"{self.low:.0%}-{self.high:.0%}){time}")  # fmt: skip


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (sane at 0 and n, unlike the normal one)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


class _Episode:
    """One running episode: the world, its camera/joint history and the chunk plan."""

    def __init__(self, index: int, seed: int, execution: Execution, image_size: int) -> None:
        self.index, self.seed, self.image_size = index, seed, image_size
        self.world = World.reset(seed)
        self.frames = [render(self.world, image_size)]
        self.joints = [self.world.q.astype(np.float32)]
        self.scheduler = ChunkScheduler(DT, execution.execute_steps, execution.seam,
                                        execution.blend_steps)  # fmt: skip

    @property
    def now(self) -> float:
        return self.world.steps * DT

    def observation(self, n_obs_steps: int) -> Observation:
        picks = [max(len(self.frames) - 1 - j, 0) for j in reversed(range(n_obs_steps))]
        images = np.stack([self.frames[i] for i in picks])
        return Observation({CAMERA: images}, np.stack([self.joints[i] for i in picks]))

    def step(self) -> None:
        """Execute the planned action due now (hold without one) for one control period."""
        s = self.scheduler
        i = round((self.now - s.times[0]) / DT) if len(s.times) else -1  # due now
        self.world.step(s.actions[i] if 0 <= i < len(s.actions) else self.world.q)
        self.frames.append(render(self.world, self.image_size))
        self.joints.append(self.world.q.astype(np.float32))


def run_policy(
    policy: BatchPolicy,
    seeds: Sequence[int],
    n_obs_steps: int,
    execution: Execution = Execution(),
    image_size: int = 64,
    parallel: int = 50,
    progress: bool = False,
) -> list[EpisodeResult]:
    """Run one episode per seed with ``policy`` choosing chunks, ``parallel`` at a time."""
    queue = list(enumerate(seeds))[::-1]
    active: list[_Episode] = []
    results: list[EpisodeResult] = []
    bar = tqdm(total=len(seeds), unit="episode", disable=not progress, desc="eval")
    while queue or active:
        while queue and len(active) < parallel:
            index, seed = queue.pop()
            active.append(_Episode(index, seed, execution, image_size))
        due = [e for e in active if e.now >= e.scheduler.trigger_time() - 1e-6]
        if due:
            chunks = policy([e.observation(n_obs_steps) for e in due])
            for e, chunk in zip(due, chunks):
                e.scheduler.merge(e.now, np.asarray(chunk, np.float64), e.now)
        for e in active:
            e.step()
        for e in [e for e in active if e.world.done]:
            active.remove(e)
            results.append(EpisodeResult(e.index, e.seed, e.world.success, e.world.steps))
            bar.update()
    bar.close()
    return sorted(results, key=lambda r: r.index)


def engine_policy(engine: Engine, mode: str = "policy") -> BatchPolicy:
    """The engine as a batched policy; ``mode`` policy, or joint (its actions validated too)."""

    def act(observations: Sequence[Observation]) -> list[np.ndarray]:
        predictions = engine.predict_batch(observations, mode)
        return [np.asarray(p.actions) for p in predictions]

    return act


@dataclass
class SimSuccess:
    """Closed-loop success on the sim, for ``train(..., closed_loop=SimSuccess(...))``: the
    learning curve of a run trained on ``uwm sim`` recordings."""

    every_minutes: float
    episodes: int = 50
    first_seed: int = EVAL_SEED
    execution: Execution = Execution()

    def __call__(self, model: Any, spec: Any) -> dict[str, float]:
        from uwm_ros.engines.torch_engine import TorchEngine

        device = str(next(model.parameters()).device)
        engine = TorchEngine.from_model(model, spec, device)
        seeds = seeds_from(self.first_seed, self.episodes)
        cfg = model.cfg
        results = run_policy(engine_policy(engine), seeds, cfg.n_obs_steps, self.execution,
                             cfg.image_size)  # fmt: skip
        summary = Summary.of(results)
        return {"success": summary.rate, "success_low": summary.low, "success_high": summary.high}


def run_controller(make: Callable[[int], Controller], seeds: Sequence[int]) -> list[EpisodeResult]:
    """Episodes of a privileged controller (``make(seed)``), acting every control period."""
    results = []
    for index, seed in enumerate(seeds):
        world, controller = World.reset(seed), make(seed)
        while not world.done:
            world.step(controller(world))
        results.append(EpisodeResult(index, seed, world.success, world.steps))
    return results


def baselines(seeds: Sequence[int]) -> dict[str, Summary]:
    """The scripted expert and the random controller on ``seeds``: the scale of any result."""
    return {
        "expert": Summary.of(run_controller(lambda _: expert, seeds)),
        "random": Summary.of(run_controller(RandomController, seeds)),
    }


def closed_loop_success(
    engine: Engine,
    seeds: Sequence[int],
    mode: str = "policy",
    execution: Execution = Execution(),
    parallel: int = 50,
    with_baselines: bool = True,
) -> dict[str, Summary]:
    """``uwm eval``: the engine's success on ``seeds`` (and the expert's and random's)."""
    cfg = engine.cfg
    results = run_policy(engine_policy(engine, mode), seeds, cfg.n_obs_steps, execution,
                         cfg.image_size, parallel, progress=True)  # fmt: skip
    return {"policy": Summary.of(results), **(baselines(seeds) if with_baselines else {})}


def seeds_from(first: int, episodes: int) -> list[int]:
    return list(range(first, first + episodes))


def report(summaries: dict[str, Summary]) -> dict[str, Any]:
    """JSON-ready: per controller its counts, rate, interval and time to success."""
    return {name: vars(s) for name, s in summaries.items()}
