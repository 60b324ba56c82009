"""The fault suite: the policy node in its own process, faults injected over loopback DDS.

A ``Rig`` runs the simulated world on the tester's side: /clock (the node uses sim time, so
time can jump back), two cameras at 10 Hz with +-5 ms stamp jitter and each frame's stamp in
its first pixel, and /joint_states at 100 Hz with q(t) known exactly. Every ActionChunk the
node publishes is checked against the oracle (``fault_engine``) evaluated on the true inputs
at the chunk's stamp: an action that differs is a *wrong action*, whenever it comes. Each
``Scenario`` then injects one fault for a while and records the diagnostic levels seen, the
chunks published when none may be (after a grace period for the fault to be detected), and
whether chunks and an OK diagnostic come back once the fault clears.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fault_engine import ACTIONS, CAMERAS, FPS, JOINTS, OracleEngine, stamp_pixel, write_bundle

from uwm_ros.conversions import image_msg, joint_state_msg, seconds
from uwm_ros.nodes.policy_node import PolicyNode
from uwm_ros.runtime import ERROR, LEVEL_NAMES, OK, STALE, WARN
from uwm_ros.transport.base import SENSOR_DATA
from uwm_ros.transport.dds import DDSTransport

DT = 1.0 / FPS
STALENESS = 0.5  # how old a joint's newest value may rightly be: the node's max_age
NODE_PARAMS = {
    "enabled": True,
    "use_sim_time": True,
    "execute_steps": 2,
    "seam": "switch",
    "max_age": 0.5,
    "max_skew": 0.3,
    "engine_timeout": 0.5,
    "control_rate": 20.0,
    "publish_trajectory": True,
    "action_lower": [-100.0] * 3,
    "action_upper": [100.0] * 3,
}


def q_true(t: float) -> np.ndarray:
    return np.array([math.sin(0.2 * t), math.cos(0.2 * t)])


@dataclass
class Feed:
    """What the world publishes; scenarios change these fields to inject faults."""

    joints: str = "ok"  # ok | nan | short | unknown | split | 1khz | off
    cameras: tuple[str, ...] = CAMERAS  # cameras that publish
    encoding: str = "rgb8"
    size: tuple[int, int] = (48, 64)


class Rig:
    """The node process, the world it sees, and everything it publishes, checked."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.bundle = write_bundle(workdir / "bundle")
        self.control = workdir / "engine_control"
        self.set_engine("")
        self.feed = Feed()
        self.offset = 1000.0 - time.monotonic()  # sim time = monotonic + offset
        self.lock = threading.Lock()
        # (wall time, msg, the oracle agrees, stamped within [-2 s, +0.5 s] of sim time)
        self.chunks: list[tuple[float, Any, bool, bool]] = []
        self.diags: list[tuple[float, int, str]] = []
        self.stops = 0
        self.wrong: list[str] = []  # why each wrong chunk was wrong
        self.frame_ms: set[int] = set()  # stamps of every published camera frame, in ms
        script = Path(__file__).with_name("fault_engine.py")
        args = [str(self.bundle), str(self.control), json.dumps(NODE_PARAMS)]
        self.proc = subprocess.Popen(
            [sys.executable, str(script), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.log: list[str] = []
        threading.Thread(target=self._read_log, daemon=True).start()
        self.t = DDSTransport("fault_world")
        self.pub_clock = self.t.publisher("/clock", "rosgraph_msgs/msg/Clock", SENSOR_DATA)
        self.pub_images = {
            c: self.t.publisher(f"/camera/{c}/image_raw", "sensor_msgs/msg/Image", SENSOR_DATA)
            for c in CAMERAS
        }
        self.pub_joints = self.t.publisher("/joint_states", "sensor_msgs/msg/JointState")
        self.pub_enable = self.t.publisher("/uwm_policy/enable", "std_msgs/msg/Bool")
        self.t.subscribe("/uwm_policy/action_chunk", "uwm_ros/msg/ActionChunk", self._on_chunk)
        self.t.subscribe("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", self._on_diag)
        self.rng = np.random.default_rng(0)
        self.t.timer(0.01, self._publish_clock_and_joints)
        self.t.timer(DT, self._publish_cameras)
        threading.Thread(target=self.t.spin, daemon=True).start()

    # ----- the world ---------------------------------------------------------------------------
    def now(self) -> float:
        return time.monotonic() + self.offset

    def jump_back(self, seconds_: float) -> None:
        self.offset -= seconds_

    def set_engine(self, fault: str) -> None:
        tmp = self.control.with_suffix(".tmp")
        tmp.write_text(fault)
        tmp.replace(self.control)

    def enable(self, on: bool) -> None:
        self.pub_enable.publish(self.t.new("std_msgs/msg/Bool", data=on))

    def _publish_clock_and_joints(self) -> None:
        now = self.now()
        sec, nsec = divmod(int(now * 1e9), 10**9)
        clock = self.t.new("builtin_interfaces/msg/Time", sec=sec, nanosec=nsec)
        self.pub_clock.publish(self.t.new("rosgraph_msgs/msg/Clock", clock=clock))
        mode = self.feed.joints
        stamps = [now - k * 0.001 for k in range(9, -1, -1)] if mode == "1khz" else [now]
        for t in stamps:
            for names, values in self._joint_messages(mode, q_true(t)):
                msg = joint_state_msg(self.t, names, values, t)
                self.pub_joints.publish(msg)

    @staticmethod
    def _joint_messages(mode: str, q: np.ndarray) -> list[tuple[tuple[str, ...], np.ndarray]]:
        if mode == "off":
            return []
        if mode == "split":  # an arm and a gripper publisher on one topic
            return [(("joint0",), q[:1]), (("finger", "joint1"), np.array([9.0, q[1]]))]
        if mode == "nan":
            return [(JOINTS, np.array([q[0], np.nan]))]
        if mode == "short":
            return [(JOINTS, q[:1])]
        if mode == "unknown":
            return [(("shoulder", "elbow"), q)]
        return [(("extra", *JOINTS[::-1]), np.array([7.0, q[1], q[0]]))]  # any order

    def _publish_cameras(self) -> None:
        stamp = self.now() + self.rng.uniform(-0.005, 0.005)
        h, w = self.feed.size
        rgb = np.zeros((h, w, 3), np.uint8)
        rgb[0, 0] = stamp_pixel(stamp)
        self.frame_ms.add(int(round(stamp * 1000)))
        for camera in self.feed.cameras:
            msg = image_msg(self.t, rgb, stamp, camera)
            if self.feed.encoding != "rgb8":
                msg.encoding = self.feed.encoding
            self.pub_images[camera].publish(msg)

    # ----- what the node publishes -------------------------------------------------------------
    def _on_chunk(self, msg: Any) -> None:
        with self.lock:
            if msg.mode == "stop":
                self.stops += 1
            why = "" if msg.mode == "stop" else self.agrees(msg)
            good = not why
            if why:
                self.wrong.append(f"sequence {msg.sequence}: {why}")
            timely = -2.0 <= seconds(msg.header.stamp) - self.now() <= 0.5
            self.chunks.append((time.monotonic(), msg, good, timely))

    def _frames_agree(self, gap: float, stamp: float) -> bool:
        """Two published frames ``gap`` periods apart, each within half a period of its time
        (stamp - dt and stamp): what the nearest rule may pick, dropped frames and all; or
        the same frame twice (a padded history start)."""
        if gap == 0.0:
            return True
        gap_ms = int(round(gap * DT * 1000))
        ms = set(self.frame_ms)  # a copy: the camera timer adds to it meanwhile
        return any(
            abs(f2 - stamp * 1000) <= DT * 500
            and abs(f2 - gap_ms - (stamp - DT) * 1000) <= DT * 500
            and (f2 - gap_ms) in ms
            for f2 in ms
        )

    def agrees(self, msg: Any) -> str:
        """The chunk's actions are the oracle's on inputs the node may rightly have used at its
        stamp: the frames within half a period of one period apart, the nearest rule (or the
        same frame, a padded history start); per joint a
        newest value up to ``STALENESS`` old (merged publishers, late samples) and an older one
        within half a period of stamp - dt (the nearest rule) or equal to it (padding).
        Returns why not ("" when it agrees)."""
        data = np.asarray(msg.data, np.float64).reshape(msg.horizon, msg.action_dim)
        if list(msg.names) != list(ACTIONS) or not np.isfinite(data).all():
            return f"names {list(msg.names)} or non-finite"
        stamp = seconds(msg.header.stamp)
        if not (data[:, 2] == data[0, 2]).all() or not self._frames_agree(data[0, 2], stamp):
            return f"history frames {data[0, 2]:.3f} periods apart"
        offset = int(round((seconds(msg.start) - stamp) / msg.dt))
        steps = np.arange(offset, offset + msg.horizon)[:, None, None] + 1.0
        s1 = np.linspace(stamp - STALENESS, stamp, 16)
        s0 = np.linspace(stamp - DT - DT / 2 - STALENESS, stamp - DT + DT / 2, 24)
        for j in range(len(JOINTS)):
            q1 = np.array([q_true(t)[j] for t in s1])[None, :, None]
            q0 = np.array([q_true(t)[j] for t in s0])[None, None, :]
            rows = q1 + steps * (q1 - q0)  # (rows, s1, s0) every combination
            padded = np.broadcast_to(q1, (msg.horizon, len(s1), 1))  # q0 == q1
            rows = np.concatenate([rows, padded], axis=2).reshape(msg.horizon, -1)
            low, high = rows.min(axis=1) - 1e-3, rows.max(axis=1) + 1e-3
            if not ((low <= data[:, j]) & (data[:, j] <= high)).all():
                got, lo, hi = (x.round(4).tolist() for x in (data[:, j], low, high))
                return f"{JOINTS[j]}: {got} outside {lo}..{hi} (offset {offset})"
        return ""

    def _on_diag(self, msg: Any) -> None:
        status = msg.status[0]
        with self.lock:
            self.diags.append((time.monotonic(), int(status.level), str(status.message)))

    def _read_log(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line.rstrip())

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.t.shutdown()

    # ----- queries -----------------------------------------------------------------------------
    def chunks_between(self, start: float, end: float) -> list[tuple[float, Any, bool, bool]]:
        with self.lock:
            return [c for c in self.chunks if start <= c[0] <= end and c[1].mode != "stop"]

    def levels_between(self, start: float, end: float) -> list[tuple[int, str]]:
        with self.lock:
            return [(lvl, m) for t, lvl, m in self.diags if start <= t <= end]

    def wait(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def healthy_since(self, start: float) -> bool:
        """A right chunk and an OK diagnostic, both after ``start``."""
        chunks = self.chunks_between(start, math.inf)
        levels = self.levels_between(start, math.inf)
        ok = any(lvl == OK and "disabled" not in m for lvl, m in levels)
        return ok and any(good and timely for _, _, good, timely in chunks)


@dataclass
class Scenario:
    """One fault: how to start and clear it, what the node must say (one of ``expect``, with
    ``text`` in the message), and whether it must stop publishing (after ``grace`` seconds to
    detect it: max_age 0.5 s, a diagnostics round, slack for a loaded machine)."""

    name: str
    start: Callable[[Rig], None]
    clear: Callable[[Rig], None]
    expect: tuple[int, ...]
    silent: bool
    text: str = ""
    grace: float = 1.2
    duration: float = 2.5


@dataclass
class Result:
    name: str
    expected: str
    seen: list[str]
    chunks_in_fault: int
    wrong_actions: int
    recovered_s: float | None
    stop_sent: bool | None = None  # silent faults: a stop went out

    @property
    def handled(self) -> bool:
        return (
            bool(set(self.expected.split("|")) & set(self.seen))
            and self.chunks_in_fault == 0
            and self.stop_sent is not False
            and self.wrong_actions == 0
            and self.recovered_s is not None
        )


def _set(attr: str, value: Any) -> Callable[[Rig], None]:
    return lambda rig: setattr(rig.feed, attr, value)


def _restore(rig: Rig) -> None:
    rig.feed = Feed()


W, S, E = WARN, STALE, ERROR
SCENARIOS = [
    Scenario("nan joint position", _set("joints", "nan"), _restore, (W, S), True, "position[1]"),
    Scenario("short position array", _set("joints", "short"), _restore, (W, S), True, "position"),
    Scenario("unknown joint names", _set("joints", "unknown"), _restore, (S,), True, "joints"),
    Scenario("two joint publishers", _set("joints", "split"), _restore, (OK,), False),
    Scenario("joints at 1 kHz", _set("joints", "1khz"), _restore, (OK,), False),
    Scenario("image size change", _set("size", (24, 32)), _restore, (W, S), False, "size"),
    Scenario("unsupported image encoding", _set("encoding", "32FC1"), _restore, (W, S), True,
             "encoding"),
    Scenario("camera stall", _set("cameras", ("left",)), _restore, (S,), True, "right"),
    Scenario("joint stall", _set("joints", "off"), _restore, (S,), True, "joints"),
    Scenario("clock jumps back 100 s", lambda r: r.jump_back(100.0), lambda r: None, (W,), False,
             "backwards"),
    Scenario("engine hang", lambda r: r.set_engine("hang"), lambda r: r.set_engine(""), (E,),
             True, "deadline"),
    Scenario("engine crash", lambda r: r.set_engine("crash"), lambda r: r.set_engine(""), (E,),
             True, "injected engine crash", grace=0.8),
    Scenario("disable mid-chunk (~/enable)", lambda r: r.enable(False), lambda r: r.enable(True),
             (OK,), True, "disabled", grace=0.8),
]  # fmt: skip


def run_scenario(rig: Rig, s: Scenario, warmup: float = 180.0) -> Result:
    """Healthy first; inject; watch; clear; wait for recovery."""
    ready = time.monotonic()
    if not rig.wait(lambda: rig.healthy_since(ready), warmup):
        raise AssertionError(f"{s.name}: the node is not healthy before the fault")
    begin = time.monotonic()
    stops_before = rig.stops
    s.start(rig)
    time.sleep(s.duration)
    end = time.monotonic()
    s.clear(rig)
    cleared = time.monotonic()
    recovered = rig.wait(lambda: rig.healthy_since(cleared), 30.0)
    seen = rig.levels_between(begin, end + 0.5)
    seen_names = sorted({LEVEL_NAMES[lvl] for lvl, m in seen if s.text in m})
    during = rig.chunks_between(begin + s.grace, end) if s.silent else []
    # wrong: not the oracle's actions, or (once the node had time to notice) stamped outside
    # the current time line: an old plan, or inputs from before time went back
    wrong = [
        c
        for c in rig.chunks_between(begin, time.monotonic())
        if not c[2] or (not c[3] and c[0] > begin + s.grace)
    ]
    return Result(
        s.name,
        "|".join(LEVEL_NAMES[level] for level in s.expect),
        seen_names,
        len(during),
        len(wrong),
        time.monotonic() - cleared if recovered else None,
        rig.stops > stops_before if s.silent else None,
    )


def bad_parameter_types(workdir: Path) -> Result:
    """In process (types need no wire): wrong types at start and set live are refused."""
    engine = OracleEngine(write_bundle(workdir / "bundle"), workdir / "control")
    refused, tried = 0, 0
    bad = DDSTransport("uwm_policy", params={"enabled": "false"})
    try:
        tried += 1
        PolicyNode(bad, engine)
    except ValueError as e:
        refused += "'enabled' must be a bool" in str(e)
    finally:
        bad.shutdown()
    good = DDSTransport("uwm_policy", params={"enabled": False, "execute_steps": 2})
    node = PolicyNode(good, engine)
    try:
        for name, value in (("enabled", "false"), ("max_age", "1"), ("frames_every", 1.5),
                            ("execute_steps", 3), ("sampler", "video")):  # fmt: skip
            tried += 1
            try:
                good.set_param(name, value)
            except ValueError:
                refused += 1
        unchanged = node.runtime is not None and node.runtime.cfg.enabled is False
        good.set_param("enabled", True)  # a right one goes through
        applied = node.runtime is not None and node.runtime.cfg.enabled is True
    finally:
        node.close()
        good.shutdown()
    ok = refused == tried and unchanged and applied
    return Result("bad parameter types", "refused", ["refused"] if ok else [], 0, 0, 0.0)


def format_table(results: list[Result]) -> str:
    rows = [
        (
            "fault",
            "expected",
            "levels seen",
            "chunks in fault",
            "stop sent",
            "wrong actions",
            "recovered",
            "handled",
        )
    ]
    for r in results:
        recovered = "no" if r.recovered_s is None else f"{r.recovered_s:.1f} s"
        stop = "-" if r.stop_sent is None else "yes" if r.stop_sent else "NO"
        rows.append(
            (
                r.name,
                r.expected,
                ",".join(r.seen),
                str(r.chunks_in_fault),
                stop,
                str(r.wrong_actions),
                recovered,
                "yes" if r.handled else "NO",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    handled = sum(r.handled for r in results)
    wrong = sum(r.wrong_actions for r in results)
    lines.append(f"faults tried {len(results)}, handled {handled}, wrong actions published {wrong}")
    return "\n".join(lines)
