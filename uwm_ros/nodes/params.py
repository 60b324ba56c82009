"""The policy node's parameters: type, allowed values, and whether they may change live.

Both transports check values here, so ``enabled: "false"`` (a string) is refused on DDS as
ROS 2 refuses it, instead of being truthy. Only settings the runtime can take between two
ticks are live (``ros2 param set``, ``DDSTransport.set_param``, the ``~/enable`` topic);
the rest are read-only once the node exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TRANSPORT_PARAMS = ("use_sim_time",)  # read by the transport, as every ROS node has it


@dataclass(frozen=True)
class Param:
    """One parameter: its default (which fixes its type), and what else it must satisfy."""

    default: Any
    live: bool = False
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    positive: bool = False


PARAMS: dict[str, Param] = {
    "bundle": Param(""),
    "backend": Param("auto", choices=("auto", "tensorrt", "torch", "onnxruntime")),
    "device": Param(""),
    "precision": Param("fp32", choices=("fp32", "bf16", "fp16")),
    "image_transport": Param("raw", choices=("raw", "compressed")),
    "control_rate": Param(0.0, minimum=0.0),  # ticks per second; 0 = 2x the model's fps
    "execute_steps": Param(0, minimum=0),  # 0 = a quarter of the horizon
    "seam": Param("switch", choices=("switch", "blend")),
    "blend_steps": Param(4, minimum=0),
    "max_age": Param(0.5, live=True, positive=True),
    "max_skew": Param(0.1, live=True, positive=True),
    "action_lower": Param([]),
    "action_upper": Param([]),
    "enabled": Param(False, live=True),
    "publish_trajectory": Param(False),
    "frames_every": Param(0, live=True, minimum=0),
    "sampler": Param("policy", choices=("policy", "joint")),
    "engine_timeout": Param(0.0, live=True, minimum=0.0),
    "lifecycle": Param(False),  # wait for lifecycle transitions instead of starting active
}
DEFAULTS: dict[str, Any] = {name: p.default for name, p in PARAMS.items()}


def check_param(name: str, value: Any) -> Any:
    """``value`` in the parameter's type (ints widen to floats); ValueError naming it if not."""
    if name in TRANSPORT_PARAMS:
        return value
    if name not in PARAMS:
        raise ValueError(f"unknown parameter {name!r}; known: {sorted(PARAMS)}")
    p = PARAMS[name]
    value = _typed(name, p.default, value)
    if p.choices and value not in p.choices:
        raise ValueError(f"parameter {name!r} must be one of {list(p.choices)}, got {value!r}")
    if p.minimum is not None and value < p.minimum:
        raise ValueError(f"parameter {name!r} must be >= {p.minimum}, got {value!r}")
    if p.positive and not value > 0:
        raise ValueError(f"parameter {name!r} must be > 0, got {value!r}")
    return value


def _typed(name: str, default: Any, value: Any) -> Any:
    def refuse(kind: str) -> ValueError:
        got = f"{type(value).__name__} {value!r}"
        return ValueError(f"parameter {name!r} must be {kind}, got {got}")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise refuse("a bool (true/false)")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise refuse("an integer")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise refuse("a number")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise refuse("a string")
        return value
    if not isinstance(value, list | tuple) or any(
        isinstance(v, bool) or not isinstance(v, int | float) for v in value
    ):
        raise refuse("a list of numbers")
    return [float(v) for v in value]
