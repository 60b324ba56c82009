"""The small interface the node logic is written against; rclpy and Cyclone DDS implement it.

Messages are duck-typed objects with ROS field names (rclpy message classes, or the
``rosbags`` typestore dataclasses for DDS). Node code never imports rclpy or cyclonedds: it
creates messages with ``Transport.new`` and reads fields by name.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class QoS:
    """The subset of ROS 2 QoS the nodes use, mapped by each adapter to its own types."""

    reliable: bool = True
    depth: int = 10
    transient_local: bool = False


SENSOR_DATA = QoS(reliable=False, depth=5)  # rclpy.qos.qos_profile_sensor_data
RELIABLE = QoS(reliable=True, depth=10)  # the ROS default for commands and outputs


class Publisher(ABC):
    @abstractmethod
    def publish(self, msg: Any) -> None: ...


class Timer(ABC):
    @abstractmethod
    def cancel(self) -> None: ...


class Lifecycle(Protocol):
    """A ROS 2 managed node's transitions; one that raises fails its transition."""

    def configure(self) -> None: ...
    def activate(self) -> None: ...
    def deactivate(self) -> None: ...
    def cleanup(self) -> None: ...
    def close(self) -> None:
        """Shutdown from any state."""


class Transport(ABC):
    """subscribe / publish / timer / params / clock / logger, plus a message factory."""

    logger: logging.Logger

    @abstractmethod
    def subscribe(
        self, topic: str, msgtype: str, callback: Callable[[Any], None], qos: QoS = RELIABLE
    ) -> None:
        """Call ``callback(msg)`` for each message on ``topic`` (type: sensor_msgs/msg/Image)."""

    @abstractmethod
    def publisher(self, topic: str, msgtype: str, qos: QoS = RELIABLE) -> Publisher: ...

    @abstractmethod
    def timer(self, period_s: float, callback: Callable[[], None]) -> Timer:
        """Call ``callback`` every ``period_s`` seconds, never concurrently with itself."""

    @abstractmethod
    def now_ns(self) -> int:
        """Current time of the transport's clock (ROS time), nanoseconds."""

    @abstractmethod
    def param(self, name: str, default: Any, read_only: bool = False) -> Any:
        """A node parameter (declared with ``default`` where the transport declares them);
        ``read_only`` ones cannot be set once the node runs."""

    @abstractmethod
    def watch_params(self, callback: Callable[[str, Any], None]) -> None:
        """Call ``callback(name, value)`` before a parameter changes at run time; an exception
        (ValueError) refuses the change, with its message as the reason."""

    @abstractmethod
    def set_param(self, name: str, value: Any) -> None:
        """Set a parameter as ``ros2 param set`` would; raises ValueError if it is refused."""

    @abstractmethod
    def new(self, msgtype: str, **fields: Any) -> Any:
        """A message of ``msgtype``; fields not given get their zero value."""

    @abstractmethod
    def manage(self, node: Lifecycle) -> None:
        """Let the middleware's lifecycle services (ROS 2 managed nodes) drive ``node``."""

    @abstractmethod
    def spin(self) -> None:
        """Process callbacks until ``shutdown``."""

    @abstractmethod
    def shutdown(self) -> None: ...
