"""Export time of one DDIM-loop graph: traced whole (the baseline) vs composed from traced pieces.

Both on the same model in the same run, each timed ``--repeat`` times (medians), each checked
against ``UnifiedWorldModel.sample`` with ONNX Runtime. The traced baseline is what the exporter
did before ``uwm_training/export/compose.py``: ``torch.onnx.export`` of a module that runs the
whole ``sample`` loop, which traces, decomposes and optimises every step's transformer again.
The composed row counts everything the exporter adds for a loop: tracing ``cond_denoiser``
(the per-step piece; ``obs_encoder`` is a bundle graph anyway) and the composition itself.

Examples:
    python bench/export_time.py                       # the small preset, policy loop
    python bench/export_time.py --preset paper --repeat 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from uwm_ros.bundle.manifest import graph_signature
from uwm_training.export.compose import loop_graph
from uwm_training.export.exporter import _example
from uwm_training.export.graphs import CondDenoiserGraph, ObsEncoderGraph, export_onnx
from uwm_training.model import UnifiedWorldModel, preset

OPSET = 18


class TracedLoop(torch.nn.Module):
    """The baseline: the whole policy loop as one traced module."""

    def __init__(self, model: UnifiedWorldModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        names = list(graph_signature(self.model.cfg, "policy_loop", 1)[0])[1:]
        kw = dict(zip(names, rest))
        out = self.model.sample("policy", images, kw.get("proprio"),
                                noise_actions=kw["noise_actions"],
                                noise_future=kw.get("noise_future"))  # fmt: skip
        assert out.actions is not None
        return out.actions


def _export(module: torch.nn.Module, name: str, cfg: Any, path: Path) -> onnx.ModelProto:
    inputs, outputs = graph_signature(cfg, name, 1)
    args = _example(inputs, torch.Generator().manual_seed(0))
    export_onnx(module, args, path, list(inputs), list(outputs), OPSET)
    return onnx.load(str(path))


def traced(model: UnifiedWorldModel, tmp: Path) -> Path:
    path = tmp / "traced.onnx"
    _export(TracedLoop(model), "policy_loop", model.cfg, path)
    return path


def composed(model: UnifiedWorldModel, tmp: Path, encoder: onnx.ModelProto) -> Path:
    piece = _export(CondDenoiserGraph(model), "cond_denoiser", model.cfg, tmp / "piece.onnx")
    path = tmp / "composed.onnx"
    onnx.save(loop_graph(encoder, piece, model, "policy", 1), str(path))
    return path


def parity(model: UnifiedWorldModel, path: Path) -> float:
    """Relative error of the graph's actions against ``sample`` on random inputs."""
    cfg = model.cfg
    inputs = _example(graph_signature(cfg, "policy_loop", 1)[0], torch.Generator().manual_seed(1))
    feed = dict(zip(graph_signature(cfg, "policy_loop", 1)[0], inputs))
    with torch.no_grad():
        ref = model.sample("policy", feed["images"], feed.get("proprio"),
                           noise_actions=feed["noise_actions"],
                           noise_future=feed.get("noise_future")).actions  # fmt: skip
    assert ref is not None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {k: v.numpy() for k, v in feed.items()})
    return float(np.linalg.norm(got - ref.numpy()) / np.linalg.norm(ref.numpy()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", choices=("small", "paper"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/export_time.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    model = UnifiedWorldModel(preset(args.preset, action_dim=3, proprio_dim=3)).eval()
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        encoder = _export(ObsEncoderGraph(model), "obs_encoder", model.cfg, tmp / "enc.onnx")
        for name, run in (("traced loop", lambda: traced(model, tmp)),
                          ("composed loop", lambda: composed(model, tmp, encoder))):  # fmt: skip
            seconds = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                path = run()
                seconds.append(time.perf_counter() - started)
            rows[name] = {"seconds": statistics.median(seconds), "rel_err": parity(model, path)}
    base = rows["traced loop"]["seconds"]
    print(f"export of one policy loop, preset {args.preset}, medians of {args.repeat}")
    print(f"{'graph':<16}{'seconds':>10}{'vs traced':>12}{'rel err vs torch':>20}")
    for name, row in rows.items():
        row["ratio"] = row["seconds"] / base
        print(f"{name:<16}{row['seconds']:>10.1f}{row['ratio']:>11.2f}x{row['rel_err']:>20.1e}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"preset": args.preset, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
