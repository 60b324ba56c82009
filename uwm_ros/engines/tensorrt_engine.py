"""TensorRT backend (10.12+ and 11): strongly typed networks built from the bundle's ONNX.

Precision lives in the ONNX graph (export with ``--precision bf16`` or ``fp16``): TensorRT 11
removed weak typing (and its FP16/BF16 builder flags) and builds every network strongly typed;
10.x does so when asked with ``STRONGLY_TYPED``. We feature-detect, never compare versions.
Plans are cached outside the bundle by ``plan_cache`` (key: ONNX hash, TensorRT version, GPU,
precision) and built on first use; ``warmup`` builds every graph before the node activates.
Device buffers are torch CUDA tensors bound by name; each run is ``execute_async_v3`` on the
engine's own stream, on the device given (``cuda:1`` runs on GPU 1).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import Engine, EngineError
from .plan_cache import PlanCache, PlanKey

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def network_flags(trt: Any) -> int:
    """Network creation flags: STRONGLY_TYPED where the flag exists and weak typing still does
    (10.x); on 11, where every network is strongly typed, the deprecated flag is left unset."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    weak_typing = hasattr(trt.BuilderFlag, "FP16")  # removed with weak typing in 11
    return 1 << int(flag) if flag is not None and weak_typing else 0


class TensorRTEngine(Engine):
    backend = "tensorrt"

    def __init__(
        self,
        bundle: str | Path,
        device: str = "cuda",
        precision: str = "bf16",
        workspace_gb: float = 4.0,
        cache_dir: str | Path | None = None,
    ):
        super().__init__(bundle, device, precision)
        try:
            import tensorrt as trt
            import torch
        except ImportError as e:
            raise EngineError(f"the tensorrt backend needs {e.name}: pip install tensorrt") from e
        if not torch.cuda.is_available():
            raise EngineError("tensorrt needs a CUDA GPU; none is visible to torch")
        cuda = torch.device(device)
        if cuda.type != "cuda":
            raise EngineError(f"tensorrt runs on a CUDA device, not {device!r}")
        self.cuda = torch.device(
            "cuda", torch.cuda.current_device() if cuda.index is None else cuda.index
        )
        self.trt, self.torch = trt, torch
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.workspace = int(workspace_gb * (1 << 30))
        self.cache = PlanCache(cache_dir)
        with torch.cuda.device(self.cuda):  # TensorRT works on the current device
            self.runtime = trt.Runtime(self.logger)
            self.stream = torch.cuda.Stream(self.cuda)
        props = torch.cuda.get_device_properties(self.cuda)
        self.gpu = f"{props.name} sm_{props.major}{props.minor}"
        self._graphs: dict[str, _BoundEngine] = {}

    # ----- plans -----------------------------------------------------------------------------
    def plan_key(self, graph: str) -> PlanKey:
        entry = self.manifest.graph(graph, self.precision)
        onnx_sha256 = self.manifest.files[entry.file].sha256  # verified when the bundle loaded
        return PlanKey(onnx_sha256, self.trt.__version__, self.gpu, self.precision)

    def _plan(self, graph: str) -> bytes:
        key = self.plan_key(graph)
        data = self.cache.load(key)
        if data is None:
            data = self._build(self.root / self.manifest.graph(graph, self.precision).file)
            log.info("cached TensorRT plan %s", self.cache.store(key, data))
        return data

    def _build(self, onnx_path: Path) -> bytes:
        trt = self.trt
        builder = trt.Builder(self.logger)
        network = builder.create_network(network_flags(trt))
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
            plan = self._plan(graph)
            with self.torch.cuda.device(self.cuda):
                engine = self.runtime.deserialize_cuda_engine(plan)
                if engine is None:
                    raise EngineError(f"{self.root}: the plan for {graph} cannot be deserialised")
                self._graphs[graph] = _BoundEngine(self.trt, engine, self.cuda)
        return self._graphs[graph]

    # ----- Engine hooks ----------------------------------------------------------------------
    def run_loop(self, mode: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._bound(f"{mode}_loop").run(inputs, self.stream)

    def decode(self, latents: np.ndarray) -> np.ndarray:
        return self._bound("decoder").run({"latents": latents}, self.stream)["frames"]


class _BoundEngine:
    """An ICudaEngine, kept alive as long as its execution context, with device buffers bound
    by tensor name once."""

    def __init__(self, trt: Any, engine: Any, device: torch.device):
        import torch

        self.engine = engine  # the context must not outlive it
        self.context = engine.create_execution_context()
        self.device = device
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
        import torch

        with torch.cuda.device(self.device), torch.cuda.stream(stream):
            for name in self.inputs:
                self.buffers[name].copy_(torch.from_numpy(inputs[name]), non_blocking=True)
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise EngineError("TensorRT execution failed")
            outputs = {n: b.float().cpu() for n, b in self.buffers.items() if n not in self.inputs}
        stream.synchronize()
        return {n: t.numpy() for n, t in outputs.items()}
