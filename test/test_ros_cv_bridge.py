"""cv_bridge, what ROS users decode images with, agrees with ``uwm_ros.conversions.image_rgb``."""

from __future__ import annotations

import numpy as np
import pytest

from uwm_ros.conversions import image_rgb

pytestmark = pytest.mark.ros
cv_bridge = pytest.importorskip("cv_bridge")


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8"])
def test_image_rgb_matches_cv_bridge(encoding: str) -> None:
    shape = (37, 53) if encoding == "mono8" else (37, 53, 3)  # odd sizes: no lucky alignment
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    bridge = cv_bridge.CvBridge()
    msg = bridge.cv2_to_imgmsg(pixels, encoding=encoding)
    expected = bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8")
    assert expected.shape == (37, 53, 3)
    np.testing.assert_array_equal(image_rgb(msg), expected)
