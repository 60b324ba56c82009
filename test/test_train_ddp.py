"""Two-process DDP on CPU (gloo): ranks stay identical and equal one process with the same
global batch split into micro-steps instead of ranks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from train_helpers import make_dataset, one_thread, tiny_config, train_autoencoder

from uwm_training.model import load_model
from uwm_training.train import train
from uwm_training.train.config import from_dict

WORLD = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank(rank: int, port: int, config: dict[str, Any], out: str) -> None:
    """One DDP rank, as torchrun would start it (its environment variables)."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)
    result = train(from_dict(config))
    save_file(result.model.state_dict(), f"{out}/rank{rank}.safetensors")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    tmp = tmp_path_factory.mktemp("ddp")
    ds = make_dataset(tmp / "ds", episodes=4)
    with one_thread():
        yield {"tmp": tmp, "ds": ds, "ae": train_autoencoder(tmp / "ae", [ds])}


def test_two_gloo_ranks_match_one_process_with_the_same_global_batch(
    setup: dict[str, Path],
) -> None:
    tmp = setup["tmp"]

    def config(name: str, **fields: Any) -> Any:
        return tiny_config(tmp / name, [setup["ds"]], autoencoder_from=str(setup["ae"]),
                           steps=3, **fields)  # fmt: skip

    ddp = config("ddp")
    mp.spawn(_rank, args=(free_port(), ddp.to_dict(), str(tmp)), nprocs=WORLD, join=True)
    ranks = [load_file(str(tmp / f"rank{r}.safetensors")) for r in range(WORLD)]
    for k in ranks[0]:
        assert torch.equal(ranks[0][k], ranks[1][k]), k  # every rank holds the same weights
    single = train(config("single", grad_accum=WORLD)).model.state_dict()
    start = load_model(setup["ae"] / "model.safetensors").state_dict()
    moved = 0
    for k, v in single.items():
        # The same samples and noise per shard: only the order of the float sums differs.
        torch.testing.assert_close(ranks[0][k], v, rtol=1e-4, atol=1e-5)
        moved += int(not k.startswith("autoencoder.") and not torch.equal(v, start.get(k, v)))
    assert moved  # training changed the weights: the comparison is not vacuous
    saved = load_model(Path(ddp.out_dir) / "last" / "ema.safetensors")  # rank 0 checkpointed
    assert not (Path(ddp.out_dir) / "checkpoints" / "step-00000003" / "rank1").exists()
    assert saved.cfg.action_dim == 2


@pytest.mark.slow
def test_torchrun_launches_the_module(setup: dict[str, Path]) -> None:
    cfg = tiny_config(setup["tmp"] / "torchrun", [setup["ds"]],
                      autoencoder_from=str(setup["ae"]), steps=2)  # fmt: skip
    config = setup["tmp"] / "torchrun.yaml"
    config.write_text(cfg.to_yaml())
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD),
           "--master_port", str(free_port()), "-m", "uwm_training.train", str(config)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "global batch 4 (2 ranks)" in proc.stdout + proc.stderr
    assert (Path(cfg.out_dir) / "last" / "ema.safetensors").is_file()
