"""The top-down camera: the table seen from above, drawn with OpenCV at the dataset's resolution.

Drawn at 4x and area-downsampled, so sub-pixel motion still changes the pixels (anti-aliasing
the model can read positions from).
"""

from __future__ import annotations

import cv2
import numpy as np

from .world import BLOCK_HALF, GOAL_RADIUS, TABLE, TIP_RADIUS, World, forward_kinematics

SUPERSAMPLE = 4
LINK_WIDTH = 0.014  # m; the arm passes above the table, thin enough not to hide the block
COLORS = {  # RGB
    "table": (222, 212, 192),
    "goal": (130, 205, 130),
    "block": (205, 55, 45),
    "arm": (45, 70, 165),
    "joint": (25, 30, 60),
    "tip": (245, 185, 20),
}


def _pixels(points: np.ndarray, size: int) -> np.ndarray:
    """World (N, 2) metres -> integer pixel coordinates (x right, y down) at ``size``."""
    lo, hi = TABLE
    uv = (np.asarray(points) - lo) / (hi - lo) * size
    uv[..., 1] = size - uv[..., 1]  # the camera looks down with +y up in the image
    return np.round(uv).astype(np.int32)


def render(world: World, size: int = 64) -> np.ndarray:
    """The scene as an RGB image, (size, size, 3) uint8."""
    big = size * SUPERSAMPLE
    scale = big / float(TABLE[1, 0] - TABLE[0, 0])  # pixels per metre
    img = np.empty((big, big, 3), np.uint8)
    img[:] = COLORS["table"]
    cv2.circle(img, tuple(_pixels(world.goal, big)), round(GOAL_RADIUS * scale), COLORS["goal"], -1)
    corners = world.block + BLOCK_HALF * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    cv2.fillPoly(img, [_pixels(corners, big)], COLORS["block"])
    joints = _pixels(forward_kinematics(world.q), big)
    width = max(1, round(LINK_WIDTH * scale))
    cv2.polylines(img, [joints], False, COLORS["arm"], width, cv2.LINE_AA)
    for p in joints[:-1]:
        cv2.circle(img, tuple(p), width, COLORS["joint"], -1, cv2.LINE_AA)
    cv2.circle(img, tuple(joints[-1]), round(TIP_RADIUS * scale), COLORS["tip"], -1, cv2.LINE_AA)
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
