"""The fault suite (DESIGN §16): the policy node in its own process over loopback DDS, each
fault injected, the node's answer checked: no wrong action, the right diagnostic level, no
chunk while it must stop (and a stop message), recovery once the fault clears. The table it
prints is the one in the README (``bench/faults.py`` prints and stores the same)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dds_helpers import dds_domain, subprocess_env  # noqa: F401  (dds_domain: fixture)
from fault_harness import (
    SCENARIOS,
    Result,
    Rig,
    bad_parameter_types,
    format_table,
    run_scenario,
)

RESULTS: list[Result] = []


@pytest.fixture(scope="module")
def rig(dds_domain, tmp_path_factory):  # type: ignore[no-untyped-def]  # noqa: F811
    rig = Rig(tmp_path_factory.mktemp("faults"), subprocess_env())
    yield rig
    rig.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_fault(rig, scenario) -> None:  # type: ignore[no-untyped-def]
    result = run_scenario(rig, scenario)
    RESULTS.append(result)
    assert result.wrong_actions == 0, (result, rig.wrong[-3:])
    assert set(result.expected.split("|")) & set(result.seen), (result, rig.diags[-5:])
    if scenario.silent:
        assert result.chunks_in_fault == 0 and result.stop_sent, result
    assert result.recovered_s is not None, (result, rig.log[-20:])


def test_bad_parameter_types_are_refused(dds_domain, tmp_path: Path) -> None:  # noqa: F811
    """``enabled: "false"`` (a string) is refused at start and when set live, never truthy."""
    result = bad_parameter_types(tmp_path)
    RESULTS.append(result)
    assert result.handled, result


def test_fault_table() -> None:
    """Print the table (pytest -s shows it) and require every fault handled."""
    assert RESULTS, "run with the fault tests"
    print("\n" + format_table(RESULTS))
    assert all(r.handled for r in RESULTS), format_table(RESULTS)
