"""Controllers for the push task: the scripted expert (IK + a push heuristic) and a random one.

A controller maps the world (privileged state: block and goal poses) to joint-position targets
for the next control period, exactly what the policy outputs from camera frames.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .world import BLOCK_HALF, HOME, LINKS, LOWER, TIP_RADIUS, UPPER, World, forward_kinematics

APPROACH_STEP = 0.045  # m of fingertip travel per control period while approaching
PUSH_STEP = 0.03  # ... and while pushing (slower: the block must not slip off the finger)
CLEARANCE = 0.025  # gap kept between fingertip and block while going around it
ALIGNED = 0.4 * BLOCK_HALF  # fingertip this close to the push line counts as aligned
DAMPING = 0.05  # IK damping (m): bounded joint steps near singular poses
REST = np.array([0.0, -1.2, -0.8])  # preferred elbow and wrist bend


class Controller(Protocol):
    def __call__(self, world: World) -> np.ndarray: ...


def jacobian(q: np.ndarray) -> np.ndarray:
    """d(fingertip)/dq, (2, 3)."""
    angles = np.cumsum(q)
    dx = -np.cumsum((LINKS * np.sin(angles))[::-1])[::-1]  # joint i moves links i..2
    dy = np.cumsum((LINKS * np.cos(angles))[::-1])[::-1]
    return np.stack([dx, dy])


def inverse_kinematics(tip: np.ndarray, q_now: np.ndarray, iterations: int = 20) -> np.ndarray:
    """Joint targets near ``q_now`` that put the fingertip at ``tip`` (damped least squares).

    Small fingertip moves give small joint moves, so commands stay smooth; the arm's spare
    degree of freedom drifts toward ``REST`` (elbow and wrist bent), away from the limits.
    """
    q = q_now.astype(np.float64)
    for _ in range(iterations):
        error = tip - forward_kinematics(q)[-1]
        j = jacobian(q)
        j_pinv = j.T @ np.linalg.inv(j @ j.T + DAMPING**2 * np.eye(2))
        rest = REST - q
        rest[0] = 0.0  # the shoulder is not constrained by the posture
        q = np.clip(q + j_pinv @ error + (np.eye(3) - j_pinv @ j) @ rest * 0.1, LOWER, UPPER)
    return q


def _toward(tip: np.ndarray, target: np.ndarray, step: float) -> np.ndarray:
    d = target - tip
    n = float(np.hypot(*d))
    return target if n <= step else tip + d / n * step


def expert(world: World) -> np.ndarray:
    """Go behind the block (around it if needed), then push it along the line to the goal."""
    tip, block = world.tip, world.block
    to_goal = world.goal - block
    u = to_goal / max(float(np.hypot(*to_goal)), 1e-9)  # push direction
    perp = np.array([-u[1], u[0]])
    rel = tip - block
    along, across = float(rel @ u), float(rel @ perp)
    contact = BLOCK_HALF + TIP_RADIUS
    if along < -0.5 * contact and abs(across) < ALIGNED:  # behind the block: push
        target = tip + u * PUSH_STEP - perp * across  # and steer back onto the push line
    else:
        behind = block - u * (contact + CLEARANCE)
        if along > -contact and abs(across) < contact + CLEARANCE:
            side = 1.0 if across >= 0 else -1.0  # beside or in front: go around on this side
            waypoint = block + perp * side * (contact + CLEARANCE) * 1.5 - u * contact
            target = _toward(tip, waypoint, APPROACH_STEP)
        else:
            target = _toward(tip, behind, APPROACH_STEP)
    return inverse_kinematics(target, world.q)


class RandomController:
    """Uniform random joint targets, each held for 5 control periods: the chance baseline."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.target, self.left = HOME, 0

    def __call__(self, world: World) -> np.ndarray:
        if self.left == 0:
            self.target, self.left = self.rng.uniform(LOWER, UPPER), 5
        self.left -= 1
        return self.target
