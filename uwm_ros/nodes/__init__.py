"""Thin ROS-facing programs over the transport interface: policy node, sim bridge, bag tools."""
