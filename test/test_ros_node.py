"""The policy node on rclpy: ActionChunks from camera/joint messages, lifecycle transitions.

Needs ROS 2 (Humble or later) with the uwm_ros interfaces built and sourced.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dds_helpers import dds_domain, feed_inputs, wait_until  # noqa: F401 (dds_domain: fixture)

pytestmark = pytest.mark.ros
pytest.importorskip("rclpy")
pytest.importorskip("uwm_ros.msg", reason="uwm_ros interfaces not built (colcon build)")

from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn  # noqa: E402

from uwm_ros.conversions import seconds  # noqa: E402
from uwm_ros.nodes.policy_node import PolicyNode  # noqa: E402
from uwm_ros.transport.ros import RclpyTransport  # noqa: E402

PARAMS = {"backend": "torch", "enabled": True, "execute_steps": 2, "max_age": 1.0}


def ros_args(params: dict[str, Any]) -> list[str]:
    """Node parameters as rclpy command-line overrides (JSON values are valid YAML)."""
    args = ["--ros-args"]
    for key, value in params.items():
        args += ["-p", f"{key}:={json.dumps(value)}"]
    return args


def test_policy_node_publishes_chunks(dds_domain, tiny_bundle) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    bundle, model, spec = tiny_bundle
    node_t = RclpyTransport("uwm_policy", ros_args({**PARAMS, "bundle": str(bundle)}))
    node = PolicyNode(node_t)
    tester = RclpyTransport("tester")  # same rclpy context
    chunks: list[Any] = []
    tester.subscribe("/uwm_policy/action_chunk", "uwm_ros/msg/ActionChunk", chunks.append)
    feeder = feed_inputs(tester, model.cfg.cameras, spec.proprio_names)
    for transport in (node_t, tester):
        threading.Thread(target=transport.spin, daemon=True).start()
    try:
        assert not isinstance(node_t.node, LifecycleNode) and node.state == "active"
        wait_until(lambda: len(chunks) >= 3, timeout_s=60)
    finally:
        feeder.cancel()
        tester.shutdown()
        node.close()
        node_t.shutdown()
    for c in chunks[:3]:
        assert list(c.names) == list(spec.action_names) and c.action_dim == model.cfg.action_dim
        assert 1 <= c.horizon <= model.cfg.horizon and len(c.data) == c.horizon * c.action_dim
        assert abs(c.dt - 1 / spec.fps) < 1e-6 and c.mode == "policy"
        assert np.isfinite(np.asarray(c.data)).all()
        assert seconds(c.start) >= seconds(c.header.stamp)


def test_lifecycle_node_transitions(dds_domain, tiny_bundle) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    params = {**PARAMS, "bundle": str(tiny_bundle[0]), "lifecycle": True}
    node_t = RclpyTransport("uwm_policy", ros_args(params))
    node = PolicyNode(node_t)
    managed = node_t.node
    ok = TransitionCallbackReturn.SUCCESS
    try:
        assert isinstance(managed, LifecycleNode) and node.state == "unconfigured"
        assert managed.trigger_configure() == ok and node.state == "inactive"
        assert managed.trigger_activate() == ok and node.state == "active"
        assert managed.trigger_deactivate() == ok and node.state == "inactive"
        assert managed.trigger_cleanup() == ok and node.state == "unconfigured"
        assert managed.trigger_configure() == ok and managed.trigger_activate() == ok
        assert managed.trigger_shutdown() == ok and node.state == "unconfigured"
    finally:
        node.close()
        node_t.shutdown()


def test_lifecycle_configure_failure(dds_domain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    params = {"bundle": str(tmp_path / "missing"), "lifecycle": True}
    node_t = RclpyTransport("uwm_policy", ros_args(params))
    node = PolicyNode(node_t)
    try:
        assert node_t.node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.state == "unconfigured"
    finally:
        node_t.shutdown()


def test_live_parameters_on_rclpy(dds_domain, tiny_bundle) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """``enabled`` changes live through the on-set callback; wrong types and read-only
    parameters are refused with a reason; ``~/enable`` takes the same path."""
    node_t = RclpyTransport("uwm_policy", ros_args({**PARAMS, "bundle": str(tiny_bundle[0])}))
    node = PolicyNode(node_t)
    try:
        node_t.set_param("enabled", False)
        assert node.runtime is not None and node.runtime.cfg.enabled is False
        with pytest.raises(ValueError):
            node_t.set_param("enabled", "true")  # a string is not a bool
        with pytest.raises(ValueError, match="read"):
            node_t.set_param("seam", "switch")
        node._on_enable(type("Bool", (), {"data": True})())
        assert node.runtime.cfg.enabled is True
    finally:
        node.close()
        node_t.shutdown()
