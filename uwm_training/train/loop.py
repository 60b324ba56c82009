"""The training loop: one readable function from a config to checkpoints (nanoGPT-style).

Randomness is a pure function of (seed, step, shard): the data order (``MixtureSampler``), the
diffusion noise and timesteps (the global RNG is re-seeded before every micro-step from
``shard_seed``) and the learning rate (``lr_at``). A resumed run therefore only restores the
weights, the EMA, the optimizer and the step, and continues bit for bit. Each shard of
``batch_size`` samples draws its own noise, so runs agree whenever ``batch_size`` and
``grad_accum * world_size`` do: 2 GPUs x 1 micro-step equals 1 GPU x 2 micro-steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, default_collate

from uwm_ros.bundle.contract import Normalizer

from ..model import PolicySpec, UnifiedWorldModel
from ..model.autoencoder import KLAutoencoder
from . import dist
from .augment import random_shift
from .checkpoint import find_checkpoint, load_checkpoint, save_checkpoint, step_dirs
from .config import TrainConfig, TrainError
from .data import (
    RunData,
    baseline_metrics,
    build_data,
    cache_latents,
    dataset_spec,
    open_sources,
)
from .evaluate import eval_loader, evaluate, grid_frames, policy_mse, write_gif
from .logs import RunLog
from .models import finetune_model, measure_latent_scale, new_model, set_trainable
from .optim import EMA, autocast, build_optimizer, fastest, lr_at, resolve_precision
from .sampler import MixtureSampler

LATENT_SCALE_WINDOWS = 64  # windows whose frames measure the latent shift/scale (a scalar)


class ClosedLoop(Protocol):
    """Closed-loop success of the EMA weights (e.g. on the simulated robot), measured every
    ``every_minutes`` of training and at the end; returns scalars such as ``success``."""

    every_minutes: float

    def __call__(self, model: UnifiedWorldModel, spec: PolicySpec) -> dict[str, float]: ...


class TrainResult(NamedTuple):
    """The trained weights (``ema`` is None on ranks other than 0) and the last checkpoint."""

    model: UnifiedWorldModel
    ema: UnifiedWorldModel | None
    step: int
    checkpoint: Path | None


class Objective(nn.Module):
    """What DDP wraps: DDP synchronises gradients only through ``forward``."""

    def __init__(self, model: UnifiedWorldModel, stage: str) -> None:
        super().__init__()
        self.model, self.stage = model, stage

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        if self.stage == "autoencoder":
            ae = self.model.autoencoder
            assert isinstance(ae, KLAutoencoder)  # models.new_model refuses any other
            frames = torch.cat([batch["obs_images"], batch["future_images"]], dim=2)
            # A window's frames are near duplicates: one random frame per window gives as many
            # distinct scenes per step at 1/(h_o + h_o') of the cost, and the autoencoder
            # learns by steps, not by near-identical images per step.
            b = frames.shape[0]
            pick = torch.randint(frames.shape[2], (b,), device=frames.device)
            return ae.loss(frames[torch.arange(b, device=frames.device), :, pick].flatten(0, 1))
        return self.model.loss(batch)


def shard_seed(seed: int, step: int, shard: int) -> int:
    """The RNG seed of one shard of one step (independent streams, not seed + k)."""
    return int(np.random.SeedSequence([seed, step, shard]).generate_state(1, np.uint64)[0])


def train(
    cfg: TrainConfig, resume: bool | str | Path = False, closed_loop: ClosedLoop | None = None
) -> TrainResult:
    """Run (or with ``resume`` continue) training; DDP when launched by torchrun.

    ``resume``: True continues from the newest checkpoint in ``cfg.out_dir`` (starting fresh if
    there is none, so a preempted job can always be requeued with it); a path names a checkpoint.
    ``closed_loop``: measured on rank 0 and logged as split ``closed_loop`` with the training
    minutes (its own time not counted), the points of a learning curve.
    """
    env = dist.setup(cfg.device)
    try:
        return _train(cfg, env, resume, closed_loop)
    finally:
        dist.teardown(env)


def _train(
    cfg: TrainConfig, env: dist.Dist, resume: bool | str | Path, closed_loop: ClosedLoop | None
) -> TrainResult:
    out, device = Path(cfg.out_dir), env.device
    if device.type == "cuda":  # TF32 matmuls for whatever still runs in fp32 (as nanoGPT)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    ckpt = _resume_point(out, resume)
    resumed = load_checkpoint(ckpt) if ckpt else None
    state = resumed.state if resumed else None
    if state is not None and state["stage"] != cfg.stage:
        raise TrainError(f"{ckpt}: a {state['stage']} checkpoint; this config is {cfg.stage}")

    # ----- model, data, optimizer ---------------------------------------------------------------
    torch.manual_seed(cfg.seed)  # the same initialisation on every rank
    sources = open_sources(cfg)
    spec: PolicySpec | None = None
    if resumed is not None:
        model, spec = resumed.model, resumed.spec
    elif cfg.stage == "finetune":
        model, spec = finetune_model(cfg, sources, say=print if env.main else lambda _: None)
    else:
        model = new_model(cfg, sources)
    keys = cfg.data.proprio_keys if model.cfg.proprio_dim else []
    spec = spec or dataset_spec(sources, model.cfg, keys, cfg.data.relative_to)
    data = build_data(sources, model.cfg, cfg, spec)
    set_trainable(model, cfg.stage)
    model.to(device)
    if cfg.cache_latents and cfg.stage != "autoencoder" and model.autoencoder is not None:
        cache_latents(model, data, device)
    ema = EMA(model, cfg.ema_decay) if env.main else None
    if ema is not None and resumed is not None:
        ema.model.load_state_dict(resumed.ema.state_dict())
    del resumed  # the checkpoint's copies of the weights
    # The observation encoder's convolutions run faster on channels-last weights (its forward +
    # backward at batch 128: 72 -> 56-61 ms on AVX2); the autoencoder's do not (bf16 on AMX: 78 ->
    # 187 ms a step). The EMA copy, only evaluated, stays as it is.
    _encoder_layout(model, torch.channels_last)
    optimizer = build_optimizer(model, cfg.optim, device)
    step = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
    objective: nn.Module = Objective(model, cfg.stage)
    precision, timed = _precision(cfg, env, state, objective, data, device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    if state is not None:
        scaler.load_state_dict(state["scaler"])
    ddp = None
    if env.ddp:
        ids = [device.index] if device.type == "cuda" else None
        objective = ddp = DistributedDataParallel(objective, device_ids=ids)
    sampler = MixtureSampler(data.sizes, data.weights, cfg.seed, cfg.batch_size, cfg.grad_accum,
                             env.rank, env.world, start_step=step)  # fmt: skip
    loader = DataLoader(
        data.train,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.data.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=cfg.data.num_workers > 0,
    )
    batches = iter(loader)
    params = [p for p in model.parameters() if p.requires_grad]
    joints = [k for k in (cfg.data.relative_to, *cfg.data.proprio_keys) if k]
    baselines = baseline_metrics(data, joints) if env.main and cfg.stage != "autoencoder" else {}

    log = RunLog(out, env.main, step, None if cfg.max_minutes else cfg.steps)  # time-bound: no ETA
    if env.main:
        (out / "train.yaml").write_text(cfg.to_yaml())
        trainable = sum(p.numel() for p in params)
        timed_ms = ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in timed.items())
        log.print(
            f"{cfg.stage} {'resumed at step ' + str(step) if step else 'from scratch'} | "
            f"{trainable / 1e6:.2f} M trainable params | {sum(data.sizes)} train windows from "
            f"{len(data.sizes)} sources | global batch {sampler.global_batch} "
            f"({env.world} ranks) | {precision} on {device}"
            + (f" (the faster here: {timed_ms} a step)" if timed else "")
            + (f" | budget {cfg.max_minutes:g} min" if cfg.max_minutes else "")
        )
        if state is not None and state["global_batch"] != sampler.global_batch:
            log.print("note: the global batch changed since the checkpoint: data order differs")

    # ----- the loop -----------------------------------------------------------------------------
    last_ckpt = ckpt
    clock = time.monotonic if cfg.budget_clock == "wall" else time.process_time
    began, budget_used = clock(), 0.0
    measured = closed_loop is not None and ema is not None and data.spec is not None
    curve = _Curve(clock, closed_loop) if closed_loop is not None and measured else None
    done = step >= cfg.steps
    while not done:
        lr = lr_at(step, cfg.optim, cfg.steps, budget_used)
        for group in optimizer.param_groups:
            group["lr"] = lr
        started, waited, infos = time.perf_counter(), 0.0, []
        for micro in range(cfg.grad_accum):
            t = time.perf_counter()
            batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
            waited += time.perf_counter() - t
            torch.manual_seed(shard_seed(cfg.seed, step, micro * env.world + env.rank))
            if cfg.stage != "autoencoder":
                batch["obs_images"] = random_shift(batch["obs_images"], cfg.shift_augment)
            last = micro == cfg.grad_accum - 1
            with nullcontext() if last or ddp is None else ddp.no_sync():
                with autocast(precision, device):
                    loss, info = objective(batch)
                scaler.scale(loss / cfg.grad_accum).backward()
            infos.append(info)
        scaler.unscale_(optimizer)
        clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update(model, step)
        step += 1
        if cfg.max_minutes:  # the ranks agree on the clock (a collective per step)
            budget_used = env.maximum((clock() - began) / (cfg.max_minutes * 60))
        done = step >= cfg.steps or budget_used >= 1.0

        if step % cfg.log_every == 0 or done:
            elapsed = time.perf_counter() - started
            scalars = {k: float(np.mean([i[k] for i in infos])) for k in infos[0]}
            scalars |= {
                "lr": lr,
                "grad_norm": float(grad_norm),
                "step_s": elapsed,
                "data_s": waited,
                "samples_per_s": sampler.global_batch / elapsed,
            }
            log.train(step, scalars)
        if ema is not None and cfg.eval.every and (step % cfg.eval.every == 0 or done):
            _evaluate(cfg, ema.model, data, device, precision, step, log, baselines)
        if curve is not None and (done or curve.due()):
            assert ema is not None and data.spec is not None
            log.closed_loop(step, curve.measure(ema.model, data.spec))
        if step % cfg.ckpt_every == 0 or done:
            if ema is not None:
                saved = {"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                         "stage": cfg.stage, "seed": cfg.seed, "world": env.world,
                         "precision": precision,
                         "global_batch": sampler.global_batch}  # fmt: skip
                last_ckpt = _checkpoint(cfg, step, model, ema.model, data, saved, device, log)
            env.barrier()
    log.close()
    _encoder_layout(model, torch.contiguous_format)  # the usual layout for whoever saves it
    return TrainResult(model, ema.model if ema else None, step, last_ckpt)


def _encoder_layout(model: UnifiedWorldModel, layout: torch.memory_format) -> None:
    """Put the observation encoder's convolution weights in ``layout``."""
    for conv in (m for m in model.obs_encoder.modules() if isinstance(m, nn.Conv2d)):
        conv.to(memory_format=layout)  # type: ignore[call-overload]


