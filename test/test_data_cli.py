"""The data subcommands of ``uwm``: help with examples, outputs, one-line errors with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from data_helpers import convert_config, encode_mp4, frame_image, robot_messages, write_bag

from uwm_training.cli import main

UWM = Path(sys.executable).with_name("uwm")
COMMANDS = [
    ["bag", "info"], ["convert"], ["convert-video"], ["dataset", "info"], ["dataset", "preview"],
    ["dataset", "export-lerobot"],
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_examples(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        main([*command, "--help"])
    assert e.value.code == 0 and "examples:" in capsys.readouterr().out


def test_convert_then_inspect_preview_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bag = write_bag(tmp_path / "bag", robot_messages(seconds=1.5), storage="mcap")
    clip = encode_mp4(tmp_path / "c.mp4", [frame_image(i, 0) for i in range(15)])
    video = [{"front": "c.mp4", "wrist": "c.mp4"}]  # a config video source, relative to it
    cfg, ds = convert_config(tmp_path, video=video), tmp_path / "ds"
    assert main(["bag", "info", str(bag)]) == 0
    assert "/joint_states" in capsys.readouterr().out
    assert main(["convert", "--config", str(cfg), "--out", str(ds), "--quiet", str(bag)]) == 0
    out = capsys.readouterr().out
    assert "max skew ms" in out and f"wrote {ds}" in out
    assert main(["dataset", "info", "--json", str(ds)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["episodes"] == 2 and info["episodes_with_action"] == 1
    assert info["keys"]["front"] == [info["frames"], 32, 32, 3]
    assert main(["dataset", "info", str(ds)]) == 0
    assert "joint_pos" in capsys.readouterr().out
    assert main(["dataset", "preview", str(ds), "--out", str(tmp_path / "p.gif")]) == 0
    assert main(["dataset", "export-lerobot", str(ds), str(tmp_path / "lr")]) == 0
    assert (tmp_path / "lr/meta/info.json").exists()
    other = encode_mp4(tmp_path / "d.mp4", [frame_image(i, 1) for i in range(15)])
    args = ["convert-video", "--out", str(ds), "--append", "--quiet", f"front={clip},wrist={other}"]
    assert main(args) == 0
    assert "wrote" in capsys.readouterr().out


def test_expected_errors_are_one_line_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = convert_config(tmp_path)
    cases = [
        ["bag", "info", str(tmp_path / "nope")],
        ["convert", "--config", str(cfg), "--out", str(tmp_path / "ds"), str(tmp_path / "nope")],
        ["convert", "--config", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "d")],
        ["dataset", "info", str(tmp_path)],
        ["dataset", "preview", str(tmp_path), "--out", str(tmp_path / "x.gif")],
        ["convert-video", "--out", str(tmp_path / "v"), str(tmp_path / "none.mp4")],
    ]
    for args in cases:
        assert main([*args, "--quiet"] if "convert" in args[0] else args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
    # the installed console script: no traceback either
    run = subprocess.run([str(UWM), *cases[0]], capture_output=True, text=True)
    assert (
        run.returncode == 2
        and run.stderr.startswith("error: bag ")
        and "Traceback" not in run.stderr
    )
