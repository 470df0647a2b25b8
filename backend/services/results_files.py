"""Results files: importing a results CSV as a study (`kind: imported`) and exporting a study's
runs as CSV / JSON rows. Cells that look like spreadsheet formulas are neutralised on export."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from backend.analysis import ResultsFileError, parse_results_csv
from backend.db.models import Run, Study, Variant, utcnow
from backend.run_states import RESULT_KINDS
from backend.services.errors import FieldError
from backend.services.queries import get_study, variant_names

MAX_IMPORT_AXIS_VALUES = 201  # distinct lr (or wd) values of an imported study


def import_csv(
    session: Session,
    data: bytes,
    *,
    name: str | None,
    filename: str | None,
    base: str = "base",
    created_by: str | None = None,
    max_runs: int | None = None,
) -> Study:
    try:
        table = parse_results_csv(data, base=base)
    except ResultsFileError as exc:
        raise FieldError(["body", "file"], str(exc)) from None
    if max_runs is not None and len(table) > max_runs:
        raise FieldError(
            ["body", "file"],
            f"the file has {len(table)} runs, above the limit of {max_runs} runs per study; split it",
        )
    for variant_name in table.variants:
        if len(variant_name) > 64:
            raise FieldError(
                ["body", "file"], f"variant name {variant_name[:20]!r}... is longer than 64 characters"
            )
    if any("\x00" in v for v in table.variants):
        raise FieldError(["body", "file"], "a variant name contains a NUL character")
    if name is not None and "\x00" in name:
        raise FieldError(["body", "name"], "the name contains a NUL character")
    filename = filename.replace("\x00", "") if filename else filename
    study_name = (name or (Path(filename).stem if filename else "") or "imported results").strip()[:200]
    lrs = sorted(set(float(x) for x in table.lr))
    wds = sorted(set(float(x) for x in table.wd))
    # The landscape is a grid of lr x wd; scattered values would make it lrs x wds points.
    for axis, values in (("lr", lrs), ("wd", wds)):
        if len(values) > MAX_IMPORT_AXIS_VALUES:
            raise FieldError(
                ["body", "file"],
                f"column {axis!r} has {len(values)} distinct values, above the limit of "
                f"{MAX_IMPORT_AXIS_VALUES}; results must lie on an lr x wd grid",
            )
    # Centred indices, as a native grid has them (0 at the middle value, negative below), so a
    # grid index means the same in every study; an even count puts 0 just below the middle.
    lr_first, wd_first = -((len(lrs) - 1) // 2), -((len(wds) - 1) // 2)
    lr_index = {v: lr_first + i for i, v in enumerate(lrs)}
    wd_index = {v: wd_first + j for j, v in enumerate(wds)}
    spec = {
        "name": study_name,
        "imported_from": filename,
        "base": base,
        "variants": [{"name": v, "kind": "base" if v == base else "imported"} for v in table.variants],
        "grid": {
            "lr_values": lrs,
            "wd_values": wds,
            "lr_range": [lr_first, lr_first + len(lrs) - 1],
            "wd_range": [wd_first, wd_first + len(wds) - 1],
        },
        "ignored_columns": list(table.ignored_columns),
    }
    study = Study(name=study_name, kind="imported", spec=spec, status="succeeded", created_by=created_by)
    study.finished_at = utcnow()
    session.add(study)
    session.flush()
    variants = {}
    for v in spec["variants"]:
        variants[v["name"]] = Variant(study_id=study.id, name=v["name"], kind=v["kind"], spec=v)
        session.add(variants[v["name"]])
    session.flush()
    now = utcnow()
    for k in range(len(table)):
        top5 = float(table.top5[k])
        session.add(
            Run(
                study_id=study.id,
                variant_id=variants[table.variant[k]].id,
                kind="train",
                lr=float(table.lr[k]),
                wd=float(table.wd[k]),
                grid_i=lr_index[float(table.lr[k])],
                grid_j=wd_index[float(table.wd[k])],
                seed=int(table.seed[k]),
                status="diverged" if bool(table.diverged[k]) else "succeeded",
                top1=float(table.top1[k]),
                top5=None if math.isnan(top5) else top5,
                attempts=0,
                cancel_requested=False,
                epochs_done=0,
                finished_at=now,
            )
        )
    session.commit()
    return study


EXPORT_COLUMNS = [
    "variant",
    "kind",
    "lr",
    "wd",
    "grid_i",
    "grid_j",
    "seed",
    "status",
    "top1",
    "top5",
    "loss",
    "epochs_done",
    "error",
]
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def export_rows(session: Session, study_id: int) -> list[dict[str, Any]]:
    get_study(session, study_id)
    names = variant_names(session, study_id)
    runs = session.scalars(
        sa.select(Run).where(Run.study_id == study_id, Run.kind.in_(RESULT_KINDS)).order_by(Run.id)
    )
    rows = []
    for run in runs:
        row = {c: getattr(run, c) for c in EXPORT_COLUMNS if c != "variant"}
        rows.append({"variant": names[run.variant_id], **row})
    return rows


def escape_cell(value: Any) -> Any:
    """Neutralise spreadsheet formulas: text starting with = + - @ (or tab / CR) gets a leading '."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def rows_to_csv(rows: Iterable[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(EXPORT_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row[k] is None else escape_cell(row[k]) for k in EXPORT_COLUMNS})
    return out.getvalue()