def _precision(
    cfg: TrainConfig,
    env: dist.Dist,
    state: dict[str, Any] | None,
    objective: nn.Module,
    data: RunData,
    device: torch.device,
) -> tuple[str, dict[str, float]]:
    """The run's precision and, when ``auto`` leaves a choice, the seconds one forward and
    backward on the first training windows took in each; a resumed run keeps its own."""
    candidates = resolve_precision(cfg.precision, device)
    if state is not None and state.get("precision") in candidates:
        return state["precision"], {}
    if len(candidates) == 1 or env.ddp:  # nothing to time; ranks timing apart could choose apart
        return candidates[-1], {}
    windows = [data.train[i] for i in range(min(cfg.batch_size, len(data.train)))]
    batch = {k: v.to(device) for k, v in default_collate(windows).items()}

    def step(precision: str) -> None:
        torch.manual_seed(cfg.seed)
        with autocast(precision, device):
            loss, _ = objective(batch)
        loss.backward()
        objective.zero_grad(set_to_none=True)  # timing leaves no gradients behind

    return fastest(candidates, step)


class _Curve:
    """When to measure closed-loop success, and the training minutes it has seen."""

    def __init__(self, clock: Callable[[], float], closed_loop: ClosedLoop) -> None:
        self.clock, self.closed_loop, self.started_at, self.excluded = (
            clock,
            closed_loop,
            clock(),
            0.0,
        )
        self.next = self.started_at + closed_loop.every_minutes * 60

    def due(self) -> bool:
        return self.clock() >= self.next

    def measure(self, model: UnifiedWorldModel, spec: PolicySpec) -> dict[str, float]:
        began = self.clock()
        minutes = (began - self.started_at - self.excluded) / 60
        metrics = self.closed_loop(model, spec)
        self.excluded += self.clock() - began
        self.next = self.clock() + self.closed_loop.every_minutes * 60
        return {"train_minutes": minutes, **metrics}


