"""One engine interface for every backend; pre/post-processing is shared code, not per backend.

An engine takes raw observations (uint8 camera frames of any size, joint positions in robot
units) and returns unnormalised actions and uint8 predicted frames. Everything between — the
model's input contract (``uwm_ros.bundle.contract``) and the start noise — lives here, so
backends differ only in how they run a sampling loop and the latent decoder.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from uwm_ros.bundle.contract import ContractError, fit_image, image_array, normalizers
from uwm_ros.bundle.manifest import Manifest, read_manifest
from uwm_ros.bundle.verify import verify_bundle

LOOP_OUTPUTS = {
    "policy": ("actions",),
    "inverse_dynamics": ("actions",),
    "video": ("future_latents",),
    "forward_dynamics": ("future_latents",),
    "joint": ("actions", "future_latents"),
}


class EngineError(RuntimeError):
    """An engine cannot be loaded or cannot run the request."""


class Observation(NamedTuple):
    """Raw inputs: per camera the last h_o frames (h_o, H, W, 3) uint8 RGB, oldest first, and
    joint positions (h_o, P) in robot units (None for a model without proprio)."""

    images: Mapping[str, np.ndarray]
    joint_positions: np.ndarray | None = None


class Prediction(NamedTuple):
    """Unnormalised actions (h_a, d_a) and/or predicted frames per camera (h_o', S, S, 3) uint8."""

    actions: np.ndarray | None
    frames: dict[str, np.ndarray] | None
    inference_ms: float


class Engine(ABC):
    """Load a bundle once, then ``policy``/``predict`` per control cycle."""

    backend = "abstract"

    batched = False  # True: run_loop takes any batch size (else predict_batch loops)

    def __init__(
        self,
        bundle: str | Path,
        device: str = "cpu",
        precision: str = "fp32",
        manifest: Manifest | None = None,
    ):
        """``manifest`` replaces ``bundle/bundle.yaml`` (a checkpoint evaluated without export)."""
        self.root = Path(bundle)
        if manifest is None:
            manifest = read_manifest(self.root)
            verify_bundle(self.root, manifest)  # nothing unverified is ever loaded
        self.manifest: Manifest = manifest
        self.cfg = self.manifest.model
        self.device, self.precision = device, precision
        keys = ["actions"] + (["proprio"] if self.cfg.proprio_dim else [])
        self.normalizers = normalizers(self.manifest.spec.normalization, keys)
        self.rng = np.random.default_rng(0)

    # ----- backend hooks ---------------------------------------------------------------------
    @abstractmethod
    def run_loop(self, mode: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one mode's full DDIM loop on normalised float32 inputs (graph input names)."""

    @abstractmethod
    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Normalised latents (1, V, C, T', h, w) -> frames (1, V, T', 3, S, S) in [0, 1]."""

    # ----- shared API ------------------------------------------------------------------------
    def warmup(self, runs: int = 2) -> None:
        """Load (or build: a TensorRT plan takes minutes) every graph the bundle's modes use —
        each loop, and the decoder behind the frame-producing ones — and run each ``runs``
        times, so no first-call cost lands on the control thread once the node is active."""
        cfg = self.cfg
        S, h_o = cfg.image_size, cfg.n_obs_steps
        frames = {c: np.zeros((h_o, S, S, 3), np.uint8) for c in cfg.cameras}
        joints = np.zeros((h_o, cfg.proprio_dim), np.float32) if cfg.proprio_dim else None
        obs = Observation(frames, joints)
        for mode in self.manifest.modes:
            actions = np.zeros((cfg.horizon, cfg.action_dim), np.float32)
            latents = np.zeros((1, *cfg.latent_shape), np.float32)
            for _ in range(runs):  # (each mode takes only the given inputs it needs)
                self.predict(obs, mode, actions, latents)

    def policy(self, obs: Observation, noise: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """One action chunk (h_a, d_a) in robot units."""
        actions = self.predict(obs, "policy", noise=noise).actions
        assert actions is not None
        return actions

    def predict(
        self,
        obs: Observation,
        mode: str,
        actions: np.ndarray | None = None,
        future_latents: np.ndarray | None = None,
        noise: Mapping[str, np.ndarray] | None = None,
        decode: bool = True,
    ) -> Prediction:
        """Sample in ``mode``: forward_dynamics takes ``actions`` (h_a, d_a) in robot units,
        inverse_dynamics takes normalised ``future_latents``; ``noise`` overrides the start
        noise (keys noise_actions / noise_future, shapes as the loop graph's inputs)."""
        given: dict[str, np.ndarray] = {}
        if mode == "forward_dynamics":
            if actions is None:
                raise EngineError("forward_dynamics needs actions")
            given["actions"] = self._normalized("actions", actions - self.reference(obs))[None]
        if mode == "inverse_dynamics":
            if future_latents is None:
                raise EngineError("inverse_dynamics needs future_latents")
            given["future_latents"] = np.asarray(future_latents, np.float32)
        return self._predict([obs], mode, given, noise, decode)[0]

    def predict_batch(
        self, observations: Sequence[Observation], mode: str = "policy", decode: bool = False
    ) -> list[Prediction]:
        """One prediction per observation (modes that need only observations): a single loop
        call for the whole batch on backends that take any batch size, else one by one."""
        if not self.batched:
            return [self.predict(o, mode, decode=decode) for o in observations]
        return self._predict(list(observations), mode, {}, None, decode)

    def _predict(
        self,
        observations: list[Observation],
        mode: str,
        given: dict[str, np.ndarray],
        noise: Mapping[str, np.ndarray] | None,
        decode: bool,
    ) -> list[Prediction]:
        if mode not in self.manifest.modes:
            raise EngineError(
                f"{self.root}: bundle has no {mode!r} loop (has {self.manifest.modes})"
            )
        prepared = [self.prepare(o) for o in observations]
        inputs = {k: np.concatenate([p[k] for p in prepared]) for k in prepared[0]}
        inputs |= self._noise(noise, len(observations)) | given
        t0 = time.perf_counter()
        out = self.run_loop(mode, inputs)
        frames: list[dict[str, np.ndarray] | None] = [None] * len(observations)
        if "future_latents" in out and decode:
            decoded = self.decode(out["future_latents"])  # (B, V, T', 3, S, S)
            u8 = (decoded.transpose(0, 1, 2, 4, 5, 3) * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
            frames = [{cam: views[v] for v, cam in enumerate(self.cfg.cameras)} for views in u8]
        ms = (time.perf_counter() - t0) * 1e3
        acts: list[np.ndarray | None] = [None] * len(observations)
        if "actions" in out:
            raw = self.normalizers["actions"].unnormalize(out["actions"].astype(np.float64))
            acts = [(a + self.reference(o)).astype(np.float32) for a, o in zip(raw, observations)]
        return [Prediction(a, f, ms) for a, f in zip(acts, frames)]

    def reference(self, obs: Observation) -> np.ndarray | float:
        """What the model's actions are relative to: the current joints of the action names
        (relative actions), else 0."""
        spec = self.manifest.spec
        if not spec.relative_actions:
            return 0.0
        current = self._joints(obs)[-1]
        return current[[spec.proprio_names.index(n) for n in spec.action_names]]

    def _joints(self, obs: Observation) -> np.ndarray:
        """The observation's joint positions (h_o, P), checked against the spec's names."""
        names = self.manifest.spec.proprio_names
        if obs.joint_positions is None:
            raise ContractError(f"model needs joint positions for {list(names)}")
        joints = np.asarray(obs.joint_positions, np.float64)
        want_shape = (self.cfg.n_obs_steps, len(names))
        if joints.shape != want_shape:
            raise ContractError(f"joint_positions: expected {want_shape}, got {joints.shape}")
        return joints

    def prepare(self, obs: Observation) -> dict[str, np.ndarray]:
        """Raw observation -> normalised float32 graph inputs (batch 1): the shared contract."""
        cfg = self.cfg
        missing = [c for c in cfg.cameras if c not in obs.images]
        if missing:
            raise ContractError(f"observation lacks cameras {missing} (has {sorted(obs.images)})")
        views = []
        for cam in cfg.cameras:
            frames = np.asarray(obs.images[cam])
            if frames.ndim != 4 or frames.shape[0] != cfg.n_obs_steps:
                want = f"({cfg.n_obs_steps}, H, W, 3)"
                raise ContractError(f"camera {cam!r}: expected {want} frames, got {frames.shape}")
            views.append(np.stack([fit_image(f, cfg.image_size) for f in frames]))
        images = image_array(np.stack(views)[None])  # (1, V, h_o, 3, S, S)
        inputs = {"images": images}
        if cfg.proprio_dim:
            inputs["proprio"] = self._normalized("proprio", self._joints(obs))[None]
        return inputs

    def _normalized(self, key: str, x: np.ndarray) -> np.ndarray:
        return self.normalizers[key].normalize(np.asarray(x, np.float64)).astype(np.float32)

    def _noise(
        self, given: Mapping[str, np.ndarray] | None, batch: int = 1
    ) -> dict[str, np.ndarray]:
        cfg = self.cfg
        shapes: dict[str, tuple[int, ...]] = {"noise_actions": (batch, cfg.horizon, cfg.action_dim)}
        if cfg.future_obs:
            shapes["noise_future"] = (batch, *cfg.latent_shape)
        if given is not None:
            got = {k: np.shape(given[k]) if k in given else None for k in shapes}
            bad = {k: g for k, g in got.items() if g != shapes[k]}
            if bad:
                raise EngineError(f"noise must have shapes {shapes}, got {bad}")
            return {k: np.asarray(given[k], np.float32) for k in shapes}
        return {k: self.rng.standard_normal(s, dtype=np.float32) for k, s in shapes.items()}
