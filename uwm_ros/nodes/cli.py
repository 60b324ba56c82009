"""``uwm policy``: the policy node from the command line, over Cyclone DDS or rclpy."""

from __future__ import annotations

import argparse
import logging
from typing import Any


def log_to_stderr() -> None:
    """Node logs (INFO and up) on stderr, ROS-style: what a node's console shows."""
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] [%(name)s]: %(message)s")


def _cmd_policy(args: argparse.Namespace) -> int:
    from .policy_node import load_params, main, run

    log_to_stderr()
    params = load_params(args.params_file, args.param, "uwm_policy")  # fail early on typos
    remappings = dict(_remapping(r) for r in args.remap)
    if args.transport == "ros":
        ros_args = ["--ros-args"]
        if args.params_file:
            ros_args += ["--params-file", args.params_file]
        for item in [*args.param, f"bundle={args.bundle}"]:  # later assignments win
            ros_args += ["-p", item.replace("=", ":=", 1)]
        for source, target in remappings.items():
            ros_args += ["-r", f"{source}:={target}"]
        main(ros_args)
        return 0
    if params.get("lifecycle"):
        raise ValueError("parameter 'lifecycle' needs lifecycle services: use --transport ros")
    from uwm_ros.transport.dds import DDSTransport

    params["bundle"] = args.bundle
    transport = DDSTransport("uwm_policy", params=params, remappings=remappings)
    transport.logger.info("uwm_policy running over DDS (domain %d)", transport.domain_id)
    run(transport)
    return 0


def _remapping(text: str) -> tuple[str, str]:
    source, sep, target = text.partition(":=")
    if not sep or not source or not target:
        raise ValueError(f"remapping {text!r} is not FROM:=TO")
    return source, target


def register(sub: Any) -> None:
    """Add ``policy``: the node's module (and torch) load only when the command runs."""
    p = sub.add_parser(
        "policy",
        help="run the policy node (Cyclone DDS without ROS, or rclpy)",
        description="Run the UWM policy node. Over DDS it speaks the ROS 2 wire format, so ROS 2 "
        "nodes on the same ROS_DOMAIN_ID see its topics; no ROS install is needed.",
        epilog="examples:\n  uwm policy --bundle bundles/small --transport dds -p enabled=true\n"
        "  uwm policy --bundle B --params-file config/policy.yaml -p backend=onnxruntime\n"
        "  uwm policy --bundle B -r camera/front/image_raw:=/cam0/image_raw",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--bundle", required=True, help="policy bundle directory (uwm export)")
    p.add_argument("--transport", choices=("dds", "ros"), default="dds")
    p.add_argument("--params-file", help="ROS parameter YAML (see config/policy.yaml)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "-r",
        "--remap",
        action="append",
        default=[],
        metavar="FROM:=TO",
        help="topic remapping, e.g. joint_states:=/arm/joint_states",
    )
    p.set_defaults(func=_cmd_policy)
