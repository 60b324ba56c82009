"""The fault suite as a report: each fault injected into the policy node (its own process,
loopback DDS), the node's answer tabulated: diagnostic levels seen, chunks published while it
had to stop, stop messages, wrong actions (against an oracle engine whose right answer is
known), time to recover. The baseline in the same run is the fault-free stretch before each
fault: it must show chunks, an OK diagnostic and no wrong action, or the fault is not tried.

Examples:
    python bench/faults.py                      # every fault, table + bench/results/faults.json
    python bench/faults.py --only "engine hang" --only "camera stall"
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))  # the suite's oracle engine and harness live there

from uwm_ros.transport.dds import loopback_env  # noqa: E402

os.environ.update(loopback_env(random.SystemRandom().randint(0, 100)))

from fault_harness import (  # noqa: E402
    SCENARIOS,
    Rig,
    bad_parameter_types,
    format_table,
    run_scenario,
)


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        description=doc.split("\n\n")[0],
        epilog=doc.split("\n\n")[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", action="append", default=[], help="fault name (repeatable)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/faults.json")
    args = parser.parse_args(argv)
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "test")])}
    with tempfile.TemporaryDirectory() as tmp:
        rig = Rig(Path(tmp), env)
        try:
            results = [run_scenario(rig, s) for s in chosen]
        finally:
            rig.close()
        if not args.only or "bad parameter types" in args.only:
            results.append(bad_parameter_types(Path(tmp)))
    print(format_table(results))
    load = os.getloadavg()
    report = {
        "benchmark": "faults",
        "load_average": [round(x, 2) for x in load],
        "faults_tried": len(results),
        "handled": sum(r.handled for r in results),
        "wrong_actions": sum(r.wrong_actions for r in results),
        "results": [asdict(r) | {"handled": r.handled} for r in results],
    }
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(report, indent=2) + "\n")
    tmp_out.replace(args.out)
    print(f"wrote {args.out}")
    return 0 if report["handled"] == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
