"""`uwm export`: checkpoint -> policy bundle (weights + ONNX graphs + manifest), atomically."""

from __future__ import annotations

import copy
import dataclasses
import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx
import torch
import yaml
from tqdm import tqdm

from uwm_ros.bundle.manifest import (
    DEFAULT_MODES,
    LOOP_MODES,
    MIN_OPSET,
    PRECISIONS,
    VAE_DIR,
    WEIGHTS,
    BundleError,
    GraphEntry,
    Manifest,
    file_record,
    graph_signature,
    sha256,
)
from uwm_training.atomic import replace_dir
from uwm_training.model import UnifiedWorldModel, load_model, read_spec, save_model
from uwm_training.model.weights import weights_path

from .compose import loop_graph
from .graphs import (
    CondDenoiserGraph,
    DecoderGraph,
    DenoiserStepGraph,
    ObsEncoderGraph,
    export_onnx,
)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _graphs(model: UnifiedWorldModel) -> dict[str, torch.nn.Module]:
    """The traced graphs; the loops are composed from obs_encoder and cond_denoiser."""
    graphs: dict[str, torch.nn.Module] = {
        "obs_encoder": ObsEncoderGraph(model),
        "denoiser_step": DenoiserStepGraph(model),
        "cond_denoiser": CondDenoiserGraph(model),
    }
    if model.cfg.future_obs:
        graphs["decoder"] = DecoderGraph(model)
    return graphs


def _carry_autoencoder_config(model: UnifiedWorldModel, bundle: Path) -> None:
    """A pretrained diffusers VAE travels in the bundle: its config.json in ``vae/`` (its
    weights are in the weights file), and the config points there, bundle-relative — never at
    a directory on the training machine."""
    ae = model.cfg.autoencoder
    if not (model.cfg.future_obs and ae.pretrained_path):
        return
    vae: Any = model.autoencoder.vae  # type: ignore[union-attr]  # a diffusers AutoencoderKL
    vae.save_config(str(bundle / VAE_DIR))
    model.cfg = dataclasses.replace(
        model.cfg, autoencoder=dataclasses.replace(ae, pretrained_path=VAE_DIR)
    )


def _files(root: Path) -> list[Path]:
    """Every file under ``root``, sorted (the VAE config lives in a subdirectory)."""
    return sorted(p for p in root.rglob("*") if p.is_file())


def _example(shapes: dict[str, list[int]], g: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Random inputs of the right shapes: timesteps int64, images in [0, 1], the rest N(0, 1)."""
    return tuple(
        torch.randint(0, 100, s, generator=g)
        if name.startswith("t_")
        else torch.rand(s, generator=g)
        if name == "images"
        else torch.randn(s, generator=g)
        for name, s in shapes.items()
    )


def export_bundle(
    checkpoint: str | Path,
    out: str | Path,
    modes: Sequence[str] | None = None,
    opset: int = MIN_OPSET,
    precisions: Sequence[str] = ("fp32",),
    batch_sizes: Sequence[int] = (1,),
) -> Manifest:
    """Write a bundle to ``out`` (replaced atomically if it exists) and return its manifest.

    ``modes`` default: ``DEFAULT_MODES``, or policy alone for a model without future_obs."""
    ckpt, out = weights_path(checkpoint), Path(out)
    model = load_model(ckpt).eval()
    if modes is None:
        modes = DEFAULT_MODES if model.cfg.future_obs else ("policy",)
    spec = read_spec(ckpt)
    if spec is None:
        raise BundleError(f"{ckpt}: no dataset spec (action names, fps, normalization) stored")
    _validate(model, modes, opset, precisions, batch_sizes)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # torchvision-missing chatter

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.pieces.", dir=out.parent))
    try:
        _carry_autoencoder_config(model, tmp)
        save_model(model, tmp / WEIGHTS, spec)
        entries = []
        jobs = [(p, b) for p in precisions for b in batch_sizes]
        total = len(jobs) * (len(_graphs(model)) + len(modes))
        with tqdm(total=total, desc=f"export {out.name}", unit="graph") as bar:
            for precision, batch in jobs:
                cast = model if precision == "fp32" else copy.deepcopy(model).to(DTYPES[precision])
                traced = {}
                for name, module in _graphs(cast).items():
                    inputs, outputs = graph_signature(model.cfg, name, batch)
                    file = f"{name}.{precision}.b{batch}.onnx"
                    path = tmp / file if name != "cond_denoiser" else scratch / file
                    args = _example(inputs, torch.Generator().manual_seed(0))
                    bar.set_postfix_str(file)
                    export_onnx(module, args, path, list(inputs), list(outputs), opset)
                    traced[name] = onnx.load(str(path))
                    if name != "cond_denoiser":
                        entries.append(GraphEntry(name, file, precision, batch, inputs, outputs))
                    bar.update()
                for mode in modes:
                    name, file = f"{mode}_loop", f"{mode}_loop.{precision}.b{batch}.onnx"
                    loop = loop_graph(traced["obs_encoder"], traced["cond_denoiser"], cast, mode,
                                      batch)  # fmt: skip
                    onnx.save(loop, str(tmp / file))
                    inputs, outputs = graph_signature(model.cfg, name, batch)
                    entries.append(GraphEntry(name, file, precision, batch, inputs, outputs))
                    bar.update()
        files = {p.relative_to(tmp).as_posix(): file_record(p) for p in _files(tmp)}
        manifest = Manifest(
            model=model.cfg,
            spec=spec,
            opset=opset,
            modes=list(modes),
            graphs=entries,
            files=files,
            source={"checkpoint": ckpt.name, "sha256": sha256(ckpt)},
        )
        (tmp / "bundle.yaml").write_text(yaml.safe_dump(manifest.to_dict(), sort_keys=False))
        replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return manifest


def _validate(
    model: UnifiedWorldModel,
    modes: Sequence[str],
    opset: int,
    precisions: Sequence[str],
    batch_sizes: Sequence[int],
) -> None:
    bad_modes = [m for m in modes if m not in LOOP_MODES]
    if bad_modes:
        raise BundleError(f"unknown modes {bad_modes}; choose from {LOOP_MODES}")
    if not model.cfg.future_obs and list(modes) != ["policy"]:
        raise BundleError("the Diffusion Policy baseline (future_obs: false) exports policy only")
    if opset < MIN_OPSET:
        raise BundleError(
            f"opset {opset} < {MIN_OPSET}: the torch.export-based exporter needs >= 18"
        )
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or "fp32" not in precisions:
        raise BundleError(f"precisions must include fp32 (the reference) and be in {PRECISIONS}")
    if any(b < 1 for b in batch_sizes):
        raise BundleError(f"batch sizes must be >= 1, got {list(batch_sizes)}")
