"""DDSTransport over real Cyclone DDS on loopback: pub/sub, QoS, naming, timer, lifecycle."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from dds_helpers import WAIT_S, assert_msg_equal, dds_domain, spin_until, wait_until  # noqa: F401

from uwm_ros.msgs import ACTION_CHUNK
from uwm_ros.transport.base import RELIABLE, SENSOR_DATA
from uwm_ros.transport.dds import DDSTransport

IMAGE = "sensor_msgs/msg/Image"


@pytest.fixture
def pair(dds_domain: int) -> Iterator[tuple[DDSTransport, DDSTransport]]:  # noqa: F811
    """A publishing and a subscribing node, as two participants."""
    pub, sub = DDSTransport("talker"), DDSTransport("listener")
    assert pub.domain_id == dds_domain  # from ROS_DOMAIN_ID
    yield pub, sub
    pub.shutdown()
    sub.shutdown()


def _roundtrip(pair: tuple[DDSTransport, DDSTransport], topic: str, msgtype: str, msg: Any,
               sub_topic: str | None = None, qos: Any = RELIABLE) -> Any:  # fmt: skip
    """Publish ``msg`` once matched; the message the subscriber's callback received."""
    pub, sub = pair
    received: list[Any] = []
    sub.subscribe(sub_topic or topic, msgtype, received.append, qos)
    publisher = pub.publisher(topic, msgtype)
    wait_until(lambda: publisher.matched() > 0)
    publisher.publish(msg)
    spin_until(sub, lambda: bool(received))
    return received[0]


def test_image_roundtrip(pair: tuple[DDSTransport, DDSTransport]) -> None:
    pub, _ = pair
    pixels = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    stamp = pub.new("builtin_interfaces/msg/Time", sec=12, nanosec=34)
    image = pub.new(
        IMAGE, header=pub.new("std_msgs/msg/Header", stamp=stamp, frame_id="front"),
        height=480, width=640, encoding="rgb8", step=640 * 3, data=pixels.reshape(-1),
    )  # fmt: skip
    got = _roundtrip(pair, "/camera/front/image_raw", IMAGE, image)
    assert_msg_equal(got, image)
    assert np.array_equal(got.data.reshape(480, 640, 3), pixels)


def test_action_chunk_roundtrip(pair: tuple[DDSTransport, DDSTransport]) -> None:
    pub, _ = pair
    chunk = pub.new(
        ACTION_CHUNK, start=pub.new("builtin_interfaces/msg/Time", sec=5), dt=0.1,
        names=["j1", "j2"], horizon=3, action_dim=2, data=np.linspace(-1, 1, 6),
        sequence=41, mode="policy", inference_ms=7.5,
    )  # fmt: skip
    assert_msg_equal(_roundtrip(pair, "/chunks", ACTION_CHUNK, chunk), chunk)


def test_best_effort_subscriber_gets_reliable_publisher(
    pair: tuple[DDSTransport, DDSTransport],
) -> None:
    msg = pair[0].new("std_msgs/msg/String", data="hello")
    assert _roundtrip(pair, "/chatter", "std_msgs/msg/String", msg, qos=SENSOR_DATA).data == "hello"


def test_private_names_expand_to_node_name(pair: tuple[DDSTransport, DDSTransport]) -> None:
    msg = pair[0].new("std_msgs/msg/String", data="private")
    got = _roundtrip(pair, "~/status", "std_msgs/msg/String", msg, sub_topic="/talker/status")
    assert got.data == "private"


def test_discovery_reports_type_and_qos(pair: tuple[DDSTransport, DDSTransport]) -> None:
    pub, sub = pair
    pub.publisher("/camera/image_raw", IMAGE, SENSOR_DATA)
    pub.publisher("~/out", ACTION_CHUNK)
    wait_until(lambda: {"/camera/image_raw", "/talker/out"} <= set(sub.publications()))
    found = sub.publications()
    assert found["/camera/image_raw"][0] == IMAGE and not found["/camera/image_raw"][1].reliable
    assert found["/talker/out"][0] == ACTION_CHUNK and found["/talker/out"][1].reliable


def test_topic_type_conflict_is_an_error(pair: tuple[DDSTransport, DDSTransport]) -> None:
    pub, _ = pair
    pub.publisher("/x", "std_msgs/msg/String")
    with pytest.raises(ValueError, match="already used"):
        pub.publisher("/x", IMAGE)


