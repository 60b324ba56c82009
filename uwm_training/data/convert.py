"""Sources (bags, videos) -> one dataset: parallel worker processes, progress, atomic output.

Each source is converted independently into a part store inside the temp dataset dir (a worker
process per source when ``workers`` > 1); the parts are then moved into the dataset in source
order, so the result does not depend on which worker finished first. Any failure removes the
temp dir: no partial dataset, and an appended-to dataset stays untouched. ``--shard I/N`` keeps
every N-th source so a job array can convert a fleet into N datasets.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .config import ConvertConfig
from .errors import DataError, DatasetError
from .extract import convert_bag
from .losses import check_losses
from .store import Store, append_part, open_store, source_digests, spec_mismatch, staged

Event = tuple[str, int, int]  # (kind: start|update|end, job index, count)


@dataclass(frozen=True)
class Job:
    """One source: ``run(*args, part=, converter=, progress=)`` writes a part, returns a report."""

    label: str
    run: Callable[..., dict[str, Any]]
    args: tuple[Any, ...]


class Sink:
    """Progress of one job, sent to the board (directly, or through a queue from a worker)."""

    def __init__(self, index: int, send: Callable[[Event], None]) -> None:
        self.index, self.send = index, send

    def start(self, total: int) -> None:
        self.send(("start", self.index, total))

    def __call__(self, n: int) -> None:
        self.send(("update", self.index, n))


class Board:
    """tqdm bars: one overall (sources) and one per running source (messages/frames)."""

    def __init__(self, jobs: Sequence[Job], enabled: bool) -> None:
        self.jobs, self.enabled = jobs, enabled
        self.overall = tqdm(total=len(jobs), desc="sources", unit="src", disable=not enabled)
        self.bars: dict[int, tqdm[Any]] = {}

    def __call__(self, event: Event) -> None:
        kind, index, n = event
        if kind == "start":
            label = Path(self.jobs[index].label).name[-30:]
            self.bars[index] = tqdm(
                total=n,
                desc=label,
                unit="msg",
                leave=False,
                disable=not self.enabled,
                position=1 + len(self.bars) % 8,
            )
        elif kind == "update" and index in self.bars:
            self.bars[index].update(n)
        elif kind == "end":
            if index in self.bars:
                self.bars.pop(index).close()
            self.overall.update(1)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.overall.close()


def converter_info() -> dict[str, Any]:
    try:
        version = metadata.version("uwm-ros")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"name": "uwm-ros", "version": version}


def select_shard(sources: Sequence[Any], shard: str | None) -> list[Any]:
    """``I/N``: every N-th source starting at I (0-based), of the sources sorted by name."""
    if shard is None:
        return list(sources)
    try:
        i, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise DataError(f"--shard: expected I/N (e.g. 0/4), got {shard!r}") from None
    if not 0 <= i < n:
        raise DataError(f"--shard: need 0 <= I < N, got {shard!r}")
    return sorted(sources, key=str)[i::n]


def bag_jobs(
    bags: Sequence[Path], cfg: ConvertConfig, allow_missing_files: bool = False
) -> list[Job]:
    """One job per bag; ``allow_missing_files``: convert what is present of split bags."""
    return [Job(str(bag), convert_bag, (Path(bag), cfg, allow_missing_files)) for bag in bags]


def build_dataset(
    jobs: Sequence[Job],
    out: Path,
    append: bool = False,
    workers: int | None = None,
    expected_spec: dict[str, Any] | None = None,
    progress: bool = True,
    allow_losses: bool = False,
) -> list[dict[str, Any]]:
    """Convert every job into the dataset at ``out`` (new, or appended to); returns reports.

    A source that yields no episode or loses more than ``losses.LOSS_LIMIT`` of its frames
    fails the whole conversion (nothing written) unless ``allow_losses``."""
    if not jobs:
        raise DataError("nothing to convert: no bags or videos given")
    if len({job.label for job in jobs}) != len(jobs):
        raise DataError("the same source is given twice")
    converter = converter_info()
    with staged(out, append) as root:
        if append and expected_spec is not None:
            _check_spec(out, expected_spec)
        parts = root.with_name(root.name + ".parts")  # beside the dataset: zarr owns its dir
        parts.mkdir()
        board = Board(jobs, progress)
        try:
            reports = _run(jobs, parts, converter, workers, board)
            problem = None if allow_losses else check_losses(reports)
            if problem:
                raise DataError(problem)
            _assemble(root, [parts / f"{i:05d}" for i in range(len(jobs))], converter)
        finally:
            board.close()
            shutil.rmtree(parts, ignore_errors=True)
    return reports


def _check_spec(out: Path, expected: dict[str, Any]) -> None:
    """Fail before converting anything if the config cannot match the dataset."""
    have = dict(open_store(out).attrs["spec"])
    new = {**expected, "lowdim": dict(expected["lowdim"])}
    if "action" not in new["lowdim"] and new["action_source"] == "command":
        new["lowdim"]["action"] = have["lowdim"].get("action")  # decided by the bags' type
    new.setdefault("action_kind", have.get("action_kind"))  # decided by the bags, too
    bad = spec_mismatch(have, new)
    if bad:
        raise DatasetError(f"{out}: the config does not match the dataset: {'; '.join(bad)}")


def _assemble(root: Path, parts: list[Path], converter: dict[str, Any]) -> None:
    """Move the parts into the dataset at ``root`` in order (a new dataset starts as the first
    part, renamed)."""
    if not root.exists():
        os.rename(parts[0], root)
        parts = parts[1:]
    for part in parts:
        group = open_store(root)
        seen = {d: s["path"] for s in group.attrs["sources"] for d in source_digests(s)}
        for source in Store(part).attrs["sources"]:
            for digest in source_digests(source):
                if digest in seen:
                    raise DatasetError(
                        f"{source['path']}: already in the dataset (same content as {seen[digest]})"
                    )
        append_part(root, part)
    open_store(root, "r+").attrs["converter"] = converter


def _run(
    jobs: Sequence[Job], parts: Path, converter: dict[str, Any], workers: int | None, board: Board
) -> list[dict[str, Any]]:
    workers = min(len(jobs), workers or os.cpu_count() or 1)
    if workers <= 1:
        reports = []
        for i, job in enumerate(jobs):
            reports.append(_call(job, parts / f"{i:05d}", converter, Sink(i, board)))
            board(("end", i, 0))
        return reports
    # spawn, not fork: the parent may run zarr's event-loop thread, which fork would copy broken.
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager, ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        events: Any = manager.Queue()
        futures: dict[Future[dict[str, Any]], int] = {
            pool.submit(_worker, job, parts / f"{i:05d}", converter, i, events): i
            for i, job in enumerate(jobs)
        }
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.1, return_when=FIRST_EXCEPTION)
            _drain(events, board)
            for future in done:
                if future.exception() is not None:
                    pool.shutdown(cancel_futures=True)
                    raise future.exception()  # type: ignore[misc]
                board(("end", futures[future], 0))
        _drain(events, board)
        return [f.result() for f in futures]


def _drain(events: Any, board: Board) -> None:
    while True:
        try:
            board(events.get_nowait())
        except queue.Empty:
            return


def _call(job: Job, part: Path, converter: dict[str, Any], sink: Sink) -> dict[str, Any]:
    return job.run(*job.args, part=part, converter=converter, progress=sink)


def _worker(job: Job, part: Path, converter: dict[str, Any], index: int, events: Any) -> Any:
    return _call(job, part, converter, Sink(index, events.put))
