"""The RViz config under a namespace: its absolute topic names moved below ``/<namespace>``.

RViz displays name absolute topics, so a node launched in a namespace would leave the shipped
config looking at topics nobody publishes; the launch file writes this copy instead.
"""

from __future__ import annotations

import re

_TOPIC_VALUE = re.compile(r"^(\s*Value: )(/\S+)$", re.M)


def namespaced_rviz(text: str, namespace: str) -> str:
    """``text`` (an .rviz YAML) with every absolute topic value prefixed by ``namespace``."""
    ns = namespace.strip("/")
    if not ns:
        return text
    return _TOPIC_VALUE.sub(lambda m: f"{m.group(1)}/{ns}{m.group(2)}", text)
