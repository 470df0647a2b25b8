"""Sensitivity scans as a table (`GET /studies/{id}/scans.csv`): one row per evaluation of every
stored scan, read from the variants' `scan` column (the list the scan job writes; its shape is
`backend.api.schemas.VariantScan`, documented in docs/api.md)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from backend.services.errors import NotFound
from backend.services.queries import get_study
from backend.services.results_files import escape_cell

SCAN_COLUMNS = (
    "variant",
    "scan",
    "kind",
    "scope",
    "source_run_id",
    "layer",
    "fraction",
    "top1",
    "top5",
    "sparsity",
    "flops_ratio",
)


def scan_rows(session: Session, study_id: int) -> list[dict[str, Any]]:
    """Every scan row of the study, variants in id order, scans in spec order, rows as stored.
    404 for an unknown study and for one whose spec asks for no scans (an imported study, or a
    native one without `scans`); a study whose scans have not run yet has no rows."""
    study = get_study(session, study_id)
    if study.kind != "native" or not (study.spec or {}).get("scans"):
        raise NotFound(f"study {study_id} has no sensitivity scans: its spec asks for none")
    rows: list[dict[str, Any]] = []
    for variant in study.variants:
        for scan in variant.scan or []:
            for row in scan.get("rows") or []:
                rows.append(
                    {
                        "variant": variant.name,
                        "scan": scan.get("index"),
                        "kind": scan.get("kind"),
                        "scope": scan.get("scope"),
                        "source_run_id": scan.get("source_run_id"),
                        **{c: row.get(c) for c in SCAN_COLUMNS[5:]},
                    }
                )
    return rows


def rows_to_csv(rows: Iterable[dict[str, Any]]) -> str:
    """CSV text with a header; empty cells for nulls, formula-looking text neutralised."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(SCAN_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else escape_cell(row[k]) for k in SCAN_COLUMNS})
    return out.getvalue()
