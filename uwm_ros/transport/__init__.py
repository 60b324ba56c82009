"""Transports behind one interface (``base.Transport``): rclpy, and Cyclone DDS in ``dds``.

Only the ROS-free interface is imported here; the adapters are imported by name
(``uwm_ros.transport.dds``) so that using one never loads the other's middleware.
"""

from .base import RELIABLE, SENSOR_DATA, Lifecycle, Publisher, QoS, Timer, Transport

__all__ = ["RELIABLE", "SENSOR_DATA", "Lifecycle", "Publisher", "QoS", "Timer", "Transport"]
