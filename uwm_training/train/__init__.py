"""Training: config, the loop (single process or DDP), checkpoints, evaluation."""

from typing import TYPE_CHECKING

from ..lazy import lazy_exports
from .config import TrainConfig, TrainError, load_config

if TYPE_CHECKING:
    from .checkpoint import CheckpointError
    from .loop import TrainResult, train

__all__ = ["CheckpointError", "TrainConfig", "TrainError", "TrainResult", "load_config", "train"]
# torch loads with the loop, not with this package: `uwm policy` imports ``train.cli``
__getattr__ = lazy_exports(
    __name__, {"CheckpointError": ".checkpoint", "TrainResult": ".loop", "train": ".loop"}
)
