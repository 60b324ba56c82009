"""The policy node end to end over loopback DDS: frames and joints in, ActionChunks out."""

from __future__ import annotations

import threading
import time

import numpy as np
from dds_helpers import dds_domain, feed_inputs, spin_until  # noqa: F401  (dds_domain: fixture)

from uwm_ros.conversions import seconds
from uwm_ros.nodes.policy_node import PolicyNode
from uwm_ros.transport.dds import DDSTransport


def test_policy_node_over_dds(dds_domain, tiny_bundle) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    bundle, model, spec = tiny_bundle
    params = {"bundle": str(bundle), "backend": "torch", "enabled": True, "execute_steps": 2}
    params |= {"max_age": 1.0, "max_skew": 0.5, "control_rate": 20.0, "frames_every": 1}
    params |= {"engine_timeout": 60.0}  # a loaded machine must not trip the watchdog here
    node_t = DDSTransport("uwm_policy", params=params)
    node = PolicyNode(node_t)
    threading.Thread(target=node_t.spin, daemon=True).start()
    tester = DDSTransport("tester")
    chunks: list = []  # type: ignore[type-arg]
    diags: list = []  # type: ignore[type-arg]
    frames: list = []  # type: ignore[type-arg]
    tester.subscribe("/uwm_policy/action_chunk", "uwm_ros/msg/ActionChunk", chunks.append)
    tester.subscribe("/uwm_policy/predicted_frames", "uwm_ros/msg/PredictedFrames", frames.append)
    tester.subscribe("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", diags.append)
    feeder = feed_inputs(tester, model.cfg.cameras, spec.proprio_names)
    try:
        spin_until(tester, lambda: len(chunks) >= 3 and len(frames) >= 2, timeout_s=60)
        seqs = [c.sequence for c in chunks]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        for c in chunks:
            assert list(c.names) == list(spec.action_names) and c.action_dim == len(
                spec.action_names
            )
            assert c.horizon * c.action_dim == len(c.data) and 1 <= c.horizon <= model.cfg.horizon
            assert abs(c.dt - 0.1) < 1e-6 and c.mode == "policy" and c.inference_ms > 0
            assert seconds(c.start) >= seconds(c.header.stamp) - 1e-6
            assert np.isfinite(np.asarray(c.data)).all() and c.kind == "unknown"
        by_sequence = {c.sequence: c for c in chunks}
        h = model.cfg.horizon
        for f in frames:  # frames after the whole horizon, even when the chunk was trimmed
            assert f.mode == "forward_dynamics" and f.camera in model.cfg.cameras
            t0 = seconds(f.header.stamp)
            for j, stamp in enumerate(f.stamps):
                assert abs(seconds(stamp) - (t0 + (h + j) * 0.1)) < 1e-6
            if f.sequence in by_sequence:
                assert seconds(by_sequence[f.sequence].header.stamp) == t0
        assert any(c.horizon < h for c in chunks)  # the case the stamps got wrong before
        # Inputs stop: the watchdog stops the chunks and the diagnostics say why.
        feeder.cancel()
        time.sleep(1.5)
        spin_until(tester, lambda: any("stale" in d.status[0].message for d in diags), 10)
        count = len(chunks)
        time.sleep(1.0)
        tester.spin_once(0.2)
        assert len(chunks) == count  # nothing published while inputs are stale
        assert chunks[-1].mode == "stop" and chunks[-1].horizon == 0  # after a stop
        assert diags[-1].status[0].level == 3  # STALE
    finally:
        tester.shutdown()
        node.close()
        node_t.shutdown()