def test_timer_cadence(dds_domain: int) -> None:  # noqa: F811
    node = DDSTransport("ticker")
    ticks: list[float] = []
    timer = node.timer(0.02, lambda: ticks.append(time.monotonic()))
    time.sleep(1.0)
    timer.cancel()
    count = len(ticks)
    time.sleep(0.05)
    assert len(ticks) == count  # cancel stops it
    period = float(np.diff(ticks).mean())
    assert abs(period - 0.02) < 0.002, period
    node.shutdown()


def test_timer_is_never_reentrant_and_skips_overruns(dds_domain: int) -> None:  # noqa: F811
    node = DDSTransport("slow_ticker")
    active, overlaps, starts = threading.Lock(), [], []

    def slow() -> None:
        if not active.acquire(blocking=False):
            overlaps.append(1)
            return
        starts.append(time.monotonic())
        time.sleep(0.025)  # 2.5 periods: two ticks are skipped each time
        active.release()

    node.timer(0.01, slow)
    time.sleep(0.3)
    node.shutdown()
    assert not overlaps
    assert np.diff(starts).min() > 0.025  # no back-to-back catch-up ticks


def test_params_new_clock_and_shutdown(dds_domain: int) -> None:  # noqa: F811
    node = DDSTransport("params_node", domain_id=dds_domain, params={"rate_hz": 15.0})
    assert node.param("rate_hz", 10.0) == 15.0 and node.param("k", 8) == 8
    assert abs(node.now_ns() - time.time_ns()) < 1e9
    state = node.new("sensor_msgs/msg/JointState", name=["a"])
    assert state.position.dtype == np.float64 and state.position.size == 0
    publisher = node.publisher("/joint_states", "sensor_msgs/msg/JointState")
    spinner = threading.Thread(target=node.spin)
    spinner.start()
    node.shutdown()
    spinner.join(timeout=5)
    assert not spinner.is_alive()
    node.shutdown()  # idempotent
    publisher.publish(state)  # a no-op now, like the node it belonged to
    with pytest.raises(RuntimeError, match="shut down"):
        node.publisher("/late", "std_msgs/msg/String")


def test_shutdown_lets_a_running_timer_callback_finish(
    dds_domain: int,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    node = DDSTransport("late_ticker")
    publisher = node.publisher("/late", "std_msgs/msg/String")
    msg = node.new("std_msgs/msg/String", data="late")
    running, published = threading.Event(), []

    def tick() -> None:  # a diagnostics timer that fires just as the node shuts down
        running.set()
        time.sleep(0.2)  # shutdown() starts meanwhile
        publisher.publish(msg)
        published.append(msg)

    node.timer(0.01, tick)
    assert running.wait(WAIT_S)
    with caplog.at_level(logging.ERROR):
        node.shutdown()
    assert published and not caplog.records  # the tick completed, nothing was logged


def test_publish_racing_shutdown_is_dropped(dds_domain: int) -> None:  # noqa: F811
    node = DDSTransport("racer")
    publisher = node.publisher("/race", "std_msgs/msg/String")
    msg = node.new("std_msgs/msg/String", data="race")
    started, done, errors = threading.Event(), threading.Event(), []

    def spam() -> None:  # an engine thread publishing while the node shuts down
        started.set()
        try:
            while not done.is_set():
                publisher.publish(msg)
        except Exception as e:
            errors.append(e)

    thread = threading.Thread(target=spam)
    thread.start()
    assert started.wait(WAIT_S)
    time.sleep(0.05)
    node.shutdown()
    time.sleep(0.05)  # publishes after the shutdown, too
    done.set()
    thread.join(WAIT_S)
    assert not errors


def test_shutdown_from_a_callback(pair: tuple[DDSTransport, DDSTransport]) -> None:
    pub, sub = pair
    sub.subscribe("/stop", "std_msgs/msg/Empty", lambda _: sub.shutdown())
    publisher = pub.publisher("/stop", "std_msgs/msg/Empty")
    wait_until(lambda: publisher.matched() > 0)
    publisher.publish(pub.new("std_msgs/msg/Empty"))
    spinner = threading.Thread(target=sub.spin)
    spinner.start()
    spinner.join(timeout=10)
    assert not spinner.is_alive()
