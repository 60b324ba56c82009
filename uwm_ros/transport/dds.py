"""Cyclone DDS adapter of ``Transport``: talks to ROS 2 nodes on the wire, no ROS install needed.

ROS 2 conventions (what ``rmw_cyclonedds`` does): topic ``/foo`` is DDS topic ``rt/foo``, type
``pkg/msg/T`` is ``pkg::msg::dds_::T_`` in XCDR1, the domain is ``ROS_DOMAIN_ID``, and the
``use_sim_time`` parameter makes ``/clock`` the node's time. Network settings (interfaces,
peers) come from ``CYCLONEDDS_URI`` as for any Cyclone application.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cyclonedds.builtin import BuiltinDataReader, BuiltinTopicDcpsPublication
from cyclonedds.core import (
    DDSException,
    GuardCondition,
    InstanceState,
    ReadCondition,
    SampleState,
    ViewState,
    WaitSet,
)
from cyclonedds.domain import DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.qos import Policy, Qos
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration
from rosbags.typesys.store import Typestore

from ..msgs import new_message, typestore
from .base import RELIABLE, Lifecycle, QoS, Timer, Transport
from .base import Publisher as BasePublisher
from .idl import IdlTypes, MessageCodec, dds_typename, ros_msgtype

__all__ = ["DDSPublisher", "DDSTransport", "dds_qos", "dds_topic", "resolve_topic", "ros_topic"]

POLL_S = 0.1  # longest wait inside spin: Ctrl-C reaches a main thread blocked in C this often
MAX_BLOCKING_S = 0.1  # reliable write blocking bound when a reader's cache is full (DDS default)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOPIC = re.compile(r"(/[A-Za-z_][A-Za-z0-9_]*)+")
_ANY = SampleState.Any | ViewState.Any | InstanceState.Any
CLOCK_QOS = QoS(reliable=False, depth=1)  # rclcpp::ClockQoS: only the newest time matters
# Loopback only, no multicast: unicast discovery finds the peers' ports on 127.0.0.1 by
# participant index, so processes on one machine meet and nothing leaves it (tests, the demo).
LOOPBACK_CONFIG = (
    '<CycloneDDS><Domain Id="any"><General>'
    '<Interfaces><NetworkInterface address="127.0.0.1"/></Interfaces>'
    "<AllowMulticast>false</AllowMulticast></General>"
    "<Discovery><ParticipantIndex>auto</ParticipantIndex>"
    "<MaxAutoParticipantIndex>32</MaxAutoParticipantIndex>"
    '<Peers><Peer address="127.0.0.1"/></Peers></Discovery>'
    "</Domain></CycloneDDS>"
)


def loopback_env(domain: int) -> dict[str, str]:
    """Environment variables that put new participants (and child processes) on loopback in
    ``domain``; set them before the first participant of the process exists."""
    return {"CYCLONEDDS_URI": LOOPBACK_CONFIG, "ROS_DOMAIN_ID": str(domain)}


# ----- naming and QoS ---------------------------------------------------------------------------
def resolve_topic(name: str, node_name: str) -> str:
    """A ROS topic name made absolute: ``~/x`` -> ``/<node>/x``, ``x`` -> ``/x``.

    Relative names resolve in the root namespace: this adapter has no namespaces.
    """
    private = name == "~" or name.startswith("~/")
    full = f"/{node_name}{name[1:]}" if private else name if name.startswith("/") else "/" + name
    if not _TOPIC.fullmatch(full):
        raise ValueError(f"invalid ROS topic name {name!r}")
    return full


def dds_topic(name: str, node_name: str) -> str:
    """ROS topic name -> DDS topic name: ``/foo`` -> ``rt/foo``, ``~/x`` -> ``rt/<node>/x``."""
    return "rt" + resolve_topic(name, node_name)


def ros_topic(dds_name: str) -> str | None:
    """DDS topic name -> ROS topic name; None for DDS topics that are not ROS topics."""
    return dds_name[2:] if dds_name.startswith("rt/") else None


def dds_qos(qos: QoS) -> Qos:
    """Our QoS subset as Cyclone policies; XCDR1 explicitly, the only encoding ROS 2 reads."""
    return Qos(
        Policy.Reliability.Reliable(duration(seconds=MAX_BLOCKING_S))
        if qos.reliable
        else Policy.Reliability.BestEffort,
        Policy.History.KeepLast(qos.depth),
        Policy.Durability.TransientLocal if qos.transient_local else Policy.Durability.Volatile,
        Policy.DataRepresentation(use_cdrv0_representation=True),
    )


def _offered_qos(qos: Qos) -> QoS:
    """A discovered writer's Cyclone QoS -> ours (absent policies take the DDS writer defaults)."""
    reliability = qos[Policy.Reliability] if Policy.Reliability in qos else None
    history = qos[Policy.History] if Policy.History in qos else None
    durability = qos[Policy.Durability] if Policy.Durability in qos else None
    return QoS(
        reliable=reliability is None or isinstance(reliability, Policy.Reliability.Reliable),
        depth=getattr(history, "depth", 1),
        transient_local=durability == Policy.Durability.TransientLocal,
    )


