"""``bag play`` -> policy node -> ``bag record`` over loopback DDS, on the bag's own clock.

The bag carries ``/clock`` and the node runs with ``use_sim_time``, as a ROS node does with a
replayed recording: the node's time is the bag's, so the result does not depend on when or how
fast the bag plays.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
from dds_helpers import WAIT_S, dds_domain, wait_until  # noqa: F401 (dds_domain is a fixture)
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer

from uwm_ros.conversions import image_msg, joint_state_msg, seconds, time_msg
from uwm_ros.msgs import ACTION_CHUNK, typestore
from uwm_ros.nodes.bag_tools import play, record
from uwm_ros.nodes.policy_node import PolicyNode
from uwm_ros.transport.base import Transport
from uwm_ros.transport.dds import DDSTransport

T0 = 1_700_000_000.0  # bag time: far from the wall clock, so only sim time can work
DURATION_S = 2.0
CHUNKS = "/uwm_policy/action_chunk"
CLOCK, IMAGE = "rosgraph_msgs/msg/Clock", "sensor_msgs/msg/Image"
JOINTS = "sensor_msgs/msg/JointState"


def _write_bag(path: Path, t: Transport, cameras: tuple[str, ...], joints: tuple[str, ...]) -> int:
    """/clock at 50 Hz, cameras at 10 Hz, joint states at 20 Hz, header stamps in bag time.

    Returns the number of messages.
    """
    rng = np.random.default_rng(0)
    messages: list[tuple[str, str, float, Any]] = []
    for i in range(int(DURATION_S * 50) + 1):
        stamp = T0 + i / 50
        messages.append(("/clock", CLOCK, stamp, t.new(CLOCK, clock=time_msg(t, stamp))))
        if i % 5 == 0:
            for cam in cameras:
                rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
                image = image_msg(t, rgb, stamp, cam)
                messages.append((f"/camera/{cam}/image_raw", IMAGE, stamp, image))
        if i % 5 in (0, 2):  # 20 Hz on average, unevenly, as recorded joint states are
            state = joint_state_msg(t, joints, rng.uniform(-1.0, 0.5, len(joints)), stamp)
            messages.append(("/joint_states", JOINTS, stamp, state))
    store = typestore()
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        types = {topic: msgtype for topic, msgtype, _, _ in messages}
        connections = {
            topic: writer.add_connection(topic, msgtype, typestore=store)
            for topic, msgtype in types.items()
        }
        for topic, msgtype, stamp, msg in messages:
            writer.write(connections[topic], round(stamp * 1e9), store.serialize_cdr(msg, msgtype))
    return len(messages)


def test_bag_play_node_bag_record(tmp_path: Path, dds_domain, tiny_bundle) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    bundle, model, spec = tiny_bundle
    params = {"bundle": str(bundle), "backend": "torch", "enabled": True, "use_sim_time": True}
    params |= {"execute_steps": 2, "max_age": 1.0, "max_skew": 0.3, "engine_timeout": 60.0}
    node_t = DDSTransport("uwm_policy", params=params)
    node = PolicyNode(node_t)
    assert node.state == "active"
    source, out = tmp_path / "played", tmp_path / "recorded"
    total = _write_bag(source, node_t, model.cfg.cameras, spec.proprio_names)
    threading.Thread(target=node_t.spin, daemon=True).start()
    stop, recorded = threading.Event(), {}
    recorder = threading.Thread(
        target=lambda: recorded.update(record(out, [CHUNKS], progress=False, stop=stop))
    )
    recorder.start()
    try:
        wait_until(lambda: node.pub_chunk.matched() > 0)  # the recorder is listening
        # half speed: twice the engine time in bag time, for a loaded machine
        assert play(source, rate=0.5, wait_s=WAIT_S, progress=False) == total
        node.deactivate()
        assert node.pub_chunk.wait_for_acks(WAIT_S)
        published = node.runtime.counts["chunks"]
    finally:
        stop.set()
        recorder.join(WAIT_S)
        node.close()
        node_t.shutdown()
    assert not recorder.is_alive()
    assert T0 <= node_t.now_ns() * 1e-9 <= T0 + DURATION_S  # the node's clock was the bag's

    with AnyReader([out], default_typestore=typestore()) as reader:
        assert [(c.topic, c.msgtype) for c in reader.connections] == [(CHUNKS, ACTION_CHUNK)]
        chunks = [reader.deserialize(raw, ACTION_CHUNK) for _, _, raw in reader.messages()]
    assert len(chunks) == recorded[CHUNKS]
    chunks = [c for c in chunks if c.mode != "stop"]  # deactivate (and faults) send stops
    assert 1 <= len(chunks) == published
    assert [c.sequence for c in chunks] == sorted({c.sequence for c in chunks})
    for c in chunks:
        assert list(c.names) == list(spec.action_names) and c.action_dim == model.cfg.action_dim
        assert 1 <= c.horizon <= model.cfg.horizon and len(c.data) == c.horizon * c.action_dim
        assert abs(c.dt - 1 / spec.fps) < 1e-6 and c.mode == "policy"
        assert np.isfinite(c.data).all()
        stamp, start = seconds(c.header.stamp), seconds(c.start)
        assert T0 <= stamp <= T0 + DURATION_S  # the newest observation used: a played stamp
        assert stamp <= start < stamp + model.cfg.horizon * c.dt
