"""Training config (YAML + dotted overrides, clear errors), the LR schedule and the EMA."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from uwm_training.train.config import OptimConfig, TrainError, load_config
from uwm_training.train.optim import EMA, lr_at

YAML = """\
stage: cotrain
out_dir: runs/x
model: {depth: 4}
data:
  sources:
    - {path: data/robot}
    - {path: data/video, weight: 0.5}
"""


def write(tmp_path: Path, text: str = YAML) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(text)
    return path


def test_yaml_and_dotted_overrides(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path),
        ["optim.lr=3e-4", "data.sources.1.weight=2", "model.autoencoder.base_channels=16",
         "optim.betas=[0.9, 0.95]", "eval.batch_size=null", "steps=10"],
    )  # fmt: skip
    assert cfg.stage == "cotrain" and cfg.optim.lr == 3e-4 and cfg.steps == 10
    assert [s.weight for s in cfg.data.sources] == [1.0, 2.0]
    assert cfg.model == {"depth": 4, "autoencoder": {"base_channels": 16}}
    assert cfg.optim.betas == (0.9, 0.95) and cfg.eval_batch_size == cfg.batch_size
    again = write(tmp_path / "..", cfg.to_yaml())  # what is saved next to checkpoints loads back
    assert load_config(again) == cfg


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", r"unknown config keys \['optim.lrr'\]; valid keys here: \['lr'"),
        ("stepz=1", r"unknown config keys \['stepz'\]"),
        ("steps=ten", r"steps: expected int, got 'ten'"),
        ("ema_decay=true", r"ema_decay: expected float, got True"),
        ("stage=distill", r"stage must be one of"),
        ("data.sources.5.weight=1", r"data.sources.5 is not an index of a 2-list"),
        ("stage.x=1", r"stage is a value, not a section"),
        ("data.sources.0.weight=0", r"weight of data/robot must be > 0"),
        ("optim.betas=[0.9]", r"optim.betas: expected 2 values"),
        ("noequals", r"expected key=value"),
    ],
)
def test_bad_keys_and_values_are_named(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(TrainError, match=message):
        load_config(write(tmp_path), [override])


def test_missing_file_and_finetune_without_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="cannot read training config"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(TrainError, match="finetune needs init_from"):
        load_config(write(tmp_path), ["stage=finetune"])
    with pytest.raises(TrainError, match="give at least one dataset"):
        load_config(write(tmp_path, "stage: pretrain\n"))


def test_warmup_then_cosine() -> None:
    cfg = OptimConfig(lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg, 110) == pytest.approx(1e-4)
    assert lr_at(9, cfg, 110) == pytest.approx(1e-3)
    assert lr_at(60, cfg, 110) == pytest.approx(1e-4 + 0.5 * 9e-4)  # halfway down the cosine
    assert lr_at(110, cfg, 110) == pytest.approx(1e-4)
    lrs = [lr_at(s, cfg, 110) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert math.isclose(lr_at(10, cfg, 110), 1e-3)


def test_ema_update_is_the_decayed_average_of_trainable_weights() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model[1].requires_grad_(False)  # frozen parts are not averaged
    ema = EMA(model, decay=0.9)
    start = {k: v.clone() for k, v in ema.model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert ema.rate(0) == pytest.approx(1 / 10) and ema.rate(1000) == 0.9
    ema.update(model, step=0)
    d = 1 / 10
    for name, p in model.state_dict().items():
        want = d * start[name] + (1 - d) * p if name.startswith("0.") else start[name]
        torch.testing.assert_close(ema.model.state_dict()[name], want)
    ema.update(model, step=1000)  # d = 0.9 now
    w = model.state_dict()["0.weight"]
    prev = d * start["0.weight"] + (1 - d) * w
    torch.testing.assert_close(ema.model.state_dict()["0.weight"], 0.9 * prev + 0.1 * w)
    assert not any(p.requires_grad for p in ema.model.parameters())


@pytest.mark.parametrize("name", ["train_small", "train_paper", "cotrain_small"])
def test_example_configs_load(name: str) -> None:
    path = Path(__file__).parents[1] / "config" / f"{name}.yaml"
    cfg = load_config(path, ["steps=10"])
    assert cfg.steps == 10 and cfg.data.sources
    assert cfg.optim.weight_decay == 1e-6
    assert cfg.optim.lr == (1e-4 if name == "train_paper" else 3e-4)  # the paper's; the study's


def test_precision_choice() -> None:
    from uwm_training.train.optim import cpu_has_native_bf16, resolve_precision

    cpu = torch.device("cpu")
    # with bf16 instructions the loop times both (fp32 was faster for the small preset on AMX)
    both = ("fp32", "bf16") if cpu_has_native_bf16() else ("fp32",)
    assert resolve_precision("auto", cpu) == both
    assert resolve_precision("bf16", cpu) == ("bf16",)
    with pytest.raises(TrainError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16", cpu)


def test_cosine_ends_at_the_time_budget_when_that_comes_first() -> None:
    cfg = OptimConfig(lr=1e-3, warmup_steps=10, min_lr_ratio=0.0)
    assert lr_at(20, cfg, 100_000, budget_used=0.5) == pytest.approx(5e-4)  # half the budget
    assert lr_at(20, cfg, 100_000, budget_used=1.0) == pytest.approx(0.0)
    assert lr_at(100_000, cfg, 100_000, budget_used=0.1) == pytest.approx(0.0)  # steps first
    assert lr_at(5, cfg, 100_000, budget_used=0.9) == pytest.approx(6e-4)  # warmup is by step
    constant = OptimConfig(lr=1e-3, warmup_steps=10, min_lr_ratio=1.0)
    assert lr_at(20, constant, 100_000, budget_used=0.99) == pytest.approx(1e-3)


def test_fastest_precision_is_the_one_that_ran_fastest() -> None:
    import time

    from uwm_training.train.optim import fastest

    calls: list[str] = []

    def step(precision: str) -> None:
        calls.append(precision)
        time.sleep(0.02 if precision == "bf16" else 0.0)

    choice, seconds = fastest(("bf16", "fp32"), step)
    assert choice == "fp32" and seconds["bf16"] > 0.015 > seconds["fp32"]
    assert calls == ["bf16"] * 4 + ["fp32"] * 4  # a warm-up and three timed runs each
    assert fastest(("fp32",), step) == ("fp32", {})  # nothing to choose: not timed
