"""DDS test helpers: a loopback-only random domain per run, bounded waits, message equality.

Import ``dds_domain`` into a test module (``from dds_helpers import dds_domain``) and request
it: the environment is set before the first participant of the session exists, and child
processes inherit it.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields, is_dataclass
from typing import Any

import numpy as np
import pytest

from uwm_ros.conversions import image_msg, joint_state_msg
from uwm_ros.transport.base import SENSOR_DATA, Timer, Transport
from uwm_ros.transport.dds import loopback_env

WAIT_S = 10.0  # generous: discovery on a loaded 2-core machine can take seconds


@pytest.fixture(scope="session")
def dds_domain() -> Iterator[int]:
    """A random ROS_DOMAIN_ID in 0-100 on loopback, for the whole session."""
    domain = random.SystemRandom().randint(0, 100)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in loopback_env(domain).items():
            mp.setenv(name, value)
        yield domain


def wait_until(
    condition: Callable[[], bool], timeout_s: float = WAIT_S, step_s: float = 0.01
) -> None:
    """Poll ``condition`` until true; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(step_s)


def spin_until(transport: Any, condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    """Dispatch ``transport`` callbacks until ``condition`` holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        transport.spin_once(0.05)


def feed_inputs(
    transport: Transport, cameras: Sequence[str], joints: Sequence[str], period_s: float = 0.05
) -> Timer:
    """Publish random frames on /camera/<name>/image_raw and /joint_states, stamped now, from a
    timer of ``transport`` (a policy node's inputs); cancel the returned timer to stop."""
    images = {
        c: transport.publisher(f"/camera/{c}/image_raw", "sensor_msgs/msg/Image", SENSOR_DATA)
        for c in cameras
    }
    states = transport.publisher("/joint_states", "sensor_msgs/msg/JointState")
    rng = np.random.default_rng(0)

    def publish() -> None:
        now = transport.now_ns() * 1e-9
        for camera, publisher in images.items():
            rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            publisher.publish(image_msg(transport, rgb, now, camera))
        positions = rng.uniform(-1.0, 0.5, len(joints))
        states.publish(joint_state_msg(transport, tuple(joints), positions, now))

    return transport.timer(period_s, publish)


def assert_msg_equal(a: Any, b: Any, path: str = "msg") -> None:
    """Field-by-field equality of typestore messages (numpy arrays by value and dtype)."""
    if is_dataclass(a):
        assert type(a).__name__ == type(b).__name__, path
        for f in fields(a):
            assert_msg_equal(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype, path
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_msg_equal(x, y, f"{path}[{i}]")
    elif isinstance(a, float):  # float32 fields come back rounded to float32
        assert a == pytest.approx(b, rel=1e-7, abs=1e-30), f"{path}: {a!r} != {b!r}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def subprocess_env() -> dict[str, str]:
    """The environment for a child process: the test domain plus the repo on PYTHONPATH."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