# ----- endpoints --------------------------------------------------------------------------------
class DDSPublisher(BasePublisher):
    """Publishes typestore dataclasses (or objects with the same field names) on one topic."""

    def __init__(self, writer: DataWriter, codec: MessageCodec, closed: threading.Event) -> None:
        self._writer, self._codec, self._closed = writer, codec, closed

    def publish(self, msg: Any) -> None:
        """Write ``msg``; a no-op once the transport is shut down (a late engine thread, say)."""
        if self._closed.is_set():
            return
        try:
            self._writer.write(self._codec.to_idl(msg))
        except DDSException:
            if self._closed.is_set():  # shutdown deleted the writer between check and write
                return
            raise

    def matched(self) -> int:
        """Number of readers currently matched (discovered and QoS-compatible)."""
        return len(self._writer.get_matched_subscriptions())

    def wait_for_acks(self, timeout_s: float) -> bool:
        """Block until reliable readers acknowledged everything written; False on timeout."""
        return bool(self._writer.wait_for_acks(duration(seconds=timeout_s)))


@dataclass
class _Subscription:
    topic: str
    reader: DataReader
    condition: ReadCondition
    codec: MessageCodec
    callback: Callable[[Any], None]
    depth: int

    def dispatch(self, logger: logging.Logger) -> int:
        """Take what the reader holds and call back; returns the number of samples taken."""
        samples = self.reader.take(N=self.depth, condition=self.condition)
        for sample in samples:
            if not isinstance(sample, self.codec.idl):
                continue  # dispose/unregister notices carry no data
            try:
                self.callback(self.codec.to_ros(sample))
            except Exception:  # one bad message must not stop the node; rclpy would re-raise
                logger.exception("callback for %s failed", self.topic)
        return len(samples)


