"""`uwm bundle check`: every way a bundle can be broken, each reported with its file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import onnx
import torch
from safetensors import SafetensorError, safe_open

from uwm_ros.bundle.manifest import (
    MIN_OPSET,
    WEIGHTS,
    BundleError,
    Manifest,
    graph_signature,
    read_manifest,
)
from uwm_ros.bundle.verify import bundle_file, bundle_problems
from uwm_training.model import UnifiedWorldModel


def check_bundle(bundle: str | Path) -> Manifest:
    """Validate a bundle; raise BundleError listing every problem found, else return it."""
    root = Path(bundle)
    manifest = read_manifest(root)
    problems = bundle_problems(root, manifest, use_cache=False)
    if not problems:  # only inspect contents once every file is present and intact
        problems += _check_weights(root / WEIGHTS, manifest)
        for g in manifest.graphs:
            problems += _check_graph(root / g.file, manifest, g.name, g.batch, g.inputs, g.outputs)
    if problems:
        raise BundleError(f"{root}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return manifest


def _check_weights(path: Path, m: Manifest) -> list[str]:
    cfg, ae = m.model, m.model.autoencoder
    if ae.pretrained_path:  # the bundle's own copy of the VAE config (verified, inside)
        vae_dir = str(bundle_file(path.parent, ae.pretrained_path))
        cfg = dataclasses.replace(cfg, autoencoder=dataclasses.replace(ae, pretrained_path=vae_dir))
    with torch.device("meta"):
        model = UnifiedWorldModel(cfg, pretrained_weights=False)
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    try:
        with safe_open(str(path), framework="pt") as f:
            got = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        return [f"{path.name}: not readable safetensors ({e})"]
    bad = sorted(set(expected) ^ set(got)) + [
        f"{k} {got[k]} != {shape}" for k, shape in expected.items() if k in got and got[k] != shape
    ]
    return [f"{path.name}: does not match the model config: {bad[:5]}"] if bad else []


def _check_graph(
    path: Path,
    m: Manifest,
    name: str,
    batch: int,
    inputs: dict,
    outputs: dict,  # type: ignore[type-arg]
) -> list[str]:
    want_in, want_out = graph_signature(m.model, name, batch)
    if (inputs, outputs) != (want_in, want_out):
        return [
            f"{path.name}: manifest I/O {inputs} -> {outputs} != config's {want_in} -> {want_out}"
        ]
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:  # onnx raises several unrelated types for a corrupt file
        return [f"{path.name}: not a valid ONNX model ({type(e).__name__}: {str(e)[:200]})"]
    problems = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset != m.opset or opset < MIN_OPSET:
        problems.append(
            f"{path.name}: opset {opset}, manifest says {m.opset} (minimum {MIN_OPSET})"
        )
    got_in, got_out = _io(model.graph.input), _io(model.graph.output)
    if got_in != want_in:
        problems.append(f"{path.name}: inputs {got_in} != expected {want_in}")
    if got_out != want_out:
        problems.append(f"{path.name}: outputs {got_out} != expected {want_out}")
    return problems


def _io(values) -> dict[str, list[int]]:  # type: ignore[no-untyped-def]
    return {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}
