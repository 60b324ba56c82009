"""The ROS-free policy runtime: input history, chunk scheduling, safety."""

from .health import ERROR, LEVEL_NAMES, OK, STALE, WARN, Health
from .history import History, InputCheck
from .inputs import InputError, JointMerger
from .runtime import SAMPLERS, Chunk, Frames, PolicyRuntime, RuntimeConfig
from .scheduler import ChunkScheduler

__all__ = [
    "ERROR",
    "LEVEL_NAMES",
    "OK",
    "SAMPLERS",
    "STALE",
    "WARN",
    "Chunk",
    "ChunkScheduler",
    "Frames",
    "Health",
    "History",
    "InputCheck",
    "InputError",
    "JointMerger",
    "PolicyRuntime",
    "RuntimeConfig",
]
