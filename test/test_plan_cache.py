"""TensorRT plan cache, without TensorRT: keys, sidecars, where plans live, and feature
detection of strong typing."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from uwm_ros.engines.plan_cache import PlanCache, PlanError, PlanKey
from uwm_ros.engines.tensorrt_engine import network_flags

KEY = PlanKey(onnx_sha256="ab" * 32, tensorrt="10.13.0", gpu="NVIDIA H200 sm_90", precision="bf16")


def test_key_changes_with_every_component() -> None:
    variants = [
        KEY._replace(onnx_sha256="cd" * 32),
        KEY._replace(tensorrt="11.0.0"),
        KEY._replace(gpu="Orin sm_87"),
        KEY._replace(precision="fp16"),
    ]
    digests = {KEY.digest(), *(k.digest() for k in variants)}
    assert len(digests) == 5
    assert KEY.digest() == PlanKey(*KEY).digest()  # stable: a restart finds its plan
    assert all(c in "0123456789abcdef" for c in KEY.digest())  # safe as a file name


def test_store_then_load_round_trips_with_a_sidecar(tmp_path: Path) -> None:
    cache = PlanCache(tmp_path / "plans")
    assert cache.load(KEY) is None  # nothing yet: build
    plan = cache.store(KEY, b"serialized engine")
    _, sidecar = cache.paths(KEY)
    assert plan.parent == tmp_path / "plans" and plan.name == f"{KEY.digest()}.plan"
    meta = json.loads(sidecar.read_text())
    assert meta["key"] == KEY._asdict() and meta["size"] == len(b"serialized engine")
    assert cache.load(KEY) == b"serialized engine"
    assert cache.load(KEY._replace(precision="fp32")) is None  # another key, another file
    assert not [p for p in plan.parent.iterdir() if p.name.startswith(".")]  # no temp files


def test_default_directory_is_the_user_cache(user_cache: Path) -> None:
    plan, sidecar = PlanCache().paths(KEY)
    assert plan.parent == sidecar.parent == user_cache / "tensorrt"


def test_planted_plan_without_sidecar_is_refused(tmp_path: Path) -> None:
    cache = PlanCache(tmp_path)
    plan, _ = cache.paths(KEY)
    plan.write_bytes(b"someone else's engine")
    with pytest.raises(PlanError, match=f"{plan}: no sidecar written by this engine"):
        cache.load(KEY)


def test_plan_whose_bytes_differ_from_its_sidecar_is_refused(tmp_path: Path) -> None:
    cache = PlanCache(tmp_path)
    plan = cache.store(KEY, b"our engine")
    plan.write_bytes(b"our engine, patched")
    with pytest.raises(PlanError, match=f"{plan}: size or sha256 differs"):
        cache.load(KEY)
    plan.write_bytes(b"our_engine")  # same size, other bytes
    with pytest.raises(PlanError, match="size or sha256 differs"):
        cache.load(KEY)


def test_sidecar_for_another_key_or_writer_is_refused(tmp_path: Path) -> None:
    cache = PlanCache(tmp_path)
    cache.store(KEY, b"engine")
    _, sidecar = cache.paths(KEY)
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "key": KEY._replace(gpu="other")._asdict()}))
    with pytest.raises(PlanError, match="records key"):
        cache.load(KEY)
    sidecar.write_text(json.dumps({**meta, "writer": "someone"}))
    with pytest.raises(PlanError, match="not a sidecar written by this engine"):
        cache.load(KEY)
    sidecar.write_text("{not json")
    with pytest.raises(PlanError, match="unreadable sidecar"):
        cache.load(KEY)


def test_interrupted_store_leaves_no_plan_to_trust(tmp_path: Path) -> None:
    """The sidecar is written first: a crash before the plan means a rebuild, not a refusal."""
    cache = PlanCache(tmp_path)
    cache.store(KEY, b"engine")
    plan, _ = cache.paths(KEY)
    plan.unlink()
    assert cache.load(KEY) is None


def _trt(builder_flags: list[str], network_flags_: dict[str, int]) -> SimpleNamespace:
    """The two enums ``network_flags`` reads, as the tensorrt module of a version has them."""
    return SimpleNamespace(
        BuilderFlag=SimpleNamespace(**{n: i for i, n in enumerate(builder_flags)}),
        NetworkDefinitionCreationFlag=SimpleNamespace(**network_flags_),
    )


def test_strongly_typed_is_set_only_where_weak_typing_exists() -> None:
    # 10.12-10.x: weak typing (FP16 builder flag) and STRONGLY_TYPED exist -> ask for it.
    trt10 = _trt(["FP16", "BF16", "INT8", "REFIT"], {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1})
    assert network_flags(trt10) == 1 << 1
    # 11: the weak-typing flags are gone, every network is strongly typed, the flag is ignored.
    trt11 = _trt(["REFIT"], {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1})
    assert network_flags(trt11) == 0
    # A build without the flag at all (older 10.x): nothing to set.
    assert network_flags(_trt(["FP16"], {"EXPLICIT_BATCH": 0})) == 0
