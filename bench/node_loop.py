"""Policy node overhead over loopback DDS: message-in -> chunk-out latency minus model time, and
control-timer jitter while inference runs. Baseline in the same run: the plain DDS latency of
the same ActionChunk between two participants, without the node.

The node runs on a random-weight bundle (torch backend) with execute_steps=1 and a 200 Hz
control timer, so a new inference starts as soon as the previous one is collected.

Examples:
    python bench/node_loop.py                  # small preset, 200 chunks
    python bench/node_loop.py --preset small --chunks 50
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

LOOPBACK = (
    '<CycloneDDS><Domain Id="any"><General><Interfaces><NetworkInterface address="127.0.0.1"/>'
    "</Interfaces><AllowMulticast>false</AllowMulticast></General><Discovery>"
    '<ParticipantIndex>auto</ParticipantIndex><Peers><Peer address="127.0.0.1"/></Peers>'
    "</Discovery></Domain></CycloneDDS>"
)
os.environ.setdefault("CYCLONEDDS_URI", LOOPBACK)
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(0, 100)))

from policy_latency import build_model, export_random_bundle  # noqa: E402

from uwm_ros.conversions import header, image_msg, joint_state_msg, seconds  # noqa: E402
from uwm_ros.nodes.policy_node import PolicyNode  # noqa: E402
from uwm_ros.transport.base import SENSOR_DATA  # noqa: E402
from uwm_ros.transport.dds import DDSTransport  # noqa: E402


def percentiles(x: list[float]) -> dict[str, float]:
    return {"p50": float(np.percentile(x, 50)), "p99": float(np.percentile(x, 99)), "n": len(x)}


def baseline_latency(n: int) -> list[float]:
    """ms from publish to receive of an ActionChunk between two plain participants."""
    a, b = DDSTransport("bench_pub"), DDSTransport("bench_sub")
    got: list[float] = []
    b.subscribe(
        "/bench/chunk",
        "uwm_ros/msg/ActionChunk",
        lambda m: got.append(time.time() - seconds(m.header.stamp)),
    )
    pub = a.publisher("/bench/chunk", "uwm_ros/msg/ActionChunk")
    deadline = time.monotonic() + 10
    while pub.matched() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    for _ in range(n):
        data = np.zeros(16 * 7, np.float32)
        pub.publish(a.new("uwm_ros/msg/ActionChunk", header=header(a, time.time()), data=data))
        b.spin_once(0.1)
    a.shutdown()
    b.shutdown()
    return [x * 1e3 for x in got]


def node_latency(bundle: Path, chunks: int) -> tuple[list[float], list[float], list[float]]:
    """Through the node: (chunk-out minus inputs-in minus model ms, the node's own overhead ms,
    control-timer periods ms).

    The tester sends one set of inputs (cameras, then joints, all stamped ``now``) and waits for
    the chunk built from them. With execute_steps=1 the node also re-runs on the last inputs, so
    the first figure includes queueing behind that inference. The second is measured inside the
    node: inference submitted -> chunk published, minus the engine's own time (thread handoffs,
    safety checks, scheduling, message building, DDS write). A 200 Hz probe timer on the node's
    transport measures timer jitter while inference runs on the engine thread.
    """
    params = {
        "bundle": str(bundle),
        "backend": "torch",
        "enabled": True,
        "execute_steps": 1,
        "control_rate": 200.0,
        "max_age": 2.0,
        "max_skew": 1.0,
    }
    node_t = DDSTransport("uwm_policy", params=params)
    node = PolicyNode(node_t)
    rt, marks = node.runtime, {"submit": 0.0, "done_submit": 0.0, "model": 0.0}
    own: list[float] = []
    submit, predict, publish = rt._submit, rt.engine.predict, node.publish

    def timed_submit(*a):  # type: ignore[no-untyped-def]
        marks["submit"] = time.perf_counter()
        submit(*a)

    def timed_predict(*a, **k):  # type: ignore[no-untyped-def]
        submitted, t0 = marks["submit"], time.perf_counter()
        out = predict(*a, **k)
        # set when the result is ready; the next request is submitted before this chunk is
        # published, so "submit" alone would already belong to the next inference
        marks["done_submit"], marks["model"] = submitted, time.perf_counter() - t0
        return out

    def timed_publish(chunk) -> None:  # type: ignore[no-untyped-def]
        publish(chunk)
        spent = time.perf_counter() - marks["done_submit"] - marks["model"]
        own.append(spent * 1e3)

    # instance attributes win over the methods: the node and runtime look these up per call
    rt._submit, rt.engine.predict, node.publish = timed_submit, timed_predict, timed_publish  # type: ignore[method-assign]
    ticks: list[float] = []
    node_t.timer(0.005, lambda: ticks.append(time.perf_counter()))
    threading.Thread(target=node_t.spin, daemon=True).start()
    tester = DDSTransport("bench_tester")
    received: dict[float, float] = {}  # obs stamp -> ms after send minus model ms

    def on_chunk(msg) -> None:  # type: ignore[no-untyped-def]
        received[round(seconds(msg.header.stamp), 4)] = time.time() * 1e3 - msg.inference_ms

    tester.subscribe("/uwm_policy/action_chunk", "uwm_ros/msg/ActionChunk", on_chunk)
    cfg = node.runtime.engine.cfg
    cams = {
        c: tester.publisher(f"/camera/{c}/image_raw", "sensor_msgs/msg/Image", SENSOR_DATA)
        for c in cfg.cameras
    }
    joints = tester.publisher("/joint_states", "sensor_msgs/msg/JointState")
    names = node.runtime.joint_names
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    overhead = []
    for _ in range(chunks + 3):
        now = time.time()
        stamp = round(seconds(header(tester, now).stamp), 4)  # the chunk's stamp, +- float noise
        # the history takes each frame from within half a period of its time: inputs one
        # model period back too (dropped as out of order when the last ones are newer)
        for t in (now - node.runtime.dt, now):
            for cam, pub in cams.items():
                pub.publish(image_msg(tester, frame, t, cam))
            joints.publish(joint_state_msg(tester, names, np.zeros(len(names)), t))
        deadline = time.monotonic() + 10
        while stamp not in received and time.monotonic() < deadline:
            tester.spin_once(0.01)
        if stamp in received:
            overhead.append(received[stamp] - now * 1e3)
        time.sleep(0.05)
    node.close()
    node_t.shutdown()
    tester.shutdown()
    return overhead[3:], own[3:], list(np.diff(ticks) * 1e3)


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        description=doc.split("\n\n")[0],
        epilog=doc.split("\n\n")[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--preset", default="small", choices=("small", "paper"))
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("bench/results/node_loop.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = export_random_bundle(build_model(args.preset, "cpu"), Path(tmp), ["fp32"])
        overhead, own, periods = node_latency(bundle, args.chunks)
    base = baseline_latency(200)
    result = {
        "benchmark": "node_loop",
        "preset": args.preset,
        "baseline_dds_chunk_latency_ms": percentiles(base),
        "node_in_to_out_minus_model_ms": percentiles(overhead),
        "node_own_overhead_ms": percentiles(own),
        "control_timer_period_ms": percentiles(periods),
        "control_timer_target_ms": 5.0,
        "control_timer_jitter_ms_p99": float(np.percentile(np.abs(np.array(periods) - 5.0), 99)),
    }
    print(f"\nnode loop over loopback DDS (preset {args.preset}, {len(overhead)} chunks)")
    print(f"{'measure':<44}{'p50 ms':>9}{'p99 ms':>9}")
    for key in (
        "baseline_dds_chunk_latency_ms",
        "node_in_to_out_minus_model_ms",
        "node_own_overhead_ms",
        "control_timer_period_ms",
    ):
        print(f"{key:<44}{result[key]['p50']:>9.2f}{result[key]['p99']:>9.2f}")
    print(f"control timer |period - 5 ms| p99: {result['control_timer_jitter_ms_p99']:.2f} ms")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
