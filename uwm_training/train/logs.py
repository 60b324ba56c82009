"""What a run reports (rank 0 only): a tqdm bar, TensorBoard scalars, ``metrics.jsonl`` (one JSON
object per logged step or evaluation, for scripts and tests) and one line per evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm


class RunLog:
    """Rank 0 writes; on other ranks every method is a no-op."""

    def __init__(self, out_dir: Path, enabled: bool, start: int, total: int | None) -> None:
        self.enabled = enabled
        self.writer: Any = None
        self.bar: tqdm[Any] | None = None
        if not enabled:
            return
        # Imported here: tensorboard takes a second to import and only rank 0 needs it.
        from torch.utils.tensorboard import SummaryWriter

        out_dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(out_dir / "tb"), purge_step=start or None)
        self.jsonl = (out_dir / "metrics.jsonl").open("a")
        self.bar = tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True)

    def print(self, line: str) -> None:
        """A line that does not break the progress bar."""
        if self.enabled:
            tqdm.write(line)

    def train(self, step: int, scalars: dict[str, float]) -> None:
        """Scalars of one optimizer step (already averaged over micro-steps)."""
        if not self.enabled:
            return
        assert self.bar is not None
        self.bar.update(step - self.bar.n)
        self.bar.set_postfix(loss=f"{scalars['loss']:.4f}", lr=f"{scalars['lr']:.2e}")
        self._write("train", step, scalars)

    def eval(self, step: int, metrics: dict[str, float], gif: Path | None) -> None:
        """Scalars of one evaluation and its one-line summary."""
        if not self.enabled:
            return
        self._write("eval", step, metrics)
        parts = [f"{k.removesuffix('_mse')} {v:.4f}" for k, v in metrics.items()]
        self.print(f"eval step {step} | " + " | ".join(parts) + (f" | {gif}" if gif else ""))

    def closed_loop(self, step: int, metrics: dict[str, float]) -> None:
        """Closed-loop scalars (e.g. success on the sim) at ``metrics['train_minutes']``."""
        if self.enabled and metrics:
            self._write("closed_loop", step, metrics)
            parts = [f"{k} {v:.3g}" for k, v in metrics.items()]
            self.print(f"closed loop step {step} | " + " | ".join(parts))

    def image(self, tag: str, step: int, rgb: np.ndarray) -> None:
        if self.enabled:
            self.writer.add_image(tag, rgb, step, dataformats="HWC")

    def _write(self, split: str, step: int, scalars: dict[str, float]) -> None:
        for k, v in scalars.items():
            self.writer.add_scalar(f"{split}/{k}", v, step)
        self.jsonl.write(json.dumps({"split": split, "step": step, **scalars}) + "\n")
        self.jsonl.flush()

    def close(self) -> None:
        if self.enabled:
            assert self.bar is not None
            self.bar.close()
            self.writer.close()
            self.jsonl.close()
