"""The training loop on CPU: loss goes down, checkpoints, exact resume after a kill, evaluation,
and the errors a user meets (corrupt checkpoint, dataset that does not fit the model)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import make_dataset, one_thread, tiny_config, train_autoencoder

from uwm_training.cli import main as uwm_main
from uwm_training.model import load_model, read_spec
from uwm_training.train import CheckpointError, TrainError, train
from uwm_training.train.cli import main as train_main


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A dataset and a (briefly) trained autoencoder, shared by the tests of this module."""
    tmp = tmp_path_factory.mktemp("train")
    ds = make_dataset(tmp / "ds", episodes=6)
    with one_thread():
        ae = train_autoencoder(tmp / "ae", [ds], steps=2, eval={"every": 2})
        yield {"tmp": tmp, "ds": ds, "ae": ae}


def pretrain_config(run: dict[str, Path], name: str, **fields: object):  # type: ignore[no-untyped-def]
    return tiny_config(run["tmp"] / name, [run["ds"]], autoencoder_from=str(run["ae"]), **fields)


def metrics(out: Path, split: str) -> list[dict[str, float]]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == split]


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_autoencoder_stage_measures_the_latent_scale(run: dict[str, Path]) -> None:
    ae = load_model(run["ae"] / "ema.safetensors").cfg.autoencoder
    assert (ae.shift, ae.scale) != (0.0, 3.0)  # measured, not the defaults
    model = load_model(run["ae"] / "ema.safetensors")
    from uwm_training.data.dataset import UWMDataset

    item = UWMDataset(run["ds"], horizon=4)[0]
    z = model.encode_future(item["future_images"][None])
    assert 0.2 < float(z.std()) < 5  # ~unit variance, not the raw scale
    (row,) = metrics(run["tmp"] / "ae", "eval")
    assert np.isfinite(row["recon_mse"]) and (run["tmp"] / "ae/samples/step-00000002.gif").exists()


def test_autoencoder_stage_learns_from_one_frame_of_each_window(run: dict[str, Path]) -> None:
    from uwm_training.train.data import build_data, dataset_spec, open_sources
    from uwm_training.train.loop import Objective
    from uwm_training.train.models import new_model

    cfg = tiny_config(run["tmp"] / "one-frame", [run["ds"]], stage="autoencoder")
    sources = open_sources(cfg)
    model = new_model(cfg, sources)
    data = build_data(sources, model.cfg, cfg, dataset_spec(sources, model.cfg, ["joint_pos"]))
    items = [data.train[i] for i in range(3)]
    batch = {k: torch.stack([item[k] for item in items]) for k in items[0]}
    seen: list[torch.Tensor] = []
    ae = model.autoencoder
    assert ae is not None
    ae.encoder.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    Objective(model, "autoencoder")(batch)
    (x,) = seen  # the autoencoder's input, scaled to [-1, 1]
    window = torch.cat([batch["obs_images"], batch["future_images"]], dim=2)[:, 0]
    assert x.shape == (3, *window.shape[2:])  # one image per window (one view), not h_o + h_o'
    for image, frames in zip((x + 1) / 2, window):  # each one of its own window's frames
        assert min(float((image - f).abs().max()) for f in frames) < 1e-6


def test_loss_decreases_on_a_tiny_dataset(run: dict[str, Path]) -> None:
    cfg = pretrain_config(run, "decrease", steps=40, batch_size=4)
    train(cfg)
    loss = [r["loss"] for r in metrics(Path(cfg.out_dir), "train")]
    assert len(loss) == 40
    assert np.mean(loss[-10:]) < 0.85 * np.mean(loss[:10])


def test_time_budget_stops_with_a_checkpoint(run: dict[str, Path]) -> None:
    cfg = pretrain_config(run, "budget", steps=10_000, max_minutes=1e-4, ckpt_every=10_000)
    result = train(cfg)
    assert 1 <= result.step < 10_000  # stopped by the clock, not by steps
    assert result.checkpoint is not None and result.checkpoint.name == f"step-{result.step:08d}"
    with pytest.raises(TrainError, match="max_minutes"):
        pretrain_config(run, "bad", max_minutes=0)


def test_checkpoints_are_complete_pruned_and_exportable(run: dict[str, Path]) -> None:
    cfg = pretrain_config(run, "ckpt", steps=5, ckpt_every=2, keep_last=2)
    result = train(cfg)
    out = Path(cfg.out_dir)
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["step-00000004", "step-00000005"]  # keep_last 2; leftovers none
    last = out / "last"
    assert last.resolve() == (out / "checkpoints" / "step-00000005").resolve()
    assert {p.name for p in last.iterdir()} == {
        "model.safetensors", "ema.safetensors", "state.pt", "train.yaml"}  # fmt: skip
    assert (out / "train.yaml").read_text() == (last / "train.yaml").read_text()
    ema = load_model(last / "ema.safetensors")  # the format `uwm export` reads
    assert result.ema is not None
    assert_same_weights(ema, result.ema)
    spec = read_spec(last / "ema.safetensors")
    assert spec is not None and spec.action_names == ("j0", "j1")
    assert spec.proprio_names == ("j0", "j1") and spec.fps == 10.0
    with pytest.raises(TrainError, match="already has checkpoints: pass --resume"):
        train(cfg)


