"""PolicyNode's lifecycle over loopback DDS: configure loads the engine, activate publishes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from dds_helpers import WAIT_S, dds_domain, feed_inputs, spin_until, wait_until  # noqa: F401

from uwm_ros.engines import load_engine
from uwm_ros.msgs import ACTION_CHUNK
from uwm_ros.nodes.policy_node import PolicyNode
from uwm_ros.transport.dds import DDSTransport

PARAMS = {"backend": "torch", "enabled": True, "lifecycle": True, "execute_steps": 2}
PARAMS |= {"max_age": 1.0, "max_skew": 0.5, "engine_timeout": 60.0}


def _drain(transport: DDSTransport) -> None:
    """Run callbacks until nothing more arrives."""
    while transport.spin_once(0.2):
        pass


def test_transitions_gate_inference_and_publishing(dds_domain, tiny_bundle) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    bundle, model, spec = tiny_bundle
    node_t = DDSTransport("uwm_policy", params={**PARAMS, "bundle": str(bundle)})
    node = PolicyNode(node_t)
    threading.Thread(target=node_t.spin, daemon=True).start()
    tester = DDSTransport("tester")
    chunks: list = []  # type: ignore[type-arg]
    diagnostics: list = []  # type: ignore[type-arg]
    tester.subscribe("/uwm_policy/action_chunk", ACTION_CHUNK, chunks.append)
    tester.subscribe("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", diagnostics.append)
    feeder = feed_inputs(tester, model.cfg.cameras, spec.proprio_names)

    def joints_received() -> int:
        return node.runtime.history.streams["joints"].received if node.runtime else 0

    try:
        assert node.state == "unconfigured" and node.runtime is None  # no engine yet
        with pytest.raises(RuntimeError, match="cannot activate a node that is unconfigured"):
            node.activate()

        node.configure()
        assert node.state == "inactive" and node.runtime is not None
        assert node.runtime.engine.cfg.cameras == model.cfg.cameras
        wait_until(lambda: joints_received() >= 30, timeout_s=30)  # a second of inputs ...
        _drain(tester)
        assert node.runtime.counts["chunks"] == 0 and not chunks and not diagnostics  # ... idle

        node.activate()
        spin_until(tester, lambda: len(chunks) >= 2 and bool(diagnostics), timeout_s=30)

        node.deactivate()  # nothing is published once it returns
        assert node.pub_chunk.wait_for_acks(WAIT_S)
        _drain(tester)
        published = node.runtime.counts["chunks"]
        assert chunks[-1].mode == "stop"  # deactivate tells consumers to stop
        assert len(chunks) == published + 1
        received = joints_received()
        wait_until(lambda: joints_received() >= received + 20, timeout_s=30)  # a second more
        _drain(tester)
        assert len(chunks) == published + 1 and published == node.runtime.counts["chunks"]

        node.cleanup()
        assert node.state == "unconfigured" and node.runtime is None
        node.configure()  # loads the engine again; the endpoints are reused
        node.activate()
        spin_until(tester, lambda: len(chunks) > published + 1, timeout_s=30)
        node.close()
        assert node.state == "unconfigured"
    finally:
        feeder.cancel()
        tester.shutdown()
        node.close()
        node_t.shutdown()


def test_failed_configure_stays_unconfigured(dds_domain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    node_t = DDSTransport("uwm_policy", params={**PARAMS, "bundle": str(tmp_path / "missing")})
    try:
        node = PolicyNode(node_t)
        with pytest.raises(ValueError, match="not found"):
            node.configure()
        assert node.state == "unconfigured"
    finally:
        node_t.shutdown()


def test_without_lifecycle_the_node_starts_active(dds_domain, tiny_bundle) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    engine = load_engine(tiny_bundle[0], "torch")
    node_t = DDSTransport("uwm_policy", params={"enabled": True})
    try:
        node = PolicyNode(node_t, engine)
        assert node.state == "active" and node.runtime is not None
        assert node.runtime.engine is engine
        node.close()
        assert node.state == "unconfigured"
        node.configure()  # a given engine is kept for the next configure
        assert node.runtime is not None and node.runtime.engine is engine
        node.close()
    finally:
        node_t.shutdown()
