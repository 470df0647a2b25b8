"""The API's study JSON (StudySummary / StudyOut, backend/api/schemas.py) read into the fields the
pages show, in its one shape; the state words come from backend/run_states.py."""

from __future__ import annotations

from backend.run_states import ACTIVE, OPEN_STUDY


def study_summary(study: dict) -> dict:
    """StudySummary (a list item) or StudyOut (a whole study) as a page row."""
    progress = study["progress"]
    return {
        "id": study["id"],
        "name": study["name"],
        "model": study.get("model"),
        "dataset": study.get("dataset"),
        "variants": list(study.get("variants") or []),
        "status": study["status"],
        "done": int(progress["finished"]),
        "planned": int(progress["total"]),
        "best": dict(study.get("best") or {}),  # filled by the list page from /compare
        "created_by": study.get("created_by") or "—",
        "created_at": study.get("created_at") or "",
        "kind": study["kind"],
        "spec": study.get("spec") or {},
    }


def active_runs(study: dict) -> int:
    return sum(int(study["progress"].get(state) or 0) for state in ACTIVE)


def study_is_done(study: dict) -> bool:
    """No run left to wait for: the page can stop polling. A cancelled study can still have running
    runs (asked to stop at their next epoch); it is done once they have ended too."""
    return active_runs(study) == 0 and study["status"] not in OPEN_STUDY


def study_is_open(study: dict) -> bool:
    """Still pending or running: there is something to cancel."""
    return study["status"] in OPEN_STUDY
