"""TensorRT plan cache: outside the bundle, keyed by what a plan depends on, verified on load.

A plan is GPU code. It is only valid for the ONNX graph, TensorRT version, GPU and precision it
was built for, and deserialising a file someone else put there runs their code on the GPU. So
plans live in the user cache (``$UWM_CACHE_DIR/tensorrt``, or ``cache_dir`` given to the
engine), named by a digest of their key, each with a sidecar this module writes: the key and the
plan's sha256 and size. A plan is returned only when its sidecar matches both; a plan without
one, or whose bytes differ, is refused with an error naming the file. Depends on neither
TensorRT nor torch, so all of it is tested without a GPU.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import NamedTuple

from uwm_ros.bundle.cache import cache_dir, write_atomic

WRITER = "uwm_ros.engines.tensorrt"


class PlanError(RuntimeError):
    """A cached plan that must not be deserialised; the message names the file."""


class PlanKey(NamedTuple):
    """Everything a plan depends on; any change means another plan."""

    onnx_sha256: str
    tensorrt: str  # trt.__version__
    gpu: str  # device name and compute capability
    precision: str

    def digest(self) -> str:
        """A file-name-safe, order-independent digest of the key."""
        text = json.dumps(self._asdict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


class PlanCache:
    """Plans and their sidecars in one directory (created on first store)."""

    def __init__(self, directory: str | Path | None = None):
        self.dir = Path(directory) if directory else cache_dir() / "tensorrt"

    def paths(self, key: PlanKey) -> tuple[Path, Path]:
        """(plan, sidecar) for ``key``; names come from the key only, never from a bundle."""
        stem = self.dir / key.digest()
        return stem.with_suffix(".plan"), stem.with_suffix(".json")

    def load(self, key: PlanKey) -> bytes | None:
        """The verified plan for ``key``, None if there is none; raises ``PlanError`` for a plan
        this cache did not write (no sidecar, another key, other bytes)."""
        plan, sidecar = self.paths(key)
        if not plan.exists():
            return None  # (a sidecar alone is a store interrupted before the plan: rebuild)
        if not sidecar.is_file():
            raise PlanError(
                f"{plan}: no sidecar written by this engine; refusing to deserialise a plan of "
                "unknown origin (delete it to rebuild)"
            )
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError) as e:
            raise PlanError(f"{sidecar}: unreadable sidecar ({e}); delete it and {plan}") from e
        if not isinstance(meta, dict) or meta.get("writer") != WRITER:
            raise PlanError(f"{sidecar}: not a sidecar written by this engine")
        if meta.get("key") != key._asdict():
            raise PlanError(f"{sidecar}: records key {meta.get('key')}, expected {key._asdict()}")
        data = plan.read_bytes()
        if len(data) != meta.get("size") or hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            raise PlanError(
                f"{plan}: size or sha256 differs from its sidecar (modified or planted)"
            )
        return data

    def store(self, key: PlanKey, data: bytes) -> Path:
        """Write the sidecar, then the plan, each atomically: a crash between them leaves a
        sidecar without a plan (rebuilt next time), never a plan without its sidecar."""
        plan, sidecar = self.paths(key)
        digest = hashlib.sha256(data).hexdigest()
        meta = {"writer": WRITER, "key": key._asdict(), "sha256": digest, "size": len(data)}
        write_atomic(sidecar, json.dumps(meta, indent=1).encode())
        write_atomic(plan, data)
        return plan
