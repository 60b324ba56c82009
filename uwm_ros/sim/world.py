"""The simulated task: a planar 3-joint arm pushes a square block into a round goal on a table.

Kinematic and quasi-static, like the Push-T family of benchmarks: joints move toward their
position targets at a bounded speed, and the round fingertip at the end of the last link pushes
the block (translation only) out of its way; the rest of the arm passes above the table. Units
are metres and radians; the arm's base is the origin, the table lies in +y.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

JOINT_NAMES = ("shoulder", "elbow", "wrist")
LINKS = np.array([0.25, 0.22, 0.10])  # link lengths: reach 0.57 m
LOWER = np.array([-1.0, -2.6, -2.6])  # joint limits
UPPER = np.array([np.pi + 1.0, 2.6, 2.6])
HOME = np.array([np.pi / 2, -1.2, -1.0])  # arm folded near the base, clear of the task area
MAX_SPEED = 2.0  # rad/s per joint
DT = 0.1  # control period: joint-position targets at 10 Hz
SUBSTEPS = 10  # contact resolution per control period
TIP_RADIUS = 0.018
BLOCK_HALF = 0.035  # half the block's side
GOAL_RADIUS = 0.06
SUCCESS_DIST = 0.045  # block centre this close to the goal centre: success
TABLE = np.array([[-0.36, -0.04], [0.36, 0.68]])  # [[x_min, y_min], [x_max, y_max]]: the view
MAX_STEPS = 80  # an episode times out after 8 s


def forward_kinematics(q: np.ndarray) -> np.ndarray:
    """Joint angles (3,) -> the base, elbow, wrist and fingertip positions (4, 2)."""
    angles = np.cumsum(q)
    steps = LINKS[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])


def push_out(tip: np.ndarray, block: np.ndarray) -> np.ndarray:
    """The block centre after the fingertip at ``tip`` pushed it out of contact."""
    rel = tip - block
    nearest = np.clip(rel, -BLOCK_HALF, BLOCK_HALF)  # closest point of the square, block frame
    gap = rel - nearest
    dist = float(np.hypot(*gap))
    if dist >= TIP_RADIUS:
        return block
    if dist > 1e-9:  # tip outside the square: push along the contact normal
        return block - gap / dist * (TIP_RADIUS - dist)
    axis = int(np.argmax(np.abs(rel)))  # tip centre inside: leave by the nearest face
    shift = np.zeros(2)
    shift[axis] = np.sign(rel[axis] or 1.0) * (BLOCK_HALF + TIP_RADIUS) - rel[axis]
    return block - shift


@dataclass
class World:
    """One episode's state; ``reset`` draws a new one from the episode's seed."""

    q: np.ndarray = field(default_factory=lambda: HOME.copy())
    block: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.3]))
    goal: np.ndarray = field(default_factory=lambda: np.array([0.1, 0.4]))
    steps: int = 0

    @classmethod
    def reset(cls, seed: int) -> World:
        """Random block and goal in the arm's comfortable reach, 12-25 cm apart."""
        rng = np.random.default_rng(seed)

        def place() -> np.ndarray:
            r, a = rng.uniform(0.28, 0.45), rng.uniform(np.radians(45), np.radians(135))
            return np.array([r * np.cos(a), r * np.sin(a)])

        block = place()
        goal = place()
        while not 0.12 <= np.hypot(*(goal - block)) <= 0.25:
            goal = place()
        q = np.clip(HOME + rng.uniform(-0.15, 0.15, 3), LOWER, UPPER)
        return cls(q=q, block=block, goal=goal)

    @property
    def tip(self) -> np.ndarray:
        return forward_kinematics(self.q)[-1]

    @property
    def success(self) -> bool:
        return bool(np.hypot(*(self.block - self.goal)) < SUCCESS_DIST)

    @property
    def done(self) -> bool:
        return self.success or self.steps >= MAX_STEPS

    def step(self, target: np.ndarray) -> None:
        """Move the joints toward ``target`` (clipped to the limits) for one control period."""
        target = np.clip(np.asarray(target, np.float64), LOWER, UPPER)
        if not np.all(np.isfinite(target)):
            target = self.q  # a broken command holds the arm
        delta = np.clip(target - self.q, -MAX_SPEED * DT, MAX_SPEED * DT)
        start = self.q.copy()
        for i in range(1, SUBSTEPS + 1):
            self.q = start + delta * i / SUBSTEPS
            self.block = push_out(self.tip, self.block)
        self.block = np.clip(self.block, TABLE[0] + BLOCK_HALF, TABLE[1] - BLOCK_HALF)
        self.steps += 1
