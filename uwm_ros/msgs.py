"""Message definitions for the ROS-free paths: a ``rosbags`` typestore with our .msg files.

The DDS transport and the bag tools build everything from this one typestore, so standard and
custom messages share a single source of truth (DESIGN §10). Messages are the typestore's
dataclasses: ROS field names, numpy arrays for numeric sequences, as ``rosbags`` expects.
"""

from __future__ import annotations

import os
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.interfaces import Nodetype
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

__all__ = [
    "ACTION_CHUNK",
    "CUSTOM_TYPES",
    "PREDICTED_FRAMES",
    "MessageError",
    "Messages",
    "find_msg_dir",
    "new_message",
    "numpy_dtype",
    "typestore",
]

PACKAGE = "uwm_ros"
ACTION_CHUNK = f"{PACKAGE}/msg/ActionChunk"
PREDICTED_FRAMES = f"{PACKAGE}/msg/PredictedFrames"
CUSTOM_TYPES = (ACTION_CHUNK, PREDICTED_FRAMES)
# rosbags' numpy dtype names differ from the ROS base names for these two (serde.utils.ndtype)
_DTYPES = {"bool": "bool_", "char": "uint8", "byte": "int8"}


class MessageError(LookupError):
    """Our .msg files cannot be found, or a message type is unknown to the typestore."""


# ----- finding the .msg files -------------------------------------------------------------------
def _msg_dir_candidates() -> list[Path]:
    """Where the .msg files live: source checkout, ROS install (ament index), pip install."""
    candidates = [Path(__file__).resolve().parents[1] / "msg"]  # repo root msg/
    # ament_index_python does the same walk; it is not importable without ROS
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        marker = Path(prefix, "share", "ament_index", "resource_index", "packages", PACKAGE)
        if marker.exists():
            candidates.append(Path(prefix, "share", PACKAGE, "msg"))
    try:  # pip install: setup.py data_files puts them in <prefix>/share/uwm_ros/msg
        files = metadata.distribution("uwm-ros").files or []
    except metadata.PackageNotFoundError:
        files = []
    candidates += [
        Path(str(f.locate())).resolve().parent
        for f in files
        if f.match(f"share/{PACKAGE}/msg/*.msg")
    ]
    return candidates


def find_msg_dir() -> Path:
    """The first directory holding every one of our .msg files; raises ``MessageError``."""
    names = [_file_name(t) for t in CUSTOM_TYPES]
    candidates = _msg_dir_candidates()
    for directory in candidates:
        if all((directory / name).is_file() for name in names):
            return directory
    searched = ", ".join(dict.fromkeys(map(str, candidates)))
    raise MessageError(f"{', '.join(names)} not found; searched {searched}")


def _file_name(msgtype: str) -> str:
    return msgtype.rsplit("/", 1)[1] + ".msg"


@cache
def typestore() -> Typestore:
    """ROS 2 Humble standard types plus ``uwm_ros/msg/*``; built once per process."""
    store = get_typestore(Stores.ROS2_HUMBLE)
    msg_dir = find_msg_dir()
    for msgtype in CUSTOM_TYPES:
        text = (msg_dir / _file_name(msgtype)).read_text()
        store.register(get_types_from_msg(text, msgtype))
    return store


# ----- building messages ------------------------------------------------------------------------
class Messages:
    """A message factory without a transport (``conversions.MessageFactory``), for bag writers."""

    def __init__(self, store: Typestore | None = None) -> None:
        self.store = store or typestore()

    def new(self, msgtype: str, **fields: Any) -> Any:
        return new_message(self.store, msgtype, **fields)


def new_message(store: Typestore, msgtype: str, **fields: Any) -> Any:
    """A ``msgtype`` dataclass: fields not given get their zero value, recursively.

    Numeric sequences given as lists/bytes become numpy arrays of the field's dtype, so the
    message serialises with ``rosbags`` as well as through the DDS transport.
    """
    try:
        cls, (_, fielddefs) = store.types[msgtype], store.fielddefs[msgtype]
    except KeyError:
        raise MessageError(f"unknown message type {msgtype!r}") from None
    unknown = set(fields) - {name for name, _ in fielddefs}
    if unknown:
        raise TypeError(f"{msgtype} has no field(s) {sorted(unknown)}")
    values = {}
    for name, desc in fielddefs:
        if name not in fields:
            values[name] = _zero(store, desc)
        elif (dtype := _numeric_dtype(desc)) is not None:
            values[name] = _as_array(fields[name], dtype)
        else:
            values[name] = fields[name]
    return cls(**values)


def _zero(store: Typestore, desc: Any) -> Any:
    """The value ROS gives a field of descriptor ``desc`` when nobody sets it."""
    kind, rest = desc
    if kind == Nodetype.NAME:
        return new_message(store, rest)
    if kind == Nodetype.BASE:
        return "" if rest[0] == "string" else np.zeros((), numpy_dtype(rest[0])).item()
    sub, length = rest
    count = length if kind == Nodetype.ARRAY else 0
    if (dtype := _numeric_dtype(desc)) is not None:
        return np.zeros(count, dtype=dtype)
    return [_zero(store, sub) for _ in range(count)]


def _numeric_dtype(desc: Any) -> str | None:
    """The numpy dtype of a numeric sequence/array field, None for any other field."""
    kind, rest = desc
    if kind in (Nodetype.SEQUENCE, Nodetype.ARRAY):
        (sub_kind, sub_rest), _ = rest
        if sub_kind == Nodetype.BASE and sub_rest[0] != "string":
            return numpy_dtype(sub_rest[0])
    return None


def numpy_dtype(base: str) -> str:
    """The numpy dtype rosbags uses for arrays of ROS base type ``base``."""
    return _DTYPES.get(base, base)


def _as_array(value: Any, dtype: str) -> np.ndarray:
    if isinstance(value, bytes | bytearray | memoryview):
        return np.frombuffer(value, dtype=dtype)
    return np.asarray(value, dtype=dtype)
