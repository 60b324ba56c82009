"""``uwm bag play`` / ``uwm bag record``: rosbag2 recordings to and from Cyclone DDS, no ROS.

Play drives the policy node (or any ROS 2 node) from a real recording; record captures what a
node publishes. Both use ``rosbags`` for the files and ``DDSTransport`` for the wire. Heavy
modules are imported inside the functions so ``uwm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ..transport.base import QoS
    from ..transport.dds import DDSTransport

__all__ = ["BagToolError", "add_bag_commands", "main", "new_bag", "play", "record", "register"]

ACK_TIMEOUT_S = 5.0  # after the last message: time for reliable readers to catch up
DISCOVERY_PERIOD_S = 0.2  # how often record looks for publishers of topics it still lacks
RECORD_DEPTH = 500  # reader cache per topic while recording: bursts must not drop messages
BAG_VERSION: Final = 8  # rosbag2 metadata version rosbags writes; readable by Humble and later


class BagToolError(Exception):
    """A bag or topic problem worth one line to the user, not a traceback."""


# ----- play -------------------------------------------------------------------------------------
def play(
    bag: Path,
    topics: Sequence[str] = (),
    rate: float = 1.0,
    loop: bool = False,
    wait_s: float = 0.0,
    progress: bool = True,
    stop: threading.Event | None = None,
) -> int:
    """Publish the messages of ``bag`` (all topics or ``topics``) at ``rate`` x real time.

    Header stamps are the recorded ones. With ``wait_s`` > 0, waits up to that long until every
    topic has a subscriber, so a recorder or node started alongside misses nothing. Returns the
    number of messages published.
    """
    from rosbags.highlevel import AnyReader, AnyReaderError

    from ..msgs import typestore

    if rate <= 0:
        raise BagToolError(f"--rate must be > 0, got {rate}")
    try:
        with AnyReader([bag], default_typestore=typestore()) as reader:
            return _play(reader, topics, rate, loop, wait_s, progress, stop or threading.Event())
    except (AnyReaderError, OSError) as e:  # missing path, unreadable or corrupt bag
        raise BagToolError(f"{bag}: {e}") from None


def _play(
    reader: Any,
    topics: Sequence[str],
    rate: float,
    loop: bool,
    wait_s: float,
    progress: bool,
    stop: threading.Event,
) -> int:
    from tqdm import tqdm

    from ..transport.dds import DDSTransport

    connections = [c for c in reader.connections if not topics or c.topic in topics]
    missing = set(topics) - {c.topic for c in connections}
    if missing or not connections:
        raise BagToolError(f"no topic(s) {sorted(missing)} in the bag's {sorted(reader.topics)}")
    transport = DDSTransport("uwm_bag_play", store=reader.typestore)
    try:
        types = {c.topic: c.msgtype for c in connections}
        publishers = {topic: transport.publisher(topic, t) for topic, t in types.items()}
        _wait_for(lambda: all(p.matched() for p in publishers.values()), wait_s, stop)
        total = sum(c.msgcount for c in connections)
        with tqdm(total=total, unit="msg", disable=not progress) as bar:
            published = _play_pass(reader, connections, publishers, rate, stop, bar)
            while loop and not stop.is_set():
                bar.reset(total)
                published += _play_pass(reader, connections, publishers, rate, stop, bar)
        for publisher in publishers.values():
            publisher.wait_for_acks(ACK_TIMEOUT_S)
    finally:
        transport.shutdown()
    return published


def _play_pass(
    reader: Any,
    connections: list[Any],
    publishers: dict[str, Any],
    rate: float,
    stop: threading.Event,
    bar: Any,
) -> int:
    """One pass over the bag, paced by receive time from its first selected message."""
    start, first, count = time.monotonic(), None, 0
    for conn, stamp, raw in reader.messages(connections=connections):
        first = stamp if first is None else first
        if stop.wait(max(0.0, start + (stamp - first) / 1e9 / rate - time.monotonic())):
            break
        publishers[conn.topic].publish(reader.deserialize(raw, conn.msgtype))
        count += 1
        bar.update()
    return count


def _wait_for(condition: Callable[[], bool], timeout_s: float, stop: threading.Event) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline and not stop.wait(0.01):
        pass


# ----- record -----------------------------------------------------------------------------------
def record(
    out: Path,
    topics: Sequence[str],
    duration_s: float | None = None,
    storage: str = "mcap",
    progress: bool = True,
    stop: threading.Event | None = None,
) -> dict[str, int]:
    """Write ``topics`` as seen on DDS to a new rosbag2 ``out`` until ``stop`` or ``duration_s``.

    A topic's type and QoS come from discovery: it is subscribed once a publisher appears.
    The bag is built in a hidden temporary directory next to ``out`` and renamed when
    complete, so ``out`` is never a half-written bag. Returns messages written per topic.
    """
    from tqdm import tqdm

    from ..msgs import typestore
    from ..transport.dds import DDSTransport

    stop = stop or threading.Event()
    store = typestore()
    counts = dict.fromkeys(topics, 0)
    with new_bag(out, storage) as writer:
        transport = DDSTransport("uwm_bag_record")
        try:
            with tqdm(unit="msg", disable=not progress) as bar:

                def subscribe(topic: str, msgtype: str, offered: QoS) -> None:
                    conn = writer.add_connection(topic, msgtype, typestore=store)

                    def write(msg: Any) -> None:
                        writer.write(conn, transport.now_ns(), store.serialize_cdr(msg, msgtype))
                        counts[topic] += 1
                        bar.update()

                    transport.subscribe(topic, msgtype, write, replace(offered, depth=RECORD_DEPTH))

                _record_loop(transport, set(topics), subscribe, duration_s, stop)
        finally:
            transport.shutdown()
    return counts


@contextmanager
def new_bag(out: Path, storage: str = "mcap") -> Iterator[Any]:
    """An open ``rosbags`` Writer for the new bag ``out``, built in a hidden temporary directory
    next to it and renamed when the block completes: ``out`` is never a half-written bag."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    if out.exists():
        raise BagToolError(f"{out} already exists")
    if storage not in ("mcap", "sqlite3"):
        raise BagToolError(f"unknown storage {storage!r}; choose mcap or sqlite3")
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".recording", dir=out.parent))
    writer = Writer(tmp / out.name, version=BAG_VERSION, storage_plugin=plugin)
    writer.open()
    try:
        yield writer
        writer.close()
        (tmp / out.name).rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _record_loop(
    transport: DDSTransport,
    pending: set[str],
    subscribe: Callable[[str, str, QoS], None],
    duration_s: float | None,
    stop: threading.Event,
) -> None:
    """Spin, subscribing to topics as their publishers appear; drain what is queued at the end."""
    deadline = None if duration_s is None else time.monotonic() + duration_s
    next_discovery = 0.0
    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
        if pending and time.monotonic() >= next_discovery:
            for topic, (msgtype, offered) in transport.publications().items():
                if topic not in pending:
                    continue
                pending.discard(topic)
                if msgtype in transport.types.store.fielddefs:
                    subscribe(topic, msgtype, offered)
                else:  # keep recording the others; the summary shows this topic at 0
                    transport.logger.error("not recording %s: unknown type %s", topic, msgtype)
            next_discovery = time.monotonic() + DISCOVERY_PERIOD_S
        transport.spin_once(0.1)
    # what arrived before the stop belongs to the recording; one take empties each reader cache
    transport.spin_once(0.0)


