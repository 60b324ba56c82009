"""The ROS-free policy runtime: input history, chunk scheduling, safety."""

from .history import History, InputCheck
from .runtime import Chunk, PolicyRuntime, RuntimeConfig
from .scheduler import ChunkScheduler

__all__ = ["Chunk", "ChunkScheduler", "History", "InputCheck", "PolicyRuntime", "RuntimeConfig"]
