"""rosbag2 -> dataset conversion, the dataset store and its torch reader (DESIGN §5, §6).

One module per job: ``bags`` (open and inspect any rosbag2 input; ``splits``: split bags with
files missing), ``messages``, ``cdr`` and ``joints`` (decode), ``resample`` (the frame grid),
``episodes`` (ticks -> frames -> episodes), ``extract`` (one bag -> one part), ``losses`` (a
conversion that lost too much fails), ``writer``, ``shards``, ``framesink`` and ``store`` (the
Zarr store; frames compressed in a second process), ``convert`` (parallel, atomic
orchestration), ``video`` (mp4 in/out), ``dataset`` (torch reader), ``baginfo`` and ``starter``
(``uwm bag info``, a starting config), ``report``, ``preview``, ``lerobot`` (export) and
``cli``. The package import stays light (no torch, zarr).
"""

from .config import ConvertConfig, load_config
from .errors import BagError, ConfigError, DataError, DatasetError, VideoError

__all__ = [
    "BagError",
    "ConfigError",
    "ConvertConfig",
    "DataError",
    "DatasetError",
    "VideoError",
    "load_config",
]