def _resume_point(out: Path, resume: bool | str | Path) -> Path | None:
    """The checkpoint to continue from; refuses to start over a run that has checkpoints."""
    if resume is True:
        return find_checkpoint(out) if step_dirs(out / "checkpoints") else None
    if resume:
        return find_checkpoint(Path(resume))
    if step_dirs(out / "checkpoints"):
        raise TrainError(
            f"{out} already has checkpoints: pass --resume to continue, or choose another out_dir"
        )
    return None


def _checkpoint(
    cfg: TrainConfig,
    step: int,
    model: UnifiedWorldModel,
    ema: UnifiedWorldModel,
    data: RunData,
    state: dict[str, Any],
    device: torch.device,
    log: RunLog,
) -> Path:
    """Save a checkpoint; the autoencoder stage first measures the latent shift/scale on the
    EMA weights (what the next stage uses) and stores it in both models' configs."""
    if cfg.stage == "autoencoder":
        shift, scale = measure_latent_scale(ema, data.train, LATENT_SCALE_WINDOWS, device)
        model.cfg.autoencoder.shift, model.cfg.autoencoder.scale = shift, scale
        log.print(f"latent shift {shift:.4f} scale {scale:.4f} (stored in the config)")
    return save_checkpoint(Path(cfg.out_dir), step, model, ema, data.spec, state, cfg.to_yaml(),
                           cfg.keep_last)  # fmt: skip