def test_killed_and_resumed_run_ends_with_the_uninterrupted_weights(
    run: dict[str, Path],
) -> None:
    steps = 16
    reference = train(pretrain_config(run, "whole", steps=steps, ckpt_every=2))
    cfg = pretrain_config(run, "killed", steps=steps, ckpt_every=2)
    config = run["tmp"] / "killed.yaml"
    config.write_text(cfg.to_yaml())
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uwm_training.train", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    first = Path(cfg.out_dir) / "checkpoints" / "step-00000002"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed mid-run, not finished
    resumed = train(cfg, resume=True)
    assert resumed.step == steps
    assert_same_weights(resumed.model, reference.model)
    assert resumed.ema is not None and reference.ema is not None
    assert_same_weights(resumed.ema, reference.ema)


def test_auto_precision_is_timed_once_and_kept_by_the_resumed_run(
    run: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from uwm_training.train.checkpoint import load_state
    from uwm_training.train.optim import resolve_precision

    candidates = resolve_precision("auto", torch.device("cpu"))
    cfg = pretrain_config(run, "auto", steps=2, ckpt_every=1, precision="auto")
    result = train(cfg)
    header = capsys.readouterr().out
    last = Path(cfg.out_dir) / "last"
    state = torch.load(last / "state.pt", weights_only=True)
    assert state["precision"] in candidates
    assert ("the faster here: fp32" in header) == (len(candidates) > 1)  # timed only with a choice
    assert all(p.is_contiguous() for p in result.model.parameters())  # trained channels-last
    # the resumed run trains on in the checkpoint's precision, not in a new timing's choice
    state["precision"] = candidates[-1]
    torch.save(state, last / "state.pt")
    train(pretrain_config(run, "auto", steps=3, ckpt_every=1, precision="auto"), resume=True)
    assert load_state(last.resolve())["precision"] == candidates[-1]
    assert "the faster here" not in capsys.readouterr().out


def test_evaluation_reports_every_mode_and_writes_a_gif(run: dict[str, Path]) -> None:
    cfg = pretrain_config(run, "eval", steps=2, eval={"every": 2}, precision="bf16")
    train(cfg)
    (row,) = metrics(Path(cfg.out_dir), "eval")
    for key in ("policy_mse", "hold_mse", "linear_mse", "inverse_dynamics_action_mse",
                "forward_dynamics_latent_mse", "video_latent_mse", "val_loss"):  # fmt: skip
        assert np.isfinite(row[key]), key
    gif = Path(cfg.out_dir) / "samples" / "step-00000002.gif"
    import av

    with av.open(str(gif)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 2 and frames[0].shape[0] > 2 * 96  # h_o' frames, two windows
    assert all(np.isfinite(r["loss"]) for r in metrics(Path(cfg.out_dir), "train"))  # bf16 ran
    assert any((Path(cfg.out_dir) / "tb").iterdir())


def test_corrupt_and_missing_checkpoints_are_clear_errors(run: dict[str, Path]) -> None:
    cfg = pretrain_config(run, "corrupt", steps=1)
    ckpt = train(cfg).checkpoint
    assert ckpt is not None
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        train(cfg, resume=run["tmp"] / "nowhere")
    weights = ckpt / "ema.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"corrupt or incompatible checkpoint: {weights}"):
        train(cfg, resume=ckpt)
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        train(cfg, resume=True)
    weights.write_bytes(data)
    (ckpt / "state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="state.pt: corrupt training state"):
        train(cfg, resume=True)
    (ckpt / "state.pt").unlink()
    with pytest.raises(CheckpointError, match=r"incomplete checkpoint, missing \['state.pt'\]"):
        train(cfg, resume=True)
    bad_init = tiny_config(run["tmp"] / "ft", [run["ds"]], stage="finetune", init_from=str(ckpt))
    (ckpt / "model.safetensors").write_bytes(b"garbage")
    weights.unlink()
    with pytest.raises(CheckpointError, match="corrupt or incompatible checkpoint"):
        train(bad_init)


def test_dataset_that_does_not_fit_the_model_is_named(run: dict[str, Path]) -> None:
    cfg = pretrain_config(
        run, "mismatch", model={"action_dim": 5, "image_size": 64, "cameras": ["front", "side"]}
    )
    with pytest.raises(TrainError) as e:
        train(cfg)
    text = str(e.value)
    assert "datasets do not match the model config" in text
    assert "image_size 32 != model 64" in text and "no cameras ['side']" in text
    assert "action has 2 dims, model action_dim 5" in text
    no_proprio = pretrain_config(run, "mismatch2", data={"proprio_keys": ["joint_vel"]})
    with pytest.raises(TrainError, match=r"no proprio keys \['joint_vel'\]"):
        train(no_proprio)


def test_cli_trains_and_reports_config_errors(
    run: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = pretrain_config(run, "cli", steps=1)
    config = run["tmp"] / "cli.yaml"
    config.write_text(cfg.to_yaml())
    assert train_main([str(config), "steps=2"]) == 0
    assert "done: step 2" in capsys.readouterr().out
    assert train_main(["--resume", str(config), "steps=3"]) == 0
    assert [r["step"] for r in metrics(Path(cfg.out_dir), "train")] == [1, 2, 3]
    assert train_main([str(config), "optim.lrr=1"]) == 2
    assert "unknown config keys ['optim.lrr']" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        uwm_main(["train", "--help"])
    assert e.value.code == 0 and "torchrun --nproc_per_node" in capsys.readouterr().out


@pytest.mark.slow
def test_uwm_export_takes_the_checkpoint(run: dict[str, Path]) -> None:
    cfg = pretrain_config(run, "export", steps=1)
    train(cfg)
    bundle = run["tmp"] / "bundle"
    assert uwm_main(["export", str(Path(cfg.out_dir) / "last"), "--out", str(bundle)]) == 0
    assert (bundle / "bundle.yaml").is_file()
