"""The record of a study's grid extensions (`studies.extensions`) and the auto-extension rules that
read it. Pure functions over the stored JSON: the database layer (the study status rule), the
services (the pass, the views) and the API all read it through here.

`studies.extensions` is a list, oldest first, of

- an extension, `kind` "manual" (POST /studies/{id}/extend) or "auto" (the auto-extension pass):
  `{"at", "kind", "rows": {"lr_low": 0, "lr_high": 1, "wd_low": 1, "wd_high": 0}, "sides": [...],
  "added_points", "added_runs", "lr_range", "wd_range" (after), "why", ...}`; an auto one adds
  `level`, `triggered_by` ({variant: [sides its ROI touched]}), `left_out` ({side: why not added}),
  `points_used` and `points_left` (the budget after it); a manual one adds `proposal`.
- a verdict of the auto-extension, `kind` "stop": `{"at", "kind", "stopped" (STOP_REASONS), "why",
  "lr_range", "wd_range", "points_used", "points_left", "wanted", "through"}`. It holds for the
  grid it names and for the runs that had finished when it was made (`through` = the study's
  latest run `finished_at` then): a grid extended since, or a run finished since (a retry), makes
  the study due for a new decision.

Budget: `max_points` grid points per variant. Every extension adds the same grid points to every
variant, so the points used are the sum of `added_points` over the "auto" records; manual
extensions do not count against it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

SIDES = ("lr_low", "lr_high", "wd_low", "wd_high")
EXTENSION_KINDS = ("manual", "auto")
STOP = "stop"
ENCLOSED = "enclosed"
BUDGET_SPENT = "budget spent"
GRID_LIMIT = "grid limit"
RUN_LIMIT = "run limit"
NO_RESULTS = "no results"
STOP_REASONS = (ENCLOSED, BUDGET_SPENT, GRID_LIMIT, RUN_LIMIT, NO_RESULTS)

# What the views say about a study with auto-extension (AutoExtensionOut.state).
WATCHING = "watching"  # runs are still active; each pass checks the edges that have finished
DECIDING = "deciding"  # no run is active and no verdict holds: the next pass extends or stops
STOPPED = "stopped"  # a verdict holds for the grid as it is (or the study was cancelled)
STATES = (WATCHING, DECIDING, STOPPED)


def records_of(stored: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """The stored list (None on studies made before the column) as a list of dicts."""
    return [dict(r) for r in stored or []]


def auto_extend_of(spec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The grid's `auto_extend` setting of a stored spec, or None when it is off."""
    grid = (spec or {}).get("grid") or {}
    auto = grid.get("auto_extend")
    return dict(auto) if auto else None


def points_used(records: Sequence[Mapping[str, Any]]) -> int:
    """Grid points (per variant) the auto-extensions have added so far."""
    return sum(int(r.get("added_points") or 0) for r in records if r.get("kind") == "auto")


def ranges_of(spec: Mapping[str, Any]) -> tuple[list[int], list[int]]:
    grid = spec["grid"]
    return list(grid["lr_range"]), list(grid["wd_range"])


def finished_mark(moment: datetime | None) -> str | None:
    """A run `finished_at` as the verdict stores it (UTC ISO; SQLite hands times back naive)."""
    if moment is None:
        return None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.isoformat()


def standing_verdict(
    spec: Mapping[str, Any], records: Sequence[Mapping[str, Any]], last_finished: datetime | None
) -> dict[str, Any] | None:
    """The last record when it is a stop verdict that still holds: made for the grid as it is now
    and with no run finished since."""
    if not records:
        return None
    last = records[-1]
    if last.get("kind") != STOP:
        return None
    lr_range, wd_range = ranges_of(spec)
    if list(last.get("lr_range") or []) != lr_range or list(last.get("wd_range") or []) != wd_range:
        return None
    if last.get("through") != finished_mark(last_finished):
        return None
    return dict(last)


def extension_due(
    kind: str,
    spec: Mapping[str, Any] | None,
    records: Sequence[Mapping[str, Any]] | None,
    last_finished: datetime | None,
) -> bool:
    """True when a native study with auto-extension has no standing verdict: when none of its runs
    is active, it is not finished yet, because the next pass may still add rows (the study status
    rule, backend.run_states.study_status)."""
    if kind != "native" or auto_extend_of(spec) is None:
        return False
    return standing_verdict(spec or {}, records_of(records), last_finished) is None


def auto_extension_view(
    spec: Mapping[str, Any] | None,
    records: Sequence[Mapping[str, Any]] | None,
    *,
    study_status: str,
    active_runs: int,
) -> dict[str, Any] | None:
    """What the study page and the API say about auto-extension (None when it is off).

    The stored study status already answers whether a verdict stands (the status rule keeps a
    study without one `running`), so this needs no query of its own."""
    auto = auto_extend_of(spec)
    if auto is None:
        return None
    rows = records_of(records)
    used = points_used(rows)
    verdict = rows[-1] if rows and rows[-1].get("kind") == STOP else None
    if active_runs:
        state = WATCHING
    elif study_status in ("pending", "running"):
        state = DECIDING
    else:
        state = STOPPED
    stopped = verdict.get("stopped") if state == STOPPED and verdict else None
    why = verdict.get("why") if state == STOPPED and verdict else None
    if state == STOPPED and verdict is None:
        why = f"the study is {study_status}"
    return {
        "max_points": int(auto["max_points"]),
        "level": float(auto.get("level", 1.0)),
        "points_used": used,
        "points_left": max(0, int(auto["max_points"]) - used),
        "extensions": sum(1 for r in rows if r.get("kind") == "auto"),
        "state": state,
        "stopped": stopped,
        "why": why,
    }
