"""Inference engines behind one interface: torch, onnxruntime, tensorrt (see ``base.Engine``)."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch

from .base import Engine, EngineError, Observation, Prediction

__all__ = ["BACKENDS", "Engine", "EngineError", "Observation", "Prediction", "load_engine"]

BACKENDS = ("auto", "tensorrt", "torch", "onnxruntime")
log = logging.getLogger(__name__)


def choose_backend() -> tuple[str, str, str]:
    """(backend, device, why): tensorrt -> torch-cuda -> onnxruntime -> torch-cpu."""
    cuda = torch.cuda.is_available()
    if cuda and importlib.util.find_spec("tensorrt") is not None:
        return "tensorrt", "cuda", "CUDA GPU and tensorrt present"
    if cuda:
        return "torch", "cuda", "CUDA GPU present, tensorrt not installed"
    if importlib.util.find_spec("onnxruntime") is not None:
        return "onnxruntime", "cpu", "no CUDA GPU; onnxruntime present"
    return "torch", "cpu", "no CUDA GPU and no onnxruntime"


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
