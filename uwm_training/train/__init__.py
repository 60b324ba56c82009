"""Training: config, the loop (single process or DDP), checkpoints, evaluation."""

from .checkpoint import CheckpointError
from .config import TrainConfig, TrainError, load_config
from .loop import TrainResult, train

__all__ = ["CheckpointError", "TrainConfig", "TrainError", "TrainResult", "load_config", "train"]
