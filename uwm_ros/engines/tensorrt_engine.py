"""TensorRT backend (10.12+ and 11): strongly typed networks built from the bundle's ONNX.

Precision lives in the ONNX graph (export with ``--precision bf16`` or ``fp16``): TensorRT 11
removed the weak-typing builder flags, and 10.12+ accepts ``STRONGLY_TYPED``, so we never set
FP16/BF16 flags and feature-detect instead of comparing version strings. A plan is built on first
start and cached next to the bundle, keyed by TensorRT version, GPU name and ONNX hash; a plan
whose key differs is stale and is rebuilt (or refused with ``rebuild=False``). Device buffers are
allocated once (torch CUDA tensors) and bound by name; each run is ``execute_async_v3`` on the
engine's own CUDA stream.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uwm_ros.bundle.manifest import sha256

from .base import Engine, EngineError

log = logging.getLogger(__name__)


class TensorRTEngine(Engine):
    backend = "tensorrt"

    def __init__(
        self,
        bundle: str | Path,
        device: str = "cuda",
        precision: str = "bf16",
        workspace_gb: float = 4.0,
        rebuild: bool = True,
    ):
        super().__init__(bundle, device, precision)
        try:
            import tensorrt as trt
        except ImportError as e:
            raise EngineError("tensorrt is not installed (pip install 'uwm-ros[tensorrt]')") from e
        if not torch.cuda.is_available():
            raise EngineError("tensorrt needs a CUDA GPU; none is visible to torch")
        self.trt = trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.workspace = int(workspace_gb * (1 << 30))
        self.rebuild = rebuild
        self.cuda = torch.device(device)
        self.stream = torch.cuda.Stream(self.cuda)
        self.gpu_name = torch.cuda.get_device_name(self.cuda)
        self._graphs: dict[str, _BoundEngine] = {}

    # ----- plan cache ------------------------------------------------------------------------
    def plan_key(self, onnx_path: Path) -> dict[str, str]:
        return {
            "tensorrt": self.trt.__version__,
            "gpu": self.gpu_name,
            "onnx_sha256": sha256(onnx_path),
        }

    def _plan(self, graph: str) -> bytes:
        entry = self.manifest.graph(graph, self.precision)
        onnx_path = self.root / entry.file
        cache = self.root / "trt_cache"
        plan, meta = cache / f"{entry.file}.plan", cache / f"{entry.file}.plan.json"
        key = self.plan_key(onnx_path)
        if plan.is_file() and meta.is_file():
            stored = json.loads(meta.read_text())
            if stored == key:
                return plan.read_bytes()
            message = f"{plan}: stale plan (built for {stored}, now {key})"
            if not self.rebuild:
                raise EngineError(message + "; delete it or allow rebuilding")
            log.warning("%s; rebuilding", message)
        data = self._build(onnx_path)
        cache.mkdir(exist_ok=True)
        _atomic_write(plan, data)
        _atomic_write(meta, json.dumps(key).encode())
        return data

    def _build(self, onnx_path: Path) -> bytes:
        trt = self.trt
        flags = 0
        strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        if strongly_typed is not None:  # 10.x needs it; 11 is always strongly typed
            flags |= 1 << int(strongly_typed)
        builder = trt.Builder(self.logger)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise EngineError(f"{onnx_path}: TensorRT cannot parse it: {errors[:3]}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace)
        log.info("building TensorRT plan for %s (first start; cached afterwards)", onnx_path.name)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise EngineError(f"{onnx_path}: TensorRT failed to build a plan (see its log)")
        return bytes(serialized)

    def _bound(self, graph: str) -> _BoundEngine:
        if graph not in self._graphs:
            engine = self.runtime.deserialize_cuda_engine(self._plan(graph))
            if engine is None:
                raise EngineError(f"{self.root}: cached plan for {graph} cannot be deserialised")
            self._graphs[graph] = _BoundEngine(self.trt, engine, self.cuda)
        return self._graphs[graph]

    # ----- Engine hooks ----------------------------------------------------------------------
    def run_loop(self, mode: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._bound(f"{mode}_loop").run(inputs, self.stream)

    def decode(self, latents: np.ndarray) -> np.ndarray:
        return self._bound("decoder").run({"latents": latents}, self.stream)["frames"]


class _BoundEngine:
    """An ICudaEngine with its context and device buffers, bound by tensor name once."""

    def __init__(self, trt: Any, engine: Any, device: torch.device):
        self.context = engine.create_execution_context()
        self.buffers: dict[str, torch.Tensor] = {}
        self.inputs: list[str] = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(engine.get_tensor_shape(name))
            dtype = torch.from_numpy(np.empty(0, trt.nptype(engine.get_tensor_dtype(name)))).dtype
            self.buffers[name] = torch.empty(shape, dtype=dtype, device=device)
            self.context.set_tensor_address(name, self.buffers[name].data_ptr())
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs.append(name)

    def run(
        self, inputs: dict[str, np.ndarray], stream: torch.cuda.Stream
    ) -> dict[str, np.ndarray]:
        with torch.cuda.stream(stream):
            for name in self.inputs:
                self.buffers[name].copy_(torch.from_numpy(inputs[name]), non_blocking=True)
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise EngineError("TensorRT execution failed")
            outputs = {n: b.float().cpu() for n, b in self.buffers.items() if n not in self.inputs}
        stream.synchronize()
        return {n: t.numpy() for n, t in outputs.items()}


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
