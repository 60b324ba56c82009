"""The shared nearest-within-tolerance rule (runtime history and converter grid)."""

import numpy as np

from uwm_ros.timing import nearest


def test_nearest_picks_the_closest_stamp_either_side():
    stamps = [0.0, 0.1, 0.2, 0.3]
    assert nearest(stamps, 0.19, 0.05) == 2  # just before a sample
    assert nearest(stamps, 0.21, 0.05) == 2  # just after it
    assert nearest(stamps, 0.15, 0.05) == 1  # a tie takes the earlier sample
    assert nearest(stamps, 0.5, 0.05) is None  # too far from every sample
    assert nearest([], 0.0, 1.0) is None


def test_jittered_stamps_map_one_to_one_onto_grid():
    """Grid-rate stamps with +-20 % jitter: every grid time gets its own frame, none twice."""
    rng = np.random.default_rng(0)
    dt = 0.1
    stamps = (np.arange(200) * dt + rng.uniform(-0.2, 0.2, 200) * dt).tolist()
    picks = [nearest(stamps, k * dt, dt / 2) for k in range(200)]
    assert picks == list(range(200))
