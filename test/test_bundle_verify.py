"""Verified bundles: an engine loads nothing that is not listed, inside, and intact."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import randomize, tiny_config, tiny_spec

from uwm_ros.bundle import verify
from uwm_ros.bundle.config import AutoencoderConfig
from uwm_ros.bundle.manifest import BundleError, read_manifest
from uwm_ros.engines import Observation, load_engine
from uwm_training.export.check import check_bundle
from uwm_training.export.exporter import export_bundle
from uwm_training.model import UnifiedWorldModel, save_model

LOOP = "policy_loop.fp32.b1.onnx"


@pytest.fixture
def bundle(tiny_bundle, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    """A private copy of the session's tiny bundle, free to break."""
    return Path(shutil.copytree(tiny_bundle[0], tmp_path / "bundle"))


def load(bundle: Path) -> None:
    load_engine(bundle, backend="onnxruntime")


def edit_manifest(bundle: Path, edit) -> None:  # type: ignore[no-untyped-def]
    path = bundle / "bundle.yaml"
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_intact_bundle_loads(bundle: Path) -> None:
    load(bundle)


def test_changed_onnx_is_refused(bundle: Path) -> None:
    with (bundle / LOOP).open("r+b") as f:  # same size, other bytes
        f.seek(300)
        byte = f.read(1)
        f.seek(300)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(BundleError, match=f"{LOOP}: sha256 does not match"):
        load(bundle)
    with (bundle / LOOP).open("ab") as f:
        f.write(b"tail")
    with pytest.raises(BundleError, match=rf"{LOOP}: \d+ bytes, the manifest says \d+"):
        load(bundle)


@pytest.mark.parametrize("name", ["../outside.onnx", "/etc/passwd", "a/../../b.onnx", "./x"])
def test_names_that_leave_the_bundle_are_refused(bundle: Path, name: str) -> None:
    def rename(d: dict) -> None:  # type: ignore[type-arg]
        d["files"][name] = d["files"].pop(LOOP)
        d["graphs"] = [{**g, "file": name} if g["file"] == LOOP else g for g in d["graphs"]]

    edit_manifest(bundle, rename)
    with pytest.raises(BundleError, match=f"file name {name!r} must be a relative path inside"):
        load(bundle)


def test_symlink_out_of_the_bundle_is_refused(bundle: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.onnx"
    shutil.copy(bundle / LOOP, outside)  # identical bytes: only the location is wrong
    (bundle / LOOP).unlink()
    (bundle / LOOP).symlink_to(outside)
    with pytest.raises(BundleError, match=f"{LOOP}: resolves to .*outside the bundle"):
        load(bundle)


def test_unlisted_graph_is_refused(bundle: Path) -> None:
    edit_manifest(bundle, lambda d: d["files"].pop(LOOP))
    with pytest.raises(BundleError, match=f"{LOOP}.*not listed in 'files'"):
        load(bundle)


def test_planted_plan_is_refused(bundle: Path) -> None:
    plan = bundle / "trt_cache" / f"{LOOP}.plan"
    plan.parent.mkdir()
    plan.write_bytes(b"not a plan we built")
    with pytest.raises(BundleError, match=f"{plan}: a TensorRT plan inside the bundle"):
        load(bundle)


def test_hashes_are_cached_by_stat(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A restart re-hashes only what changed; an edit hidden behind the old mtime is caught."""
    hashed: list[str] = []

    def counting_sha256(path: Path) -> str:
        hashed.append(path.name)
        return real_sha256(path)

    real_sha256 = verify.sha256
    monkeypatch.setattr(verify, "sha256", counting_sha256)
    manifest = read_manifest(bundle)
    verify.verify_bundle(bundle, manifest)
    assert sorted(hashed) == sorted(manifest.files)
    hashed.clear()
    verify.verify_bundle(bundle, manifest)
    assert hashed == []  # every file's stat matches its record

    st = (bundle / LOOP).stat()
    data = bytearray((bundle / LOOP).read_bytes())
    data[300] ^= 0xFF
    (bundle / LOOP).write_bytes(bytes(data))
    os.utime(bundle / LOOP, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime
    with pytest.raises(BundleError, match=f"{LOOP}: sha256 does not match"):
        verify.verify_bundle(bundle, manifest)
    assert hashed == [LOOP]


def test_records_live_in_the_user_cache(bundle: Path, user_cache: Path) -> None:
    verify.verify_bundle(bundle, read_manifest(bundle))
    assert list((user_cache / "verified").glob("*.json"))
    assert not [p for p in bundle.rglob("*") if p.suffix == ".json"]  # the bundle is untouched


def test_bundle_of_a_diffusers_vae_model_carries_its_decoder(
    tiny_vae_dir: Path, tmp_path: Path
) -> None:
    """Exported with a local VAE, loaded after that directory is gone: nothing points back."""
    vae_dir = Path(shutil.copytree(tiny_vae_dir, tmp_path / "training_machine" / "vae"))
    ae = AutoencoderConfig(pretrained_path=str(vae_dir), downsample=2)
    cfg = tiny_config(cameras=("left",), image_size=16, autoencoder=ae)
    torch.manual_seed(0)
    model = randomize(UnifiedWorldModel(cfg).eval())
    save_model(model, tmp_path / "ckpt.safetensors", tiny_spec(cfg))  # type: ignore[arg-type]
    export_bundle(tmp_path / "ckpt.safetensors", tmp_path / "bundle", modes=["joint"])
    shutil.rmtree(tmp_path / "training_machine")

    bundle = tmp_path / "bundle"
    for path in bundle.rglob("*"):
        if path.is_file():
            assert str(tmp_path).encode() not in path.read_bytes(), path  # no machine path
    assert read_manifest(bundle).model.autoencoder.pretrained_path == "vae"
    check_bundle(bundle)
    rng = np.random.default_rng(0)
    images = {c: rng.integers(0, 256, (cfg.n_obs_steps, 24, 24, 3), np.uint8) for c in cfg.cameras}
    obs = Observation(images, rng.uniform(-1, 0.5, (cfg.n_obs_steps, cfg.proprio_dim)))
    noise = {
        "noise_actions": rng.standard_normal((1, cfg.horizon, cfg.action_dim), dtype=np.float32),
        "noise_future": rng.standard_normal((1, *cfg.latent_shape), dtype=np.float32),
    }
    by_torch = load_engine(bundle, "torch").predict(obs, "joint", noise=noise)
    by_onnx = load_engine(bundle, "onnxruntime").predict(obs, "joint", noise=noise)
    assert by_torch.frames is not None and by_onnx.frames is not None
    diff = by_torch.frames["left"].astype(int) - by_onnx.frames["left"].astype(int)
    assert np.abs(diff).max() <= 1  # the torch engine rebuilt the same decoder