# ----- command line -----------------------------------------------------------------------------
@contextmanager
def _signals_set(event: threading.Event) -> Iterator[None]:
    """Ctrl-C / SIGTERM set ``event`` instead of raising mid-write; main thread only."""
    sigs = (signal.SIGINT, signal.SIGTERM)
    handlers = {sig: signal.signal(sig, lambda *_: event.set()) for sig in sigs}
    try:
        yield
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _cmd_play(args: argparse.Namespace) -> int:
    stop = threading.Event()
    with _signals_set(stop):
        n = play(args.bag, args.topics, args.rate, args.loop, args.wait_for_subscribers,
                 not args.quiet, stop)  # fmt: skip
    print(f"published {n} messages", file=sys.stderr)
    return 0


def _cmd_record(args: argparse.Namespace) -> int:
    stop = threading.Event()
    with _signals_set(stop):
        print(f"recording {' '.join(args.topics)} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        counts = record(args.out, args.topics, args.duration, args.storage, not args.quiet, stop)
    summary = ", ".join(f"{topic} {n}" for topic, n in counts.items())
    print(f"wrote {args.out}: {summary} messages", file=sys.stderr)
    return 0


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from ..msgs import MessageError

        try:
            return handler(args)
        except (BagToolError, MessageError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    return run


def add_bag_commands(bag_sub: Any) -> None:
    """Add ``play`` and ``record`` to an existing ``bag`` subcommand group."""
    raw = argparse.RawDescriptionHelpFormatter
    doc = "publish a rosbag2's topics over DDS at real time (header stamps as recorded)"
    p = bag_sub.add_parser("play", help=doc, description=doc, formatter_class=raw, epilog=(
        "examples:\n  uwm bag play recordings/pick_01\n"
        "  uwm bag play --topics /camera/front/image_raw /joint_states --rate 0.5 --loop rec.mcap"
    ))  # fmt: skip
    p.add_argument("bag", type=Path, metavar="BAG", help="rosbag2 folder or .mcap/.db3 file")
    p.add_argument("--topics", nargs="+", default=(), metavar="T", help="default: all")
    p.add_argument("--rate", type=float, default=1.0, help="speed factor (default 1)")
    p.add_argument("--loop", action="store_true", help="start over at the end until Ctrl-C")
    p.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="S",
                   help="wait up to S seconds until every topic has a subscriber")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_guarded(_cmd_play))

    doc = "write DDS topics to a new rosbag2 (types and QoS found by discovery)"
    p = bag_sub.add_parser("record", help=doc, description=doc, formatter_class=raw, epilog=(
        "examples:\n  uwm bag record --out runs/chunks --topics /uwm_policy/action_chunk\n"
        "  uwm bag record --out cams --topics /camera/front/image_raw --duration 60"
    ))  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="bag folder to create")
    p.add_argument("--topics", nargs="+", required=True, metavar="T")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_guarded(_cmd_record))


def register(sub: Any) -> None:
    """Add a ``bag`` group with ``play`` and ``record`` to a CLI that has none."""
    bag = sub.add_parser("bag", help="play and record rosbag2 over DDS")
    add_bag_commands(bag.add_subparsers(dest="bag_command", metavar="COMMAND", required=True))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m uwm_ros.nodes.bag_tools bag play|record ...`` (what ``uwm bag`` runs)."""
    parser = argparse.ArgumentParser(prog="python -m uwm_ros.nodes.bag_tools")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
