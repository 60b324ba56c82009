"""Policy bundle export, its ONNX graphs against PyTorch, and every way `bundle check` fails."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml
from helpers import randomize, tiny_config, tiny_spec

from uwm_ros.bundle.manifest import BundleError, read_manifest, sha256
from uwm_training.export.check import check_bundle
from uwm_training.export.exporter import export_bundle
from uwm_training.model import UnifiedWorldModel, WeightsError, load_model, save_model


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def run_onnx(path: Path, feed: dict[str, torch.Tensor]) -> list[np.ndarray]:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {k: v.numpy() for k, v in feed.items()})


def test_bundle_contents_and_check(tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    bundle, model, spec = tiny_bundle
    manifest = check_bundle(bundle)
    assert manifest.spec == spec and manifest.model == model.cfg
    assert manifest.modes == ["policy", "forward_dynamics", "joint"] and manifest.opset == 18
    names = {g.name for g in manifest.graphs}
    loops = {"policy_loop", "forward_dynamics_loop", "joint_loop"}
    assert names == {"obs_encoder", "denoiser_step", "decoder"} | loops
    assert not [p for p in bundle.parent.iterdir() if p.name.startswith(".")]  # no temp dirs
    loaded = load_model(bundle / "weights.safetensors")
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k


def test_onnx_graphs_match_pytorch(tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    bundle, model, _ = tiny_bundle
    cfg, m = model.cfg, read_manifest(bundle)
    g = torch.Generator().manual_seed(123)  # fresh random inputs, never zeros
    images = torch.rand(1, 2, cfg.n_obs_steps, 3, cfg.image_size, cfg.image_size, generator=g)
    proprio = torch.rand(1, cfg.n_obs_steps, cfg.proprio_dim, generator=g) * 2 - 1
    noise_a = torch.randn(1, cfg.horizon, cfg.action_dim, generator=g)
    noise_o = torch.randn(1, *cfg.latent_shape, generator=g)
    feed = {"images": images, "proprio": proprio, "noise_actions": noise_a, "noise_future": noise_o}
    with torch.no_grad():
        ref = model.sample("policy", images, proprio, noise_actions=noise_a, noise_future=noise_o)
        (got,) = run_onnx(bundle / m.graph("policy_loop").file, feed)
        assert rel_err(got, ref.actions.numpy()) <= 1e-4

        ref_j = model.sample("joint", images, proprio, noise_actions=noise_a, noise_future=noise_o)
        got_a, got_o = run_onnx(bundle / m.graph("joint_loop").file, feed)
        assert rel_err(got_a, ref_j.actions.numpy()) <= 1e-4
        assert rel_err(got_o, ref_j.future_latents.numpy()) <= 1e-4

        obs_cond = model.denoiser.condition(model.obs_encoder(images, proprio))
        (got_cond,) = run_onnx(
            bundle / m.graph("obs_encoder").file, {"images": images, "proprio": proprio}
        )
        assert rel_err(got_cond, obs_cond.numpy()) <= 1e-5

        t_a, t_o = torch.tensor([30]), torch.tensor([99])
        eps = model.denoiser.denoise(
            obs_cond + model.denoiser.timestep_condition(t_a, t_o), noise_a, noise_o
        )
        step_feed = {"obs_cond": obs_cond, "actions": noise_a, "t_action": t_a}
        step_feed |= {"future": noise_o, "t_video": t_o}
        got_eps = run_onnx(bundle / m.graph("denoiser_step").file, step_feed)
        for a, b in zip(got_eps, eps):
            assert rel_err(a, b.numpy()) <= 1e-5

        frames = model.decode_future(ref_j.future_latents)
        (got_frames,) = run_onnx(
            bundle / m.graph("decoder").file, {"latents": ref_j.future_latents}
        )
        assert np.abs(got_frames - frames.numpy()).max() <= 1e-5


def broken_copy(bundle: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "broken"
    shutil.copytree(bundle, dst)
    return dst


def edit_manifest(bundle: Path, fn) -> None:  # type: ignore[no-untyped-def]
    path = bundle / "bundle.yaml"
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_every_broken_bundle_is_named(tiny_bundle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = tiny_bundle[0]
    loop = read_manifest(bundle).graph("policy_loop").file

    b = broken_copy(bundle, tmp_path / "missing")
    (b / loop).unlink()
    with pytest.raises(BundleError, match=f"{loop}: missing"):
        check_bundle(b)

    b = broken_copy(bundle, tmp_path / "hash")
    with (b / "decoder.fp32.b1.onnx").open("r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02")
    with pytest.raises(BundleError, match="decoder.fp32.b1.onnx: sha256 does not match"):
        check_bundle(b)

    b = broken_copy(bundle, tmp_path / "truncated")
    data = (b / loop).read_bytes()
    (b / loop).write_bytes(data[: len(data) // 3])
    record = {"sha256": sha256(b / loop), "size": (b / loop).stat().st_size}
    edit_manifest(b, lambda d: d["files"].__setitem__(loop, record))
    with pytest.raises(BundleError, match=f"{loop}: not a valid ONNX model"):
        check_bundle(b)

    b = broken_copy(bundle, tmp_path / "shapes")
    edit_manifest(b, lambda d: d["graphs"][0]["inputs"]["images"].__setitem__(0, 7))
    with pytest.raises(BundleError, match="obs_encoder.fp32.b1.onnx: manifest I/O"):
        check_bundle(b)

    b = broken_copy(bundle, tmp_path / "opset")
    edit_manifest(b, lambda d: d.__setitem__("opset", 17))
    with pytest.raises(BundleError, match=r"opset 18, manifest says 17 \(minimum 18\)"):
        check_bundle(b)

    b = broken_copy(bundle, tmp_path / "config")
    edit_manifest(b, lambda d: d["model"].__setitem__("horizon", 8))
    with pytest.raises(BundleError, match="weights.safetensors: does not match the model config"):
        check_bundle(b)

    b = broken_copy(bundle, tmp_path / "nomanifest")
    (b / "bundle.yaml").unlink()
    with pytest.raises(BundleError, match="bundle.yaml: not found"):
        check_bundle(b)

    uwm = Path(sys.executable).with_name("uwm")
    run = subprocess.run(
        [str(uwm), "bundle", "check", str(tmp_path / "hash" / "broken")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "decoder.fp32.b1.onnx: sha256" in run.stderr
    assert "Traceback" not in run.stderr


def test_export_refuses_bad_requests(tmp_path: Path) -> None:
    model = UnifiedWorldModel(tiny_config())
    save_model(model, tmp_path / "nospec.safetensors")
    with pytest.raises(BundleError, match="no dataset spec"):
        export_bundle(tmp_path / "nospec.safetensors", tmp_path / "b")
    save_model(model, tmp_path / "ok.safetensors", tiny_spec(model.cfg))
    with pytest.raises(BundleError, match="unknown modes"):
        export_bundle(tmp_path / "ok.safetensors", tmp_path / "b", modes=["dream"])
    with pytest.raises(BundleError, match="opset 17"):
        export_bundle(tmp_path / "ok.safetensors", tmp_path / "b", opset=17)
    with pytest.raises(BundleError, match="must include fp32"):
        export_bundle(tmp_path / "ok.safetensors", tmp_path / "b", precisions=["bf16"])
    dp = randomize(UnifiedWorldModel(tiny_config(future_obs=False)))
    save_model(dp, tmp_path / "dp.safetensors", tiny_spec(dp.cfg))
    with pytest.raises(BundleError, match="policy only"):
        export_bundle(tmp_path / "dp.safetensors", tmp_path / "b", modes=["joint"])
    with pytest.raises(WeightsError, match="checkpoint not found"):
        export_bundle(tmp_path / "nope.safetensors", tmp_path / "b")
    assert not (tmp_path / "b").exists()
