"""ONNX Runtime backend: the bundle's fp32 loop graphs on CPU, or on CUDA with onnxruntime-gpu."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .base import Engine, EngineError


class OnnxRuntimeEngine(Engine):
    """One InferenceSession per graph, created on first use and kept."""

    backend = "onnxruntime"

    def __init__(self, bundle: str | Path, device: str = "cpu", precision: str = "fp32"):
        super().__init__(bundle, device, precision)
        import onnxruntime as ort

        self._ort = ort
        available = ort.get_available_providers()
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in available:
                raise EngineError(
                    f"onnxruntime has no CUDA provider (has {available}); "
                    "install onnxruntime-gpu or use device cpu"
                )
            self.providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            if precision != "fp32":  # ORT's CPU kernels for bf16/fp16 are sparse (DESIGN §8)
                raise EngineError("onnxruntime on CPU runs the fp32 graphs only")
            self.providers = ["CPUExecutionProvider"]
        self._sessions: dict[str, Any] = {}

    def _session(self, graph: str) -> Any:
        if graph not in self._sessions:
            entry = self.manifest.graph(graph, self.precision)
            opts = self._ort.SessionOptions()
            opts.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.log_severity_level = 3  # warnings about unfoldable Mish nodes are noise
            self._sessions[graph] = self._ort.InferenceSession(
                str(self.root / entry.file), opts, providers=self.providers
            )
        return self._sessions[graph]

    def run_loop(self, mode: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sess = self._session(f"{mode}_loop")
        feed = {i.name: inputs[i.name] for i in sess.get_inputs()}
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, feed)))

    def decode(self, latents: np.ndarray) -> np.ndarray:
        (frames,) = self._session("decoder").run(["frames"], {"latents": latents})
        return frames
