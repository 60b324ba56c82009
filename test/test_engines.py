"""Engines: one interface, shared pre/post-processing, backends agree with torch fp32."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from uwm_ros.bundle.contract import ContractError, Normalizer, fit_image, image_array
from uwm_ros.engines import EngineError, Observation, load_engine
from uwm_ros.engines.onnx_engine import OnnxRuntimeEngine
from uwm_ros.engines.torch_engine import TorchEngine


def observation(cfg, seed: int = 0, size: tuple[int, int] = (48, 80)) -> Observation:  # type: ignore[no-untyped-def]
    """Raw camera frames of a different size than the model's, joints in robot units."""
    rng = np.random.default_rng(seed)
    images = {
        c: rng.integers(0, 256, (cfg.n_obs_steps, *size, 3), dtype=np.uint8) for c in cfg.cameras
    }
    joints = rng.uniform(-1.0, 0.5, (cfg.n_obs_steps, cfg.proprio_dim))
    return Observation(images, joints)


def noise(cfg, seed: int = 1) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    return {
        "noise_actions": rng.standard_normal((1, cfg.horizon, cfg.action_dim), dtype=np.float32),
        "noise_future": rng.standard_normal((1, *cfg.latent_shape), dtype=np.float32),
    }


def test_onnxruntime_matches_torch_fp32(tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    bundle, model, spec = tiny_bundle
    ref, ort_engine = TorchEngine(bundle), OnnxRuntimeEngine(bundle)
    obs, z = observation(model.cfg), noise(model.cfg)
    a_ref, a_ort = ref.policy(obs, z), ort_engine.policy(obs, z)
    assert a_ref.shape == (model.cfg.horizon, model.cfg.action_dim)
    assert np.linalg.norm(a_ort - a_ref) / np.linalg.norm(a_ref) <= 1e-4
    j_ref, j_ort = ref.predict(obs, "joint", noise=z), ort_engine.predict(obs, "joint", noise=z)
    assert set(j_ort.frames) == set(model.cfg.cameras)
    for cam in model.cfg.cameras:
        shape = (model.cfg.n_future_steps, model.cfg.image_size, model.cfg.image_size, 3)
        assert j_ort.frames[cam].shape == shape and j_ort.frames[cam].dtype == np.uint8
        diff = np.abs(j_ort.frames[cam].astype(int) - j_ref.frames[cam].astype(int))
        assert diff.max() <= 1
    assert j_ort.inference_ms > 0


def test_engine_output_is_the_unnormalised_model_output(tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    bundle, model, spec = tiny_bundle
    engine = TorchEngine(bundle)
    obs, z = observation(model.cfg), noise(model.cfg)
    inputs = engine.prepare(obs)
    with torch.no_grad():
        raw = model.sample(
            "policy",
            torch.from_numpy(inputs["images"]),
            torch.from_numpy(inputs["proprio"]),
            noise_actions=torch.from_numpy(z["noise_actions"]),
            noise_future=torch.from_numpy(z["noise_future"]),
        ).actions[0]
    expected = Normalizer.from_stats(spec.normalization["actions"]).unnormalize(
        raw.double().numpy()
    )
    np.testing.assert_allclose(engine.policy(obs, z), expected, rtol=1e-5, atol=1e-5)
    # The same observation through the shared contract functions, by hand.
    cam = model.cfg.cameras[0]
    by_hand = image_array(np.stack([fit_image(f, model.cfg.image_size) for f in obs.images[cam]]))
    np.testing.assert_array_equal(inputs["images"][0, 0], by_hand)
    joints = Normalizer.from_stats(spec.normalization["proprio"]).normalize(obs.joint_positions)
    np.testing.assert_allclose(inputs["proprio"][0], joints, rtol=1e-6)


def test_torch_bf16_within_tolerance(tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    bundle, model, spec = tiny_bundle
    obs, z = observation(model.cfg, seed=5), noise(model.cfg, seed=6)
    fp32 = TorchEngine(bundle).policy(obs, z)
    bf16 = TorchEngine(bundle, precision="bf16").policy(obs, z)
    span = np.array(spec.normalization["actions"]["max"]) - spec.normalization["actions"]["min"]
    assert np.abs(bf16 - fp32).max() / span.min() < 0.05  # bf16 keeps ~3 significant digits
    assert np.abs(bf16 - fp32).max() > 0  # and really ran in bf16


def test_bad_observations_and_requests(tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    bundle, model, _ = tiny_bundle
    engine = OnnxRuntimeEngine(bundle)
    obs = observation(model.cfg)
    with pytest.raises(ContractError, match="lacks cameras"):
        engine.policy(Observation({"left": obs.images["left"]}, obs.joint_positions))
    with pytest.raises(ContractError, match="camera 'left'"):
        engine.policy(
            Observation({**obs.images, "left": obs.images["left"][:1]}, obs.joint_positions)
        )
    with pytest.raises(ContractError, match="joint positions"):
        engine.policy(Observation(obs.images, None))
    with pytest.raises(EngineError, match="no 'video' loop"):
        engine.predict(obs, "video")
    with pytest.raises(EngineError, match="noise must have shapes"):
        engine.policy(obs, {"noise_actions": np.zeros((1, 2, 3), np.float32)})
    with pytest.raises(EngineError, match="fp32 graphs only"):
        OnnxRuntimeEngine(bundle, precision="bf16")
    with pytest.raises(EngineError, match="unknown backend"):
        load_engine(bundle, backend="tflite")


def test_auto_backend_choice_is_logged(tiny_bundle, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.INFO, logger="uwm_ros.engines"):
        engine = load_engine(tiny_bundle[0])
    if torch.cuda.is_available():
        assert engine.backend in ("tensorrt", "torch")
    else:
        assert engine.backend == "onnxruntime"
        assert "no CUDA GPU; onnxruntime present" in caplog.text
    engine.warmup(runs=1)


@pytest.mark.tensorrt
def test_tensorrt_matches_torch_and_caches_its_plans(tmp_path: Path, tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("tensorrt")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA GPU")
    from uwm_ros.engines.plan_cache import PlanError
    from uwm_ros.engines.tensorrt_engine import TensorRTEngine

    bundle, model, _ = tiny_bundle
    obs, z = observation(model.cfg), noise(model.cfg)
    device = f"cuda:{torch.cuda.device_count() - 1}"  # the last GPU: the index is honoured
    engine = TensorRTEngine(bundle, device, precision="fp32", cache_dir=tmp_path)
    engine.warmup(runs=1)  # builds every graph the bundle's modes use
    assert set(engine._graphs) == {"policy_loop", "forward_dynamics_loop", "joint_loop", "decoder"}
    assert len(list(tmp_path.glob("*.plan"))) == len(list(tmp_path.glob("*.json"))) == 4
    assert not list(bundle.rglob("*.plan"))  # never inside the bundle
    ref = TorchEngine(bundle).policy(obs, z)
    got = engine.policy(obs, z)
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) <= 1e-3
    again = TensorRTEngine(bundle, device, precision="fp32", cache_dir=tmp_path)
    np.testing.assert_allclose(again.policy(obs, z), got, rtol=1e-5, atol=1e-6)  # from cache
    plan, _ = again.cache.paths(again.plan_key("policy_loop"))
    data = bytearray(plan.read_bytes())
    data[-1] ^= 0xFF
    plan.write_bytes(bytes(data))
    with pytest.raises(PlanError, match="size or sha256 differs"):
        TensorRTEngine(bundle, device, precision="fp32", cache_dir=tmp_path).policy(obs, z)


def test_warmup_loads_every_graph_the_modes_use(tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    engine = OnnxRuntimeEngine(tiny_bundle[0])
    engine.warmup(runs=1)
    loops = {"policy_loop", "forward_dynamics_loop", "joint_loop"}
    assert set(engine._sessions) == loops | {"decoder"}


def test_engine_preprocessing_is_the_dataset_pipeline(tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    """A camera message through the converter + reader equals it through the engine, bitwise."""
    from uwm_ros.conversions import image_rgb
    from uwm_ros.msgs import new_message, typestore
    from uwm_training.data.messages import IMAGE, camera_frame

    bundle, model, _ = tiny_bundle
    S = model.cfg.image_size
    bgr = np.random.default_rng(3).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    msg = new_message(
        typestore(), IMAGE, height=48, width=80, encoding="bgr8", step=240, data=bgr.reshape(-1)
    )
    stored, _ = camera_frame(msg, IMAGE, S, None)  # what `uwm convert` writes to the store
    reader_side = image_array(stored)  # what UWMDataset feeds the model
    frames = np.stack([image_rgb(msg)] * model.cfg.n_obs_steps)
    obs = Observation({c: frames for c in model.cfg.cameras}, np.zeros((2, 2)))
    engine_side = TorchEngine(bundle).prepare(obs)["images"][0, 0, -1]
    np.testing.assert_array_equal(engine_side, reader_side)


def test_compile_loop_freezes_weights_without_touching_global_config() -> None:
    """Weight freezing is an option of one compilation, not a process-wide side effect."""
    import torch._inductor.config as inductor

    from uwm_ros.engines.torch_engine import compile_loop

    before = inductor.freezing
    linear = torch.nn.Linear(4, 3).eval()
    compiled = compile_loop(linear, "cpu")
    x = torch.randn(2, 4)
    with torch.inference_mode():
        torch.testing.assert_close(compiled(x), linear(x))
    assert inductor.freezing == before
