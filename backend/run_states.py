"""The one vocabulary of run and study states, and the two rules built on it (docs/spec.md,
"Runs and their states"). Pure constants and functions: the database layer, the services, the
analysis, the workers and the dashboard all read their words from here.

A run is one of

    blocked -> pending -> queued -> running -> succeeded | diverged | failed | cancelled

`blocked` waits on the run it depends on (a prune run on the base run at the prior, a quantise run
on its trained source run, a pruned variant's training on its prune run, a scan run on the train
run at the prior of the variant it scans). The release rule says
what a dependency's end means for the run waiting on it; the study rule rolls a study's runs up
into one status.
"""

from __future__ import annotations

from collections.abc import Mapping

RUN_STATUSES = ("blocked", "pending", "queued", "running", "succeeded", "failed", "diverged", "cancelled")
ACTIVE = ("blocked", "pending", "queued", "running")  # still to happen
ENDED = ("succeeded", "failed", "diverged", "cancelled")  # nothing more will happen without a retry
SCORED = (
    "succeeded",
    "diverged",
)  # ended with an accuracy: a point of the landscape (docs/spec.md: diverged counts)
CLAIMABLE = ("pending", "queued")  # a worker may take these
RETRYABLE = ("failed", "cancelled")

RUN_KINDS = ("train", "prune", "quantise", "measure", "scan")
RESULT_KINDS = ("train", "quantise")  # the runs whose accuracy is a grid point of a variant

STUDY_STATUSES = ("pending", "running", "succeeded", "failed", "cancelled", "deleting")
OPEN_STUDY = ("pending", "running")
# Once cancelled (asked for, or ended with runs that never ran) or deleting, a study stays so: its
# runs do not undo it; a retry or an extension reopens a cancelled study.
STICKY_STUDY = ("cancelled", "deleting")
STUDY_KINDS = ("native", "imported")


def needed_of_dependency(kind: str) -> tuple[str, ...]:
    """The ends of a dependency that let a run of `kind` go ahead: a quantise run evaluates a
    diverged source too (its accuracy is a real outcome of that grid point); every other kind
    needs a model that trained to the end."""
    return SCORED if kind == "quantise" else ("succeeded",)


def status_after_dependency(dependency_status: str, kind: str) -> str:
    """What a run of `kind` waiting on a dependency in `dependency_status` should be: `pending`
    (go), `cancelled` (the dependency ended without what it needs), or `blocked` (keep waiting)."""
    if dependency_status in needed_of_dependency(kind):
        return "pending"
    if dependency_status in ENDED:
        return "cancelled"
    return "blocked"


def study_status(stored: str, progress: Mapping[str, int], *, extension_due: bool = False) -> str:
    """A study's status from its runs by status. `cancelled` sticks once asked for (until a retry
    or an extension reopens the study), and so does `deleting` (until the study is purged);
    otherwise `running` once any run has started and some are still active, `pending` before,
    and once no run is active: `failed` if any run failed, else `cancelled` if any run was
    cancelled (by a user, or because the run it waited on ended without what it needs: the study
    did not run everything it planned), else `succeeded` (every run succeeded or diverged). A study
    whose auto-extension has not decided yet (`extension_due`: the next pass may add rows) is still
    `running` when no run is active (backend/extension_records.py)."""
    if stored in STICKY_STUDY:
        return stored
    active = sum(progress.get(s, 0) for s in ACTIVE)
    if active:
        started = sum(progress.get(s, 0) for s in ("running", "queued", *ENDED))
        return "running" if started else "pending"
    if extension_due:
        return "running"
    if progress.get("failed", 0):
        return "failed"
    if progress.get("cancelled", 0):
        return "cancelled"
    return "succeeded"


def progress_totals(counts: dict[str, int]) -> dict[str, int]:
    """Add `total` and `finished` (ended runs) to runs-by-status counts; returns the same dict."""
    counts["total"] = sum(counts.get(s, 0) for s in RUN_STATUSES)
    counts["finished"] = sum(counts.get(s, 0) for s in ENDED)
    return counts
