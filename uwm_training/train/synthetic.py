"""Synthetic datasets for smoke runs, tests and benchmarks, written with the data package's
writer exactly as ``uwm convert`` writes real ones.

Each episode is a smooth random joint trajectory (the action is the next joint position); each
camera shows a square whose position is the first two joints, so the future frames follow from
the actions and every UWM mode has something to learn. ``textured`` adds fixed noise so frames
compress like camera images (for data-loading benchmarks), not like flat colour.

    python -c "from uwm_training.train.synthetic import make_dataset; make_dataset('data/synth')"
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.convert import Job, build_dataset
from ..data.writer import PartWriter


def scene(q: np.ndarray, size: int, camera: int, texture: np.ndarray | None = None) -> np.ndarray:
    """(size, size, 3) uint8: a square at the position of joints 0 and 1 (in [-1, 1])."""
    image = np.full((size, size, 3), 20, np.uint8) if texture is None else texture.copy()
    side = max(2, size // 4)
    x, y = ((np.clip(q[:2], -1, 1) + 1) / 2 * (size - side)).round().astype(int)
    image[y : y + side, x : x + side] = (200, (80 + 70 * camera) % 256, 60)
    return image


def _job(image: np.ndarray) -> Callable[[], np.ndarray]:
    return lambda: image


def _write_source(
    spec: dict[str, Any],
    episodes: int,
    length: int,
    seed: int,
    textured: bool,
    *,
    part: Path,
    converter: dict[str, Any],
    progress: Any = None,
) -> dict[str, Any]:
    """A ``convert.Job`` body (the signature ``build_dataset`` calls)."""
    source = {"path": f"synthetic:{seed}", "kind": "synthetic", "sha256": f"synthetic-{seed}"}
    writer = PartWriter(part, spec, converter)
    rng = np.random.default_rng(seed)
    actions = "action" in spec["lowdim"]
    joints = len(spec["lowdim"].get("joint_pos", ["x", "y"]))
    size = spec["image_size"]
    texture = rng.integers(0, 60, (size, size, 3), dtype=np.uint8) if textured else None
    for _ in range(episodes):
        phase, speed = rng.uniform(0, 2 * np.pi, joints), rng.uniform(0.2, 0.5, joints)
        q = np.sin(phase + speed * np.arange(length + 1)[:, None]).astype(np.float32)
        for t in range(length):
            images = {cam: _job(scene(q[t], size, c, texture))
                      for c, cam in enumerate(spec["cameras"])}  # fmt: skip
            lowdim = {"joint_pos": q[t], "action": q[t + 1]} if actions else {}
            writer.add_frame(images, lowdim)
        writer.end_episode(has_action=actions, has_state=actions)
    report = {"source": source["path"], "frames": writer.n, "episodes": writer.num_episodes}
    writer.close(report, source)
    return report


def make_dataset(
    root: str | Path,
    episodes: int = 4,
    length: int = 16,
    size: int = 32,
    cameras: Sequence[str] = ("front",),
    joints: int = 2,
    actions: bool = True,
    seed: int = 0,
    textured: bool = False,
) -> Path:
    """Write a dataset store of synthetic episodes; ``actions=False`` writes a video-only one
    (cameras only, no low-dim keys), as ``uwm convert-video`` does."""
    names = [f"j{i}" for i in range(joints)]
    lowdim = {"joint_pos": names, "action": names} if actions else {}
    spec = {"fps": 10.0, "image_size": size, "cameras": list(cameras), "lowdim": lowdim,
            "action_source": "command" if actions else "none"}  # fmt: skip
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    build_dataset([Job(str(root), _write_source, (spec, episodes, length, seed, textured))], root,
                  progress=False)  # fmt: skip
    return root
