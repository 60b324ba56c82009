"""Conversion throughput and memory vs a raw rosbags read + deserialize of the same bag.

A generated bag: two 96x96 rgb8 cameras at 30 Hz and 7-joint states at 200 Hz, for ``--seconds``
and ``--scale`` times as long. For each bag, each measurement runs in a fresh subprocess (so peak
RSS is that job's alone): the baseline reads every message and deserialises it with rosbags;
``uwm convert`` (one worker, no progress bars) converts the bag at each ``--fps``. The round
(baseline, then each conversion) runs ``--repeat`` times, interleaved so that load from other
processes falls on both sides alike; each side's median run is reported. Throughput is bag
messages per wall second; CPU seconds count every thread and child process (the frame writer,
``2nd proc`` yes, runs beside the reader when a core is free). The ratio is against the
baseline on the same bag in this run (targets on the long bag: >= 1.0x at 10 fps, >= 0.7x at
30 fps), and peak RSS (the larger of the process and its children) should not grow with the
bag (streaming). Prints a table, writes JSON.

Examples:
    python bench/convert_throughput.py
    python bench/convert_throughput.py --seconds 10 --scale 5 --fps 10,30 --storage mcap
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CAMERA_HZ, JOINT_HZ, SIZE = 30, 200, 96
HEADER = ("bag s", "msgs", "fps", "frames", "raw msg/s", "conv msg/s", "ratio", "CPU s raw/conv",
          "raw RSS MB", "conv RSS MB", "2nd proc")  # fmt: skip
TABLE = "{:>6} {:>7} {:>4} {:>6} {:>10} {:>10} {:>6} {:>14} {:>10} {:>11} {:>8}"
JOINTS = [f"joint_{i}" for i in range(7)]


def write_bench_bag(path: Path, seconds: float, storage: str) -> int:
    """The benchmark bag; returns its message count."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    T = ts.types
    rng = np.random.default_rng(0)
    # Textured frames (a gradient plus noise) compress like camera images, not like flat colour.
    base = np.linspace(0, 200, SIZE * SIZE * 3).reshape(SIZE, SIZE, 3).astype(np.uint8)
    frames = [(base + rng.integers(0, 40, base.shape)).astype(np.uint8).ravel() for _ in range(16)]
    events = [(int(i * 1e9 / CAMERA_HZ), "cam", i) for i in range(int(seconds * CAMERA_HZ))]
    events += [(int(i * 1e9 / JOINT_HZ), "joints", i) for i in range(int(seconds * JOINT_HZ))]
    events.sort()
    t0 = 1_700_000_000 * 10**9
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {
            name: writer.add_connection(topic, msgtype, typestore=ts)
            for name, topic, msgtype in [
                ("front", "/front/image_raw", "sensor_msgs/msg/Image"),
                ("wrist", "/wrist/image_raw", "sensor_msgs/msg/Image"),
                ("joints", "/joint_states", "sensor_msgs/msg/JointState"),
            ]
        }
        for t, kind, i in events:
            stamp = t0 + t
            header = T["std_msgs/msg/Header"](
                stamp=T["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9),
                frame_id="",
            )
            if kind == "cam":
                for c, cam in enumerate(("front", "wrist")):
                    msg = T["sensor_msgs/msg/Image"](
                        header=header, height=SIZE, width=SIZE, encoding="rgb8", is_bigendian=0,
                        step=SIZE * 3, data=frames[(i + c) % len(frames)],
                    )  # fmt: skip
                    writer.write(
                        conns[cam], stamp + 3_000_000, ts.serialize_cdr(msg, msg.__msgtype__)
                    )
            else:
                q = np.sin(np.arange(7) + t / 1e9)
                msg = T["sensor_msgs/msg/JointState"](
                    header=header, name=JOINTS, position=q, velocity=q, effort=np.zeros(0)
                )
                writer.write(
                    conns["joints"], stamp + 500_000, ts.serialize_cdr(msg, msg.__msgtype__)
                )
    return len(events) + int(seconds * CAMERA_HZ)


# ----- children (one measurement each, in a fresh process) -------------------------------------
def child_raw(bag: Path) -> dict[str, Any]:
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    start, cpu, n = time.perf_counter(), time.process_time(), 0
    with Reader(bag) as reader:
        for conn, _, raw in reader.messages():
            ts.deserialize_cdr(raw, conn.msgtype)
            n += 1
    return {"messages": n, "seconds": time.perf_counter() - start,
            "cpu_s": time.process_time() - cpu}  # fmt: skip


def child_convert(bag: Path, fps: float, out: Path) -> dict[str, Any]:
    import yaml

    from uwm_training.data.config import load_config
    from uwm_training.data.convert import bag_jobs, build_dataset

    cfg_path = out.with_suffix(".yaml")
    cfg_path.write_text(
        yaml.safe_dump({
            "fps": fps, "image_size": SIZE, "max_skew": 0.05,
            "cameras": {"front": {"topic": "/front/image_raw"},
                        "wrist": {"topic": "/wrist/image_raw"}},
            "joints": {"topic": "/joint_states", "names": JOINTS, "velocity": True},
            "action": {"source": "next_positions"},
        })
    )  # fmt: skip
    cfg = load_config(cfg_path)
    start, cpu = time.perf_counter(), time.process_time()
    (report,) = build_dataset(bag_jobs([bag], cfg), out, workers=1, progress=False)
    seconds = time.perf_counter() - start
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the frame writer, if it ran
    return {"messages": report["messages"], "seconds": seconds, "frames": report["frames"],
            "cpu_s": time.process_time() - cpu + children.ru_utime + children.ru_stime,
            "second_process": children.ru_utime > 0,
            "child_peak_rss_mb": children.ru_maxrss / 1024}  # fmt: skip


def measure(args: list[str]) -> dict[str, Any]:
    """Run one child measurement in a fresh interpreter; adds its peak RSS. The disk is synced
    first: the last conversion's 0.5 GB would otherwise be written back during this one."""
    os.sync()
    run = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True
    )
    return json.loads(run.stdout.strip().splitlines()[-1])


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median wall time, with every run's seconds and the highest peak RSS."""
    run = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    peak = max(max(r["peak_rss_mb"], r.get("child_peak_rss_mb", 0)) for r in runs)
    second = sum(r.get("second_process", False) for r in runs)
    return {**run, "runs_s": [r["seconds"] for r in runs], "peak_rss_mb": peak,
            "second_process_runs": second}  # fmt: skip


