"""rclpy adapter of the Transport interface (needs a ROS 2 install; tests marked ``ros``).

Each subscription gets its own mutually exclusive callback group, the timers another, and a
MultiThreadedExecutor runs them, so a slow camera callback never delays the control timer. A
callback that raises is logged and the node goes on: rclpy would let the exception end the
executor's spin, and with it the node. Parameters are declared from the defaults the node asks
for (read-only unless live), so ``ros2 param`` and YAML parameter files work as ROS users
expect; live ones go through the node's on-set callback, which validates them. With the
``lifecycle`` parameter true the node is a ``rclpy.lifecycle.LifecycleNode`` whose transitions
(``ros2 lifecycle set``, a lifecycle manager) call the node logic's ``configure``/``activate``/
``deactivate``/``cleanup``.
"""

from __future__ import annotations

import array
import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
import rclpy
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from .base import RELIABLE, Lifecycle, QoS, Timer, Transport
from .base import Publisher as PublisherBase

# numpy dtype -> array.array typecode: rclpy keeps numeric sequences (uint8[] too) as
# array.array and takes one of the right typecode as is, instead of checking every element.
_ARRAY_CODES = {np.dtype(t): c for t, c in (("uint8", "B"), ("int8", "b"), ("uint16", "H"),
                ("int16", "h"), ("uint32", "I"), ("int32", "i"), ("uint64", "Q"), ("int64", "q"),
                ("float32", "f"), ("float64", "d"))}  # fmt: skip


def _guarded(callback: Callable[..., None], logger: Any, what: str) -> Callable[..., None]:
    """``callback`` that logs what it raises instead of ending the executor's spin."""

    def run(*args: Any) -> None:
        try:
            callback(*args)
        except Exception as e:  # one bad message must not stop the node
            logger.error(f"{what} failed: {type(e).__name__}: {e}")

    return run


def message_class(msgtype: str) -> Any:
    """'sensor_msgs/msg/Image' -> sensor_msgs.msg.Image (from the sourced ROS workspace)."""
    pkg, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def qos_profile(qos: QoS) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=qos.depth,
        reliability=ReliabilityPolicy.RELIABLE if qos.reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL
        if qos.transient_local
        else DurabilityPolicy.VOLATILE,
    )


class _Publisher(PublisherBase):
    def __init__(self, pub: Any):
        self.pub = pub

    def publish(self, msg: Any) -> None:
        self.pub.publish(msg)


class _Timer(Timer):
    def __init__(self, timer: Any):
        self.timer = timer

    def cancel(self) -> None:
        self.timer.cancel()


class _LifecycleNode(LifecycleNode):
    """A LifecycleNode whose transitions call the managed node logic; an exception fails one."""

    managed: Lifecycle | None = None

    def _transition(self, name: str) -> TransitionCallbackReturn:
        try:
            getattr(self.managed, name)()
        except Exception as e:  # rclpy would swallow it: say why the transition failed
            self.get_logger().error(f"{name} failed: {type(e).__name__}: {e}")
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("configure")

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("activate")

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("deactivate")

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("cleanup")

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("close")


def _lifecycle_parameter(node_name: str) -> bool:
    """The node's ``lifecycle`` parameter (``-p``, params file) before the node exists.

    Overrides are only readable through a node, and this one picks the node class, so a
    short-lived probe node of the same name reads it.
    """
    probe = Node(node_name, start_parameter_services=False, enable_rosout=False)
    try:
        return bool(probe.declare_parameter("lifecycle", False).value)
    finally:
        probe.destroy_node()


class RclpyTransport(Transport):
    """A rclpy node (a LifecycleNode when its ``lifecycle`` parameter is true).

    Initialises rclpy with ``args`` unless it is running, and shuts it down again on
    ``shutdown`` only in that case, so several transports can share one process.
    """

    def __init__(self, node_name: str, args: list[str] | None = None):
        self._owns_rclpy = not rclpy.ok()
        if self._owns_rclpy:
            rclpy.init(args=args)
        self.node = (_LifecycleNode if _lifecycle_parameter(node_name) else Node)(node_name)
        self.logger = self.node.get_logger()  # type: ignore[assignment]
        self.timer_group = MutuallyExclusiveCallbackGroup()
        self.executor = MultiThreadedExecutor()
        self.executor.add_node(self.node)

    def subscribe(
        self, topic: str, msgtype: str, callback: Callable[[Any], None], qos: QoS = RELIABLE
    ) -> None:
        group = MutuallyExclusiveCallbackGroup()
        guarded = _guarded(callback, self.logger, f"callback for {topic}")
        self.node.create_subscription(
            message_class(msgtype), topic, guarded, qos_profile(qos), callback_group=group
        )

    def publisher(self, topic: str, msgtype: str, qos: QoS = RELIABLE) -> PublisherBase:
        return _Publisher(
            self.node.create_publisher(message_class(msgtype), topic, qos_profile(qos))
        )

    def timer(self, period_s: float, callback: Callable[[], None]) -> Timer:
        guarded = _guarded(callback, self.logger, "timer callback")
        return _Timer(self.node.create_timer(period_s, guarded, callback_group=self.timer_group))

    def now_ns(self) -> int:
        return int(self.node.get_clock().now().nanoseconds)

    def param(self, name: str, default: Any, read_only: bool = False) -> Any:
        if not self.node.has_parameter(name):
            if default == []:  # ROS cannot type an empty list: declare it unset, read back []
                descriptor = ParameterDescriptor(dynamic_typing=True, read_only=read_only)
                self.node.declare_parameter(name, None, descriptor)
            else:
                descriptor = ParameterDescriptor(read_only=read_only)
                self.node.declare_parameter(name, default, descriptor)
        value = self.node.get_parameter(name).value
        return [] if value is None and default == [] else value

    def watch_params(self, callback: Callable[[str, Any], None]) -> None:
        def on_set(params: list[Parameter]) -> SetParametersResult:
            for p in params:
                try:
                    callback(p.name, p.value)
                except ValueError as e:
                    return SetParametersResult(successful=False, reason=str(e))
            return SetParametersResult(successful=True)

        self.node.add_on_set_parameters_callback(on_set)

    def set_param(self, name: str, value: Any) -> None:
        (result,) = self.node.set_parameters([Parameter(name, value=value)])
        if not result.successful:
            raise ValueError(f"parameter {name!r} not set: {result.reason}")

    def new(self, msgtype: str, **fields: Any) -> Any:
        msg = message_class(msgtype)()
        for key, value in fields.items():
            if isinstance(value, np.ndarray):
                code = _ARRAY_CODES.get(value.dtype)
                value = array.array(code, value.tobytes()) if code else value.tolist()
            if key == "level" and isinstance(value, int):  # diagnostic_msgs byte field
                value = bytes([value])
            setattr(msg, key, value)
        return msg

    def manage(self, node: Lifecycle) -> None:
        if not isinstance(self.node, _LifecycleNode):
            raise RuntimeError("not a lifecycle node: set its 'lifecycle' parameter to true")
        self.node.managed = node

    def spin(self) -> None:
        try:
            self.executor.spin()
        except ExternalShutdownException:  # rclpy shut down elsewhere (Ctrl-C handler)
            pass

    def shutdown(self) -> None:
        """Stop spin (in any thread) and the timers, destroy the node."""
        self.executor.shutdown()
        self.node.destroy_node()
        if self._owns_rclpy and rclpy.ok():
            rclpy.shutdown()
