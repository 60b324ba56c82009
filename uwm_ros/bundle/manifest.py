"""The policy bundle: the one contract between training and the runtime (DESIGN §8).

A directory with ``bundle.yaml`` (this module's ``Manifest``), ``weights.safetensors`` and ONNX
graphs, each listed in ``files`` with its size and sha256 (``verify`` checks them on every load).
``graph_signature`` derives every graph's input/output names and shapes from the model config:
the exporter writes them, ``check_bundle`` verifies manifest, files and graphs against it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import yaml

from .config import ConfigError, PolicySpec, UWMConfig

FORMAT = "uwm-bundle/2"  # /2: files carry sizes; names are checked to stay inside
EXPORTER_VERSION = "0.1.0"
MIN_OPSET = 18  # torch.onnx dynamo export needs >= 18
WEIGHTS = "weights.safetensors"
VAE_DIR = "vae"  # a pretrained diffusers VAE's config.json (weights: in WEIGHTS)
LOOP_MODES = ("policy", "video", "forward_dynamics", "inverse_dynamics", "joint")
# What the policy node runs: the policy drives the robot, forward dynamics shows (as predicted
# frames) what the published chunk leads to. A Diffusion Policy baseline exports policy only.
DEFAULT_MODES = ("policy", "forward_dynamics")
PRECISIONS = ("fp32", "bf16", "fp16")

Shapes = dict[str, list[int]]


class BundleError(ValueError):
    """A bundle is missing, inconsistent or corrupt; the message names the file."""


class FileRecord(NamedTuple):
    """What a bundle file must be: its content hash and size in bytes."""

    sha256: str
    size: int


def check_name(name: str, where: str) -> str:
    """``name`` if it is a canonical relative POSIX path that stays inside the bundle."""
    pure = PurePosixPath(name)
    if not name or "\\" in name or pure.is_absolute() or ".." in pure.parts or str(pure) != name:
        raise BundleError(f"{where}: file name {name!r} must be a relative path inside the bundle")
    return name


@dataclass
class GraphEntry:
    """One ONNX file: which graph, at which precision and batch size, with its I/O shapes."""

    name: str  # obs_encoder | denoiser_step | decoder | <mode>_loop
    file: str
    precision: str
    batch: int
    inputs: Shapes
    outputs: Shapes


@dataclass
class Manifest:
    """Contents of bundle.yaml."""

    model: UWMConfig
    spec: PolicySpec
    opset: int
    modes: list[str]
    graphs: list[GraphEntry]
    files: dict[str, FileRecord]  # relative path -> hash and size
    source: dict[str, str] = field(default_factory=dict)  # checkpoint name and sha256
    exporter_version: str = EXPORTER_VERSION

    def graph(self, name: str, precision: str = "fp32", batch: int = 1) -> GraphEntry:
        for g in self.graphs:
            if (g.name, g.precision, g.batch) == (name, precision, batch):
                return g
        have = sorted({(g.name, g.precision, g.batch) for g in self.graphs})
        raise BundleError(f"bundle has no graph {name!r} at {precision} batch {batch}; has {have}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "exporter_version": self.exporter_version,
            "model": self.model.to_dict(),
            "spec": self.spec.to_dict(),
            "cameras": [
                {"name": c, "height": self.model.image_size, "width": self.model.image_size}
                for c in self.model.cameras
            ],
            "n_obs_steps": self.model.n_obs_steps,
            "horizon": self.model.horizon,
            "dt": 1.0 / self.spec.fps,
            "sampler": {
                "num_inference_steps": self.model.num_inference_steps,
                "marginal_t": self.model.marginal_t,
            },
            "opset": self.opset,
            "modes": self.modes,
            "source": self.source,
            "graphs": [vars(g) for g in self.graphs],
            "files": {name: r._asdict() for name, r in self.files.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> Manifest:
        if d.get("format") != FORMAT:
            raise BundleError(f"{where}: format is {d.get('format')!r}, expected {FORMAT!r}")
        try:
            manifest = cls(
                model=UWMConfig.from_dict(d["model"]),
                spec=PolicySpec.from_dict(d["spec"]),
                opset=int(d["opset"]),
                modes=list(d["modes"]),
                graphs=[GraphEntry(**g) for g in d["graphs"]],
                files={
                    check_name(str(n), where): FileRecord(str(r["sha256"]), int(r["size"]))
                    for n, r in d["files"].items()
                },
                source=dict(d.get("source", {})),
                exporter_version=str(d["exporter_version"]),
            )
        except BundleError:
            raise
        except (KeyError, TypeError, ValueError, ConfigError) as e:
            raise BundleError(f"{where}: invalid manifest: {e!r}") from e
        unlisted = [
            n for n in (WEIGHTS, *(g.file for g in manifest.graphs)) if n not in manifest.files
        ]
        if unlisted:  # an unlisted file would be loaded unverified
            raise BundleError(f"{where}: {unlisted} used but not listed in 'files'")
        return manifest


def sha256(path: Path) -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def graph_signature(cfg: UWMConfig, name: str, batch: int) -> tuple[Shapes, Shapes]:
    """Input and output names -> shapes of a graph, derived from the model config alone."""
    B, S, V = batch, cfg.image_size, cfg.num_views
    images = [B, V, cfg.n_obs_steps, 3, S, S]
    proprio = {"proprio": [B, cfg.n_obs_steps, cfg.proprio_dim]} if cfg.proprio_dim else {}
    actions, latents = [B, cfg.horizon, cfg.action_dim], [B, *cfg.latent_shape]
    cond = [B, (6 * cfg.depth + 2) * cfg.embed_dim]  # all blocks' + final layer's modulation
    video = {"noise_future": latents} if cfg.future_obs else {}
    if name == "obs_encoder":
        return {"images": images, **proprio}, {"obs_cond": cond}
    if name == "denoiser_step":
        step_in: Shapes = {"obs_cond": cond, "actions": actions, "t_action": [1]}
        step_out: Shapes = {"eps_actions": actions}
        if cfg.future_obs:
            step_in |= {"future": latents, "t_video": [1]}
            step_out["eps_future"] = latents
        return step_in, step_out
    if name == "cond_denoiser":  # the per-step piece loops are composed from (not in bundles)
        piece_in: Shapes = {
            "cond": cond,
            "actions": actions,
            **({"future": latents} if video else {}),
        }
        return piece_in, {"eps_actions": actions, **({"eps_future": latents} if video else {})}
    if name == "decoder":
        return {"latents": latents}, {"frames": [B, V, cfg.n_future_steps, 3, S, S]}
    mode = name.removesuffix("_loop")
    if mode not in LOOP_MODES or not name.endswith("_loop"):
        raise BundleError(f"unknown graph {name!r}")
    inputs: Shapes = {"images": images, **proprio, "noise_actions": actions, **video}
    if mode == "forward_dynamics":
        inputs["actions"] = actions
    if mode == "inverse_dynamics":
        inputs["future_latents"] = latents
    outputs: Shapes = {}
    if mode in ("policy", "inverse_dynamics", "joint"):
        outputs["actions"] = actions
    if mode in ("video", "forward_dynamics", "joint"):
        outputs["future_latents"] = latents
    return inputs, outputs


def file_record(path: Path) -> FileRecord:
    """The record of a file as it is on disk now (the exporter writes these)."""
    return FileRecord(sha256(path), path.stat().st_size)


def read_manifest(bundle: str | Path) -> Manifest:
    """Parse bundle.yaml; file names are checked, contents not (see ``verify``)."""
    path = Path(bundle) / "bundle.yaml"
    if not path.is_file():
        raise BundleError(f"{path}: not found (is {bundle} a policy bundle?)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise BundleError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise BundleError(f"{path}: expected a mapping")
    return Manifest.from_dict(data, str(path))