def measure_bag(
    bag: Path, seconds: float, rates: list[float], repeat: int, tmp: Path
) -> list[dict[str, Any]]:
    """Table rows of one bag: ``repeat`` rounds of the baseline, then a conversion per rate."""
    raw_runs: list[dict[str, Any]] = []
    conv_runs: dict[float, list[dict[str, Any]]] = {fps: [] for fps in rates}
    for _ in range(repeat):
        raw_runs.append(measure(["raw", str(bag)]))
        for fps in rates:
            out = tmp / f"ds_{seconds:g}_{fps:g}"
            shutil.rmtree(out, ignore_errors=True)
            conv_runs[fps].append(measure(["convert", str(bag), str(fps), str(out)]))
    raw, rows = median_run(raw_runs), []
    for fps in rates:
        conv = median_run(conv_runs[fps])
        rows.append({
            "bag_s": seconds, "messages": raw["messages"], "fps": fps, "frames": conv["frames"],
            "raw_msgs_per_s": raw["messages"] / raw["seconds"],
            "convert_msgs_per_s": conv["messages"] / conv["seconds"],
            "ratio": raw["seconds"] / conv["seconds"],
            "raw_cpu_s": raw["cpu_s"], "convert_cpu_s": conv["cpu_s"],
            "raw_peak_rss_mb": raw["peak_rss_mb"], "convert_peak_rss_mb": conv["peak_rss_mb"],
            "raw_runs_s": raw["runs_s"], "convert_runs_s": conv["runs_s"],
            "second_process_runs": conv["second_process_runs"], "repeat": repeat,
        })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the short bag")
    parser.add_argument("--scale", type=int, default=10, help="the long bag is this much longer")
    parser.add_argument("--fps", default="10,30", help="dataset frame rates to convert at")
    parser.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of measurements per bag")
    parser.add_argument("--out", type=Path, default=Path("bench/results/convert_throughput.json"))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, bag, *rest = args.child
        result = (child_raw(Path(bag)) if kind == "raw"
                  else child_convert(Path(bag), float(rest[0]), Path(rest[1])))  # fmt: skip
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in (args.seconds, args.seconds * args.scale):
            bag = Path(tmp) / f"bag_{seconds:g}s"
            t = time.perf_counter()
            count = write_bench_bag(bag, seconds, args.storage)
            print(f"wrote {bag.name}: {count} messages in {time.perf_counter() - t:.1f} s")
            rates = [float(f) for f in args.fps.split(",")]
            rows += measure_bag(bag, seconds, rates, args.repeat, Path(tmp))
    print(TABLE.format(*HEADER))
    for r in rows:
        print(TABLE.format(
            f"{r['bag_s']:g}", r["messages"], f"{r['fps']:g}", r["frames"],
            f"{r['raw_msgs_per_s']:.0f}", f"{r['convert_msgs_per_s']:.0f}", f"{r['ratio']:.2f}x",
            f"{r['raw_cpu_s']:.2f}/{r['convert_cpu_s']:.2f}",
            f"{r['raw_peak_rss_mb']:.0f}", f"{r['convert_peak_rss_mb']:.0f}",
            f"{r['second_process_runs']}/{r['repeat']}",
        ))  # fmt: skip
    load = os.getloadavg()[0]
    print(f"(load average {load:.1f} on {os.cpu_count()} cores: other processes share the CPU)")
    meta = {
        "python": platform.python_version(), "cores": os.cpu_count(), "load": load,
        "storage": args.storage, "camera_hz": CAMERA_HZ, "joint_hz": JOINT_HZ, "size": SIZE,
        "repeat": args.repeat,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
