"""The `uwm` console entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from uwm_training.cli import main

UWM = Path(sys.executable).with_name("uwm")


def test_help_lists_subcommands() -> None:
    out = subprocess.run([str(UWM), "--help"], capture_output=True, text=True, check=True).stdout
    assert "model-info" in out


def test_model_info_paper_prints_counts_and_flops(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model-info", "--preset", "paper"]) == 0
    out = capsys.readouterr().out
    assert "denoiser (DiT)" in out and "384.915 M" in out
    assert "policy chunk (obs cached)" in out and "GFLOP" in out


def test_model_info_rejects_unknown_preset(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["model-info", "--preset", "huge"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err
