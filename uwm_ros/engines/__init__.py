"""Inference engines behind one interface: torch, onnxruntime, tensorrt (see ``base.Engine``).

Importing this package costs no torch: only the torch and tensorrt backends import it, when they
are loaded, so a deploy install without the training stack runs the onnxruntime backend.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from .base import Engine, EngineError, Observation, Prediction

__all__ = ["BACKENDS", "Engine", "EngineError", "Observation", "Prediction", "load_engine"]

BACKENDS = ("auto", "tensorrt", "torch", "onnxruntime")
log = logging.getLogger(__name__)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # an import hook that hides the module says so by raising
        return False


def choose_backend() -> tuple[str, str, str]:
    """(backend, device, why): tensorrt -> torch-cuda -> onnxruntime -> torch-cpu."""
    torch_present = _installed("torch")
    if torch_present:
        import torch  # only to ask for a GPU: the backends below that use it import it anyway

        if torch.cuda.is_available():
            if _installed("tensorrt"):
                return "tensorrt", "cuda", "CUDA GPU and tensorrt present"
            return "torch", "cuda", "CUDA GPU present, tensorrt not installed"
    if _installed("onnxruntime"):
        why = "no CUDA GPU" if torch_present else "torch not installed (deploy install)"
        return "onnxruntime", "cpu", f"{why}; onnxruntime present"
    if torch_present:
        return "torch", "cpu", "no CUDA GPU and no onnxruntime"
    raise EngineError("no inference backend installed: pip install 'uwm-ros[deploy]'")


def load_engine(
    bundle: str | Path,
    backend: str = "auto",
    device: str | None = None,
    precision: str = "fp32",
    **options: object,
) -> Engine:
    """Load ``bundle`` with the named backend (or ``auto``) and log what was chosen and why."""
    if backend not in BACKENDS:
        raise EngineError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    why = "requested"
    if backend == "auto":
        backend, auto_device, why = choose_backend()
        device = device or auto_device
    device = device or "cpu"
    log.info("engine: %s on %s at %s (%s)", backend, device, precision, why)
    if backend == "tensorrt":
        from .tensorrt_engine import TensorRTEngine

        return TensorRTEngine(bundle, device, precision, **options)  # type: ignore[arg-type]
    if backend == "onnxruntime":
        from .onnx_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(bundle, device, precision)
    from .torch_engine import TorchEngine

    return TorchEngine(bundle, device, precision, **options)  # type: ignore[arg-type]
