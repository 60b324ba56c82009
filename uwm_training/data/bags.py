"""Open any rosbag2 input, say what is in it, and stream its raw messages safely.

Inputs: a rosbag2 folder (sqlite3 or mcap; metadata versions 1-9; zstd per file or per message;
any folder name, ``.bag`` included) or a single ``.mcap``/``.db3`` file. Field bags are messier
than the ones tools write, so opening also repairs or reports:

- ROS 1-style type names (``sensor_msgs/Image``) are read as ``sensor_msgs/msg/Image``;
- types without a definition in the bag come from a distro typestore; types nobody defines
  (or whose definition does not parse, e.g. some service events) are listed and skipped;
- QoS text in metadata.yaml that differs from the storage's makes rosbags' reader silently
  yield nothing for that topic: we read with the storage's QoS, and compare every topic's
  messages read against the count the bag declares, failing loudly on a mismatch.

Every failure is a ``BagError`` naming the bag (and topic); no reader exception escapes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from rosbags.interfaces import Connection, MessageDefinitionFormat, Nodetype
from rosbags.rosbag2 import Reader
from rosbags.rosbag2.reader import DirectoryReader
from rosbags.rosbag2.storage_mcap import McapReader
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from . import splits
from .compress import zstd
from .errors import BagError
from .messages import ZSTD_MAGIC

DISTROS = {s.name.lower()[5:]: s for s in Stores if s.name.startswith("ROS2_")}
STORAGE_SUFFIXES = {".mcap": "mcap", ".db3": "sqlite3"}
IDL_SEPARATOR = "=" * 80 + "\n"


def normalize_type(name: str) -> str:
    """``pkg/Type`` (ROS 1 style, seen in bridged bags) -> ``pkg/msg/Type``."""
    parts = name.split("/")
    return f"{parts[0]}/msg/{parts[1]}" if len(parts) == 2 else name


@functools.cache
def distro_types(distro: str) -> dict[str, Any]:
    """A distro's message definitions (building its typestore costs ~60 ms: once per process)."""
    return dict(get_typestore(DISTROS[distro]).fielddefs)


def _closure(types: dict[str, Any], msgtype: str) -> set[str] | None:
    """``msgtype`` and every type it nests; None if one of them is not defined (a bag may
    define a type but not its parts)."""
    todo, seen = [msgtype], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in types:
            return None
        seen.add(name)
        for _, (kind, detail) in types[name][1]:
            if kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
                kind, detail = detail[0]
            if kind == Nodetype.NAME:
                todo.append(detail)
    return seen


@dataclass(frozen=True)
class Topic:
    """One topic of an open bag."""

    name: str
    msgtype: str  # normalised pkg/msg/Type
    recorded_type: str  # as the bag spells it
    count: int  # messages the bag declares
    connections: tuple[Connection, ...]
    known: bool  # a definition exists (bag or typestore): can be deserialised
    has_header: bool  # first field is std_msgs/Header: stamps readable without decoding


