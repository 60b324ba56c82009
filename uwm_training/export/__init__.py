"""Policy bundle export: checkpoint -> weights + ONNX graphs + bundle.yaml (DESIGN §8).

The bundle format itself is ``uwm_ros.bundle`` (torch-free, shared with the runtime).
"""

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:
    from .check import check_bundle
    from .exporter import export_bundle

__all__ = ["check_bundle", "export_bundle"]
# torch loads with the exporter, not with this package: `uwm policy` imports ``export.cli``
__getattr__ = lazy_exports(__name__, {"check_bundle": ".check", "export_bundle": ".exporter"})
