"""The Unified World Model network, its diffusion and its input contract."""

from uwm_ros.bundle.config import AutoencoderConfig, ConfigError, PolicySpec, UWMConfig, preset

from .diffusion import DDIMScheduler
from .dit import UWMDenoiser
from .uwm import MODES, Sample, UnifiedWorldModel
from .weights import WeightsError, load_model, read_config, read_spec, save_model

__all__ = [
    "MODES",
    "PolicySpec",
    "AutoencoderConfig",
    "ConfigError",
    "DDIMScheduler",
    "Sample",
    "UWMConfig",
    "UWMDenoiser",
    "UnifiedWorldModel",
    "WeightsError",
    "load_model",
    "preset",
    "read_config",
    "read_spec",
    "save_model",
]
