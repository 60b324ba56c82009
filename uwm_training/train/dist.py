"""Single process or DDP, detected from torchrun's environment variables (as nanoGPT does).

``torchrun --nproc_per_node N`` (and its multi-node flags) sets RANK, LOCAL_RANK and WORLD_SIZE;
without them this is one process. The backend follows the device: nccl on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from .config import TrainError


@dataclass(frozen=True)
class Dist:
    """Where this process stands: its rank among ``world`` processes and its device."""

    rank: int
    local_rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Rank 0 alone logs, evaluates and writes checkpoints."""
        return self.rank == 0

    @property
    def ddp(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.ddp:
            torch_dist.barrier()

    def maximum(self, value: float) -> float:
        """The largest ``value`` of all ranks, on every rank (e.g. the budget used so far)."""
        if not self.ddp:
            return value
        t = torch.tensor([value], device=self.device)
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
        return float(t.item())

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on some rank (e.g. a rank's clock ran out)."""
        return self.maximum(float(flag)) > 0


def setup(device: str) -> Dist:
    """Join the process group when launched by torchrun; pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = _device(device, local_rank)
    if world > 1 and not torch_dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
            torch_dist.init_process_group("nccl", device_id=dev)
        else:
            torch_dist.init_process_group("gloo")
    return Dist(rank, local_rank, world, dev)


def teardown(env: Dist) -> None:
    if env.ddp and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def _device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise TrainError("device cuda requested but torch sees no CUDA GPU")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    raise TrainError(f"device must be auto, cpu or cuda, got {name!r}")
