"""A conversion that silently loses data fails instead, saying why and what to change.

A source that yields no episode, or whose grid ticks (after the lead-in, while recording, and
with some stream in tolerance: a pause where every stream is silent loses nothing) lose more
than ``LOSS_LIMIT`` of their frames, is almost always a config that does not fit the
recording: a camera slower than ``fps``, a ``max_skew`` tighter than the stamps allow, a
``min_frames`` longer than the episodes. The message reads the conversion report: each
stream's measured rate and out-of-tolerance ticks, and the episodes discarded as too short.
``build_dataset(allow_losses=True)`` (``uwm convert --allow-losses``) keeps such a conversion.
"""

from __future__ import annotations

from typing import Any

LOSS_LIMIT = 0.1  # a source may lose this share of its ticks' frames (gaps, the last frame ...)
ALLOW_FLAG = "--allow-losses"


def _skew_key(stream: str) -> str:
    """The config key of a stream's tolerance."""
    return {"joints": "joints.max_skew", "command": "action.max_skew"}.get(
        stream, f"cameras.{stream}.max_skew"
    )


def _stream_causes(report: dict[str, Any]) -> list[str]:
    fps, causes = report["fps"], []
    for name, s in report["streams"].items():
        stale = s.get("stale_ticks", 0)
        if not stale:
            continue
        tolerance, key = s["tolerance_ms"] / 1e3, _skew_key(name)
        rate = s.get("nominal_hz") or s["rate_hz"]  # the median interval's: gaps do not count
        if 0 < rate < 0.95 * fps and 0.5 / rate > tolerance:
            causes.append(
                f"{name} runs at {rate:.3g} Hz, slower than fps {fps:g}, so {stale} ticks had no "
                f"sample within max_skew {tolerance:g} s: set fps: {_round_down(rate)} (or "
                f"{key}: {0.5 / rate:.2g} to repeat each sample over several ticks)"
            )
        else:
            causes.append(
                f"{name} ({rate:.3g} Hz) had no sample within max_skew {tolerance:g} s at {stale} "
                f"ticks, across {s.get('gaps', 0)} gaps in its stamps "
                f"({s.get('missing_messages', 0)} messages missing): it stopped, or its stamps "
                f"are later than the tolerance allows (raise {key})"
            )
    return causes


def _round_down(rate: float) -> str:
    """A frame rate the stream supports, as a config value."""
    return f"{int(rate)}" if rate >= 1 else f"{rate:.2g}"


def loss_problem(report: dict[str, Any]) -> str | None:
    """Why this source's conversion lost too much, with the fix; None if it did not."""
    if "ticks" not in report:  # not resampled from recordings (e.g. synthetic data)
        return None
    ticks, frames = report["ticks"], report["frames"]
    lost = ticks - frames
    if report["episodes"] and lost <= LOSS_LIMIT * ticks:
        return None
    what = (
        f"no episodes from {ticks} grid ticks"
        if not report["episodes"]
        else f"lost {lost} of {ticks} frames ({lost / ticks:.0%}, more than {LOSS_LIMIT:.0%})"
    )
    causes = _stream_causes(report)
    if report.get("short_episodes"):
        causes.append(
            f"{report['short_episodes']} episodes ({report['short_frames']} frames) were "
            f"shorter than episodes.min_frames ({report['min_frames']}): lower it"
        )
    if not ticks:
        causes.append("no tick had a sample of every stream: do the topics overlap in time?")
    return f"{report['source']}: {what}: {'; '.join(causes) or 'cause unknown'}"


def check_losses(reports: list[dict[str, Any]]) -> str | None:
    """The one-line error for the sources that lost too much (None: none did)."""
    problems = [p for p in map(loss_problem, reports) if p]
    if not problems:
        return None
    more = f" (and {len(problems) - 1} more sources)" if len(problems) > 1 else ""
    return f"{problems[0]}{more}. Nothing was written; pass {ALLOW_FLAG} to keep such sources"