class Bag:
    """An open rosbag2 input; use as a context manager."""

    def __init__(
        self, path: str | Path, distro: str = "humble", allow_missing_files: bool = False
    ) -> None:
        self.name = str(path)
        self.problems: list[str] = []
        self._readers: dict[str, Callable[[bytes | memoryview], Any]] = {}
        self.path, self.standalone = self._resolve(Path(path))
        self._stand_in: Path | None = None
        if not self.standalone:
            self._present_files(allow_missing_files)
        try:
            self._reader = Reader(self._stand_in or self.path)
            self._reader.open()
        except Exception as e:  # any reader failure is a property of this bag's files
            self._remove_stand_in()
            raise BagError(self.name, f"cannot open ({type(e).__name__}: {e})") from None
        try:
            self._inspect(distro)
        except BaseException:
            self.close()
            raise

    # ----- opening ------------------------------------------------------------------------------
    def _resolve(self, path: Path) -> tuple[Path, bool]:
        if not path.exists():
            raise BagError(self.name, "does not exist")
        if path.is_dir():
            if (path / "metadata.yaml").exists():
                return path, False
            files = sorted(p.name for p in path.iterdir() if p.suffix in STORAGE_SUFFIXES)
            hint = f"; to read a storage file alone pass {path / files[0]}" if files else ""
            raise BagError(self.name, f"metadata.yaml is missing{hint}")
        if path.suffix == ".bag":
            raise BagError(self.name, "a ROS 1 bag file: convert it first (rosbags-convert)")
        if path.suffix not in STORAGE_SUFFIXES:
            raise BagError(self.name, "not a rosbag2 folder or a .mcap/.db3 file")
        if (path.parent / "metadata.yaml").exists():
            # Compression and declared counts live in metadata.yaml: read the whole folder.
            self.problems.append(f"read as the bag folder {path.parent} (it has metadata.yaml)")
            return path.parent, False
        return path, True

    def _present_files(self, allow: bool) -> None:
        """A split bag with storage files missing: refused, or read as the files present."""
        present, missing = splits.missing_files(self.path)
        if not missing:
            return
        if not allow or not present:
            raise splits.refuse_missing(self.path, present, missing)
        self._stand_in = splits.present_files_bag(self.path, present)
        self.problems.append(
            f"split bag: read the {len(present)} storage files present; missing: "
            + ", ".join(missing)
        )

    def _remove_stand_in(self) -> None:
        if self._stand_in is not None:
            splits.remove(self._stand_in)
            self._stand_in = None

    def _inspect(self, distro: str) -> None:
        storage = self._reader.storage
        if isinstance(storage, DirectoryReader):
            self._align_qos(storage)
        self.typestore, broken = self._typestore(distro)
        topics: dict[str, Topic] = {}
        for name, info in self._reader.topics.items():
            recorded = info.msgtype or info.connections[0].msgtype
            msgtype = normalize_type(recorded)
            if msgtype != recorded:
                self.problems.append(f"{name}: ROS 1-style type {recorded!r} read as {msgtype!r}")
            fields = self.typestore.fielddefs.get(msgtype)
            first = fields[1][0] if fields and fields[1] else None
            has_header = first is not None and first[1][1] == "std_msgs/msg/Header"
            topics[name] = Topic(
                name,
                msgtype,
                recorded,
                info.msgcount,
                tuple(info.connections),
                bool(fields),
                has_header,
            )
            if "/_service_event" in name or msgtype.endswith("_Event"):
                self.problems.append(f"{name}: service events ({msgtype}), not converted")
            elif not fields:
                why = f" ({broken[msgtype]})" if msgtype in broken else ""
                self.problems.append(f"{name}: type {msgtype} has no usable definition{why}")
        self.topics = topics
        if not self.count:
            self.problems.append("empty bag: no messages")

    def _align_qos(self, directory: DirectoryReader) -> None:
        """Use the storage's QoS for each topic: metadata.yaml's only has to look alike."""
        stored = {(c.topic, c.msgtype): c.ext for s in directory.storages for c in s.connections}
        for i, conn in enumerate(directory.connections):
            ext = stored.get((conn.topic, conn.msgtype))
            if ext is not None and ext != conn.ext:
                directory.connections[i] = conn._replace(ext=ext)
                self.problems.append(
                    f"{conn.topic}: QoS in metadata.yaml differs from the storage's; using the "
                    "storage's"
                )

    def _typestore(self, distro: str) -> tuple[Typestore, dict[str, str]]:
        """Definitions from the bag where present, the distro's for the rest; only the bag's
        types whose every nested type is defined are registered (registering makes classes)."""
        if distro not in DISTROS:
            raise BagError(
                self.name, f"unknown typestore {distro!r}; choose from {sorted(DISTROS)}"
            )
        types: dict[str, Any] = {}
        broken: dict[str, str] = {}
        for conn in self._reader.connections:
            msgtype, msgdef = normalize_type(conn.msgtype), conn.msgdef
            try:
                if msgdef.format == MessageDefinitionFormat.MSG:
                    types.update(get_types_from_msg(msgdef.data, msgtype))
                elif msgdef.format == MessageDefinitionFormat.IDL:
                    for part in msgdef.data.split(IDL_SEPARATOR):
                        if part.startswith("IDL: "):
                            types.update(get_types_from_idl(part.split("\n", 1)[1]))
            except Exception as e:  # a definition we cannot parse only matters if it is needed
                broken[msgtype] = f"definition does not parse: {type(e).__name__}"
                types.pop(msgtype, None)
        names = {normalize_type(c.msgtype) for c in self._reader.connections}
        if any(_closure(types, name) is None for name in names):  # (importing a distro: ~0.1 s)
            types = {**distro_types(distro), **types}
        used: set[str] = set()
        for name in names:
            used |= _closure(types, name) or set()
        store = get_typestore(Stores.EMPTY)
        store.register({name: types[name] for name in used})
        return store, broken

    # ----- facts --------------------------------------------------------------------------------
    @property
    def storage(self) -> str:
        inner: Any = self._reader.storage
        if isinstance(inner, DirectoryReader) and inner.storages:
            inner = inner.storages[0]
        return "mcap" if isinstance(inner, McapReader) else "sqlite3"

    @property
    def version(self) -> int | None:
        """metadata.yaml version (None for a standalone storage file)."""
        if self.standalone:
            return None
        meta = yaml.safe_load((self.path / "metadata.yaml").read_text())
        return int(meta["rosbag2_bagfile_information"]["version"])

    @property
    def compression(self) -> str:
        mode = self._reader.compression_mode
        return f"{self._reader.compression_format} per {mode}" if mode else "none"

    @property
    def count(self) -> int:
        return int(self._reader.message_count)

    @property
    def start_ns(self) -> int:
        return int(self._reader.start_time) if self.count else 0

    @property
    def end_ns(self) -> int:
        return int(self._reader.end_time) if self.count else 0

    def require(self, topic: str, types: tuple[str, ...] | None, what: str) -> Topic:
        """A topic the conversion needs: present, decodable, of an accepted type (``None``: any),
        non-empty."""
        if topic not in self.topics:
            raise BagError(
                self.name, f"{what} topic missing; the bag has {sorted(self.topics)}", topic
            )
        info = self.topics[topic]
        if not info.known:
            raise BagError(self.name, f"no message definition for type {info.msgtype}", topic)
        if types is not None and info.msgtype not in types:
            raise BagError(
                self.name, f"{what} topic has type {info.msgtype}; expected one of {types}", topic
            )
        if not info.count:
            raise BagError(self.name, f"{what} topic has no messages", topic)
        return info

    # ----- reading ------------------------------------------------------------------------------
    def messages(
        self, topics: Iterable[str], stop_ns: int | None = None
    ) -> Iterator[tuple[str, int, bytes]]:
        """(topic, receive ns, raw CDR) in receive order; checks counts against the bag's
        (unless ``stop_ns`` ends the read early: messages received before it)."""
        wanted = [self.topics[t] for t in topics]
        conns = [c for t in wanted for c in t.connections]
        if not conns:
            return
        counts: dict[str, int] = {}
        zstd_topics: set[str] = set()  # compressed per message, though nothing declares it
        stream = self._reader.messages(connections=conns, stop=stop_ns)
        while True:
            try:
                conn, recv_ns, raw = next(stream)
            except StopIteration:
                break
            except Exception as e:  # corrupt pages/chunks surface only while reading
                raise BagError(
                    self.name, f"cannot read messages ({type(e).__name__}: {e})", conn_topic(conns)
                ) from None
            topic = conn.topic
            n = counts.get(topic, 0)
            if not n and raw[:4] == ZSTD_MAGIC:
                # A storage file of a per-message zstd bag, without its metadata.yaml.
                zstd_topics.add(topic)
                self.problems.append(
                    f"{topic}: messages are zstd-compressed though no metadata.yaml says "
                    "so (a storage file of a per-message compressed bag): decompressed"
                )
            if topic in zstd_topics:
                raw = _decompress(self.name, topic, raw)
            counts[topic] = n + 1
            yield topic, recv_ns, raw
        if stop_ns is not None:
            return
        for info in wanted:
            if counts.get(info.name, 0) != info.count:
                raise BagError(
                    self.name,
                    f"read {counts.get(info.name, 0)} messages but the bag declares {info.count} "
                    "(truncated storage, or metadata.yaml that does not match it)",
                    info.name,
                )

    def deserialize(self, raw: bytes | memoryview, msgtype: str) -> Any:
        """A message (Image and JointState: their fields, read by ``cdr``'s fast readers)."""
        if msgtype not in self._readers:
            from .cdr import fast_reader

            fast = fast_reader(self.typestore, msgtype)
            self._readers[msgtype] = fast or functools.partial(
                self.typestore.deserialize_cdr, typename=msgtype
            )
        return self._readers[msgtype](raw)

    # ----- context manager ----------------------------------------------------------------------
    def close(self) -> None:
        if self._reader.is_open:
            self._reader.close()
        self._remove_stand_in()

    def __enter__(self) -> Bag:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _decompress(bag: str, topic: str, raw: bytes) -> bytes:
    try:
        return zstd.decompress(raw)
    except zstd.ZstdError as e:
        raise BagError(bag, f"cannot decompress a message ({e})", topic) from None


def conn_topic(conns: list[Connection]) -> str | None:
    """The topic named in a read error: the only one read, or none if several."""
    topics = {c.topic for c in conns}
    return topics.pop() if len(topics) == 1 else None
