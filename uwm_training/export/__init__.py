"""Policy bundle export: checkpoint -> weights + ONNX graphs + bundle.yaml (DESIGN §8)."""

from uwm_ros.bundle.manifest import (
    BundleError,
    GraphEntry,
    Manifest,
    graph_signature,
    read_manifest,
)

from .check import check_bundle
from .exporter import export_bundle

__all__ = [
    "BundleError",
    "GraphEntry",
    "Manifest",
    "check_bundle",
    "export_bundle",
    "graph_signature",
    "read_manifest",
]