def _evaluate(
    cfg: TrainConfig,
    model: UnifiedWorldModel,
    data: RunData,
    device: torch.device,
    precision: str,
    step: int,
    log: RunLog,
    baselines: dict[str, float],
) -> None:
    """Held-out metrics of the EMA weights, TensorBoard + the summary line + the GIF; the
    policy's error over every held-out window sits next to the baselines'."""
    if data.val is None:
        return
    loader = eval_loader(data.val, cfg.eval.batches, cfg.eval_batch_size, 0)
    metrics, columns = evaluate(model, loader, device, precision, cfg.stage, cfg.seed)
    if data.spec is not None and cfg.stage != "autoencoder":
        actions = Normalizer.from_stats(data.spec.normalization["actions"])
        metrics["policy_mse"] = policy_mse(model, data.val, actions, device, precision,
                                           cfg.eval.policy_samples, cfg.seed,
                                           cfg.eval_batch_size)  # fmt: skip
        metrics |= baselines
    gif = None
    if cfg.eval.gif_samples and columns:
        frames = grid_frames(columns, cfg.eval.gif_samples)
        gif = write_gif(Path(cfg.out_dir) / "samples" / f"step-{step:08d}.gif", frames)
        log.image("eval/futures", step, frames[-1])
    log.eval(step, metrics, gif)