class _ThreadTimer(Timer):
    """A fixed-rate timer on its own thread, so it is never re-entrant.

    Ticks are due at start + k * period: callback time does not accumulate as drift. A callback
    that overruns makes the ticks it missed be skipped, not fired back to back; the next tick
    keeps the original phase.
    """

    def __init__(self, period_s: float, callback: Callable[[], None], logger: logging.Logger):
        if period_s <= 0:
            raise ValueError(f"timer period must be > 0, got {period_s}")
        self.period_s, self._callback, self._logger = period_s, callback, logger
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{logger.name}.timer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        due = time.monotonic() + self.period_s
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            try:
                self._callback()
            except Exception:  # same policy as subscription callbacks
                self._logger.exception("timer callback failed")
            due += self.period_s
            late = time.monotonic() - due
            if late > 0:
                due += (late // self.period_s + 1) * self.period_s

    def cancel(self) -> None:
        """Stop ticking; waits for a running callback unless called from that callback."""
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join()


# ----- the transport ----------------------------------------------------------------------------
class DDSTransport(Transport):
    """One DDS participant acting as ROS node ``node_name``.

    Args:
        node_name: ROS node name; ``~/x`` topics expand to ``/<node_name>/x``.
        domain_id: DDS domain; default ``ROS_DOMAIN_ID`` (0 when unset), as ROS 2 does.
        params: node parameters; ``param(name, default)`` returns ``default`` for missing ones.
            ``use_sim_time: true`` takes the time from ``/clock`` (0 until the first message),
            as ROS nodes do; timers still tick on the system clock.
        store: typestore for message definitions; default ``uwm_ros.msgs.typestore()``.
        remappings: topic name -> topic name, as ROS ``-r from:=to`` (matched after
            resolving both: ``joint_states`` and ``/joint_states`` are the same name).

    Subscription callbacks run in whichever thread calls ``spin``/``spin_once``: a waitset, not
    a Listener, because listeners run on Cyclone's receive thread (a slow callback would stall
    every reader of the process) and would fire before ``spin``, unlike rclpy. One dispatching
    thread at a time, so callbacks of one subscription never overlap. Timers have their own
    threads and start on creation.
    """

    def __init__(
        self,
        node_name: str,
        domain_id: int | None = None,
        params: dict[str, Any] | None = None,
        *,
        store: Typestore | None = None,
        remappings: dict[str, str] | None = None,
    ) -> None:
        if not _NAME.fullmatch(node_name):
            raise ValueError(f"invalid ROS node name {node_name!r}")
        self.node_name = node_name
        self.logger = logging.getLogger(f"uwm_ros.{node_name}")
        if domain_id is None:
            domain_id = int(os.environ.get("ROS_DOMAIN_ID") or 0)
        self.domain_id = domain_id
        self.types = IdlTypes(store or typestore())
        self._params = dict(params or {})
        self._read_only: set[str] = set()
        self._param_watchers: list[Callable[[str, Any], None]] = []
        self.remappings = {
            resolve_topic(k, node_name): resolve_topic(v, node_name)
            for k, v in (remappings or {}).items()
        }
        self._participant = DomainParticipant(self.domain_id)
        self._topics: dict[str, Topic] = {}
        self._subscriptions: list[_Subscription] = []
        self._publishers: list[DDSPublisher] = []
        self._timers: list[_ThreadTimer] = []
        self._discovery: ReadCondition | None = None
        self._closed = threading.Event()
        self._shutdown_once = threading.Lock()  # held for good by the first shutdown
        self._dispatch_lock = threading.Lock()
        self._dispatcher: int | None = None  # thread id inside spin_once
        self._wake = GuardCondition(self._participant)
        self._waitset = WaitSet(self._participant)
        self._waitset.attach(self._wake)
        self._sim_ns: int | None = None
        if self._params.get("use_sim_time"):
            self._sim_ns = 0
            self.subscribe("/clock", "rosgraph_msgs/msg/Clock", self._on_clock, CLOCK_QOS)

    # ----- Transport interface
    def subscribe(
        self, topic: str, msgtype: str, callback: Callable[[Any], None], qos: QoS = RELIABLE
    ) -> None:
        dds_name, codec, dds_topic_ = self._topic(topic, msgtype)
        reader = DataReader(self._participant, dds_topic_, qos=dds_qos(qos))
        condition = ReadCondition(reader, _ANY)
        self._subscriptions.append(
            _Subscription(dds_name, reader, condition, codec, callback, qos.depth)
        )
        self._waitset.attach(condition)
        self._wake.set(True)  # a spin already waiting picks the new reader up at once

    def publisher(self, topic: str, msgtype: str, qos: QoS = RELIABLE) -> DDSPublisher:
        _, codec, dds_topic_ = self._topic(topic, msgtype)
        writer = DataWriter(self._participant, dds_topic_, qos=dds_qos(qos))
        publisher = DDSPublisher(writer, codec, self._closed)
        self._publishers.append(publisher)  # like rclpy's node, keep it alive until shutdown
        return publisher

    def timer(self, period_s: float, callback: Callable[[], None]) -> Timer:
        if self._closed.is_set():
            raise RuntimeError("the transport was shut down")
        timer = _ThreadTimer(period_s, callback, self.logger)
        self._timers.append(timer)
        return timer

    def now_ns(self) -> int:
        return time.time_ns() if self._sim_ns is None else self._sim_ns

    def param(self, name: str, default: Any, read_only: bool = False) -> Any:
        if read_only:
            self._read_only.add(name)
        return self._params.get(name, default)

    def watch_params(self, callback: Callable[[str, Any], None]) -> None:
        self._param_watchers.append(callback)

    def set_param(self, name: str, value: Any) -> None:
        """What ``ros2 param set`` does on rclpy: refused if read-only or by a watcher."""
        if name in self._read_only:
            raise ValueError(f"parameter {name!r} is read-only")
        for callback in self._param_watchers:
            callback(name, value)
        self._params[name] = value

    def new(self, msgtype: str, **fields: Any) -> Any:
        return new_message(self.types.store, msgtype, **fields)

    def manage(self, node: Lifecycle) -> None:
        """No lifecycle services over plain DDS: the caller calls ``node``'s transitions."""

    def spin(self) -> None:
        while not self._closed.is_set():
            self.spin_once(POLL_S)

    def spin_once(self, timeout_s: float = 0.0) -> int:
        """Wait up to ``timeout_s`` for data, run the callbacks; returns samples taken."""
        with self._dispatch_lock:
            if self._closed.is_set():
                return 0
            self._dispatcher = threading.get_ident()
            try:
                self._waitset.wait(duration(seconds=timeout_s))
                self._wake.take()
                return sum(sub.dispatch(self.logger) for sub in list(self._subscriptions))
            finally:
                self._dispatcher = None
                if self._closed.is_set():  # shutdown() was called from a callback
                    self._delete()

    def shutdown(self) -> None:
        """Stop timers, then spin, delete the participant; idempotent. Later publishes are no-ops.

        Timers stop first, so a callback running meanwhile still has a working transport.
        """
        if not self._shutdown_once.acquire(blocking=False):
            return  # done, or in progress in another thread (maybe a timer this one waits for)
        for timer in self._timers:
            timer.cancel()
        self._closed.set()
        self._wake.set(True)
        if self._dispatcher != threading.get_ident():
            with self._dispatch_lock:  # let a dispatch in another thread finish first
                self._delete()

    # ----- beyond the interface: discovery, for bag record
    def publications(self) -> dict[str, tuple[str, QoS]]:
        """ROS topics with a live writer anywhere on the domain: topic -> (msgtype, QoS).

        With several writers on a topic the QoS is the one every writer can serve.
        """
        if self._discovery is None:
            reader = BuiltinDataReader(self._participant, BuiltinTopicDcpsPublication)
            alive = SampleState.Any | ViewState.Any | InstanceState.Alive
            self._discovery = ReadCondition(reader, alive)
        found: dict[str, tuple[str, QoS]] = {}
        for endpoint in self._discovery.reader.read(N=4096, condition=self._discovery):
            topic, msgtype = ros_topic(endpoint.topic_name), ros_msgtype(endpoint.type_name)
            if topic is None or msgtype is None:
                continue
            qos = _offered_qos(endpoint.qos)
            if topic in found:
                seen = found[topic][1]
                qos = QoS(
                    seen.reliable and qos.reliable,
                    max(seen.depth, qos.depth),
                    seen.transient_local and qos.transient_local,
                )
            found[topic] = (msgtype, qos)
        return found

    # ----- internals
    def _on_clock(self, msg: Any) -> None:
        self._sim_ns = int(msg.clock.sec) * 1_000_000_000 + int(msg.clock.nanosec)

    def _topic(self, name: str, msgtype: str) -> tuple[str, MessageCodec, Topic]:
        """(DDS name, codec, Topic); one Topic per name, its type fixed by the first use."""
        if self._closed.is_set():
            raise RuntimeError("the transport was shut down")
        full = resolve_topic(name, self.node_name)
        dds_name = dds_topic(self.remappings.get(full, full), self.node_name)
        codec = self.types.codec(msgtype)
        if dds_name not in self._topics:
            self._topics[dds_name] = Topic(self._participant, dds_name, codec.topic_type())
        topic = self._topics[dds_name]
        if topic.data_type is not codec.idl:
            raise ValueError(
                f"{name} is already used with {topic.get_type_name()}, not {dds_typename(msgtype)}"
            )
        return dds_name, codec, topic

    def _delete(self) -> None:
        """Delete the participant and, with it, every reader, writer and condition.

        cyclonedds ties deletion to Python object lifetime and has no close(): a publisher the
        caller still holds would keep the participant (and its discovery traffic) alive, so
        delete it explicitly; the children's own finalisers are then no-ops on dead handles.
        """
        self._subscriptions.clear()
        self._publishers.clear()
        self._topics.clear()
        self._discovery = None
        self._participant.__del__()
