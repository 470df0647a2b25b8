"""The results table: one row per finished run, parsed and validated in full before use.

Columns: ``variant, lr, wd, seed, top1`` (required), ``top5``, ``status``, ``run_id`` (optional).
``status`` is ``succeeded`` (the default when the column or the cell is empty) or ``diverged``; a
diverged run keeps its final accuracy and takes part in the landscape (docs/spec.md section 3).

Two entry points build the same :class:`ResultsTable`:

- :func:`parse_results_csv` for an imported file (bytes or text). Every problem raises
  :class:`ResultsFileError` naming the line (1-based, the header is line 1) and the column.
  Nothing is returned until the whole file has been checked, so nothing is half-imported.
  Cells that look like spreadsheet formulas (``=SUM(A1)``) are kept as data; in a numeric column
  they fail like any other non-number.
- :func:`table_from_rows` for rows that come from the database (a list of dicts). Rows whose
  status says the run has not finished (``blocked``, ``pending``, ``queued``, ``running``,
  ``failed``, ``cancelled``) are skipped and counted; other problems raise the same error naming
  the row (0-based) and the key.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

REQUIRED_COLUMNS: tuple[str, ...] = ("variant", "lr", "wd", "seed", "top1")
OPTIONAL_COLUMNS: tuple[str, ...] = ("top5", "status", "run_id")
STATUSES: tuple[str, ...] = ("succeeded", "diverged")
UNFINISHED_STATUSES: frozenset[str] = frozenset(
    {"blocked", "pending", "queued", "running", "failed", "cancelled"}
)
METRICS: tuple[str, ...] = ("top1", "top5")


class ResultsFileError(ValueError):
    """A results table that cannot be used; the message names the line (or row) and the column."""


@dataclass(frozen=True)
class ResultsTable:
    """Validated runs, column-wise. ``top5`` is NaN where a run has no top-5 value."""

    variant: list[str]
    lr: np.ndarray  # float64, > 0
    wd: np.ndarray  # float64, > 0
    seed: np.ndarray  # int64
    top1: np.ndarray  # float64 in [0, 100]
    top5: np.ndarray  # float64 in [0, 100] or NaN
    diverged: np.ndarray  # bool
    run_id: list[str | int | None] | None = None  # None when no row carries a run id
    n_skipped: int = 0  # rows from the database that had not finished
    ignored_columns: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.variant)

    @property
    def variants(self) -> list[str]:
        """Variant names in order of first appearance."""
        return list(dict.fromkeys(self.variant))

    @property
    def metrics(self) -> list[str]:
        """Metrics with at least one value: always ``top1``; ``top5`` when any run has it."""
        present = ["top1"]
        if len(self) and bool(np.isfinite(self.top5).any()):
            present.append("top5")
        return present

    def values(self, metric: str) -> np.ndarray:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        return self.top1 if metric == "top1" else self.top5


def _parse_positive(text: str, where: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ResultsFileError(f"{where}, column {column!r}: {text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise ResultsFileError(f"{where}, column {column!r}: {text!r} must be a finite number > 0")
    return value


def _parse_accuracy(text: str, where: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ResultsFileError(f"{where}, column {column!r}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ResultsFileError(f"{where}, column {column!r}: {text!r} is not a finite accuracy")
    if not 0.0 <= value <= 100.0:
        raise ResultsFileError(
            f"{where}, column {column!r}: {text!r} is outside [0, 100] (accuracy in percent)"
        )
    return value


def _parse_seed(text: str, where: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise ResultsFileError(f"{where}, column 'seed': {text!r} is not an integer") from None
    if not math.isfinite(value) or value != int(value):
        raise ResultsFileError(f"{where}, column 'seed': {text!r} is not an integer")
    return int(value)


def _parse_status(text: str, where: str) -> bool:
    status = text.strip().lower() or "succeeded"
    if status not in STATUSES:
        raise ResultsFileError(
            f"{where}, column 'status': unknown status {text!r}; expected one of {', '.join(STATUSES)}"
        )
    return status == "diverged"


class _Builder:
    """Collects checked rows; duplicates are caught with the line of the first occurrence."""

    def __init__(self) -> None:
        self.variant: list[str] = []
        self.lr: list[float] = []
        self.wd: list[float] = []
        self.seed: list[int] = []
        self.top1: list[float] = []
        self.top5: list[float] = []
        self.diverged: list[bool] = []
        self.run_id: list[str | int | None] = []
        self.seen: dict[tuple[str, float, float, int], str] = {}

    def add(
        self,
        where: str,
        variant: str,
        lr: float,
        wd: float,
        seed: int,
        top1: float,
        top5: float,
        diverged: bool,
        run_id: str | int | None,
    ) -> None:
        # lr/wd are compared in log10 rounded to 1e-9 so 0.1 and 1e-1 are the same grid point.
        key = (variant, round(math.log10(lr), 9), round(math.log10(wd), 9), seed)
        if key in self.seen:
            raise ResultsFileError(
                f"{where}: duplicate run (variant={variant!r}, lr={lr:g}, wd={wd:g}, seed={seed}); "
                f"first given at {self.seen[key]}"
            )
        self.seen[key] = where
        self.variant.append(variant)
        self.lr.append(lr)
        self.wd.append(wd)
        self.seed.append(seed)
        self.top1.append(top1)
        self.top5.append(top5)
        self.diverged.append(diverged)
        self.run_id.append(run_id)

    def build(self, *, n_skipped: int = 0, ignored_columns: tuple[str, ...] = ()) -> ResultsTable:
        has_ids = any(r is not None for r in self.run_id)
        return ResultsTable(
            variant=self.variant,
            lr=np.asarray(self.lr, dtype=float),
            wd=np.asarray(self.wd, dtype=float),
            seed=np.asarray(self.seed, dtype=np.int64),
            top1=np.asarray(self.top1, dtype=float),
            top5=np.asarray(self.top5, dtype=float),
            diverged=np.asarray(self.diverged, dtype=bool),
            run_id=self.run_id if has_ids else None,
            n_skipped=n_skipped,
            ignored_columns=ignored_columns,
        )


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ResultsFileError(
            f"line {line}: the file is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); save it as UTF-8 CSV"
        ) from None


def parse_results_csv(data: bytes | str, *, base: str | None = "base") -> ResultsTable:
    """Parse and validate a whole results CSV; raise :class:`ResultsFileError` on the first problem.

    ``base`` is the variant that must be present (``None`` skips that check).
    """
    text = _decode(data)
    if not text.strip():
        raise ResultsFileError("the file is empty; expected a header variant,lr,wd,seed,top1[,top5][,status]")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except csv.Error as exc:
        raise ResultsFileError(f"line 1: not a CSV header ({exc})") from None
    names = [h.strip().lower() for h in header]
    for column in REQUIRED_COLUMNS:
        if column not in names:
            raise ResultsFileError(
                f"line 1: missing column {column!r}; the header must contain "
                f"{','.join(REQUIRED_COLUMNS)} (optional: {','.join(OPTIONAL_COLUMNS)})"
            )
    for name in names:
        if names.count(name) > 1:
            raise ResultsFileError(f"line 1: column {name!r} appears more than once")
    col = {name: i for i, name in enumerate(names)}
    known = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)
    ignored = tuple(n for n in names if n not in known)

    builder = _Builder()
    try:
        for cells in reader:
            where = f"line {reader.line_num}"
            if not cells or all(not c.strip() for c in cells):
                continue  # blank line
            if len(cells) != len(names):
                raise ResultsFileError(f"{where}: {len(cells)} cells, the header has {len(names)}")
            variant = cells[col["variant"]].strip()
            if not variant:
                raise ResultsFileError(f"{where}, column 'variant': empty variant name")
            lr = _parse_positive(cells[col["lr"]].strip(), where, "lr")
            wd = _parse_positive(cells[col["wd"]].strip(), where, "wd")
            seed = _parse_seed(cells[col["seed"]].strip(), where)
            top1 = _parse_accuracy(cells[col["top1"]].strip(), where, "top1")
            top5 = math.nan
            if "top5" in col and cells[col["top5"]].strip():
                top5 = _parse_accuracy(cells[col["top5"]].strip(), where, "top5")
            diverged = _parse_status(cells[col["status"]], where) if "status" in col else False
            run_id = (cells[col["run_id"]].strip() or None) if "run_id" in col else None
            builder.add(where, variant, lr, wd, seed, top1, top5, diverged, run_id)
    except csv.Error as exc:
        raise ResultsFileError(f"line {reader.line_num}: malformed CSV ({exc})") from None

    if not builder.variant:
        raise ResultsFileError("the file has a header but no runs")
    if base is not None and base not in builder.variant:
        raise ResultsFileError(
            f"no rows for the base variant {base!r}; name the unpruned model's rows variant={base}"
        )
    return builder.build(ignored_columns=ignored)


def _cell_text(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    return "" if value is None else str(value)


def _fast_table(rows: list[Mapping[str, Any]]) -> ResultsTable | None:
    """Vectorised build for well-formed rows with numeric fields; ``None`` sends the caller to the
    row-by-row path, which finds and names the first problem (or skips unfinished runs)."""
    try:
        if any(_cell_text(r, "status").strip().lower() not in ("", *STATUSES) for r in rows):
            return None
        variant = [r["variant"] for r in rows]
        if not all(isinstance(v, str) and v and v == v.strip() for v in variant):
            return None
        lr = np.array([r["lr"] for r in rows], dtype=float)
        wd = np.array([r["wd"] for r in rows], dtype=float)
        seed_f = np.array([r["seed"] for r in rows], dtype=float)
        top1 = np.array([r["top1"] for r in rows], dtype=float)
        top5 = np.array([r.get("top5") for r in rows], dtype=float)  # None -> NaN
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    ok = (
        np.all(np.isfinite(lr) & (lr > 0))
        and np.all(np.isfinite(wd) & (wd > 0))
        and np.all(np.isfinite(seed_f) & (seed_f == np.round(seed_f)))
        and np.all(np.isfinite(top1) & (top1 >= 0) & (top1 <= 100))
        and not np.any(np.isinf(top5) | (top5 < 0) | (top5 > 100))
    )
    if not ok:
        return None
    names, codes = np.unique(np.array(variant, dtype=object).astype(str), return_inverse=True)
    key = np.column_stack([codes, np.round(np.log10(lr), 9), np.round(np.log10(wd), 9), seed_f])
    if len(np.unique(key, axis=0)) != len(rows):
        return None  # a duplicate: the slow path names both rows
    run_id = [r.get("run_id") for r in rows]
    return ResultsTable(
        variant=variant,
        lr=lr,
        wd=wd,
        seed=seed_f.astype(np.int64),
        top1=top1,
        top5=top5,
        diverged=np.array([_cell_text(r, "status").strip().lower() == "diverged" for r in rows], dtype=bool),
        run_id=run_id if any(r is not None for r in run_id) else None,
    )


def table_from_rows(rows: Iterable[Mapping[str, Any]]) -> ResultsTable:
    """Build a table from dict rows (the database side); unfinished runs are skipped and counted."""
    rows = list(rows)
    fast = _fast_table(rows) if rows else None
    return fast if fast is not None else _table_row_by_row(rows)


def _table_row_by_row(rows: list[Mapping[str, Any]]) -> ResultsTable:
    builder = _Builder()
    n_skipped = 0
    for i, row in enumerate(rows):
        where = f"row {i}"
        for key in REQUIRED_COLUMNS:
            if key not in row:
                raise ResultsFileError(f"{where}: missing key {key!r}")
        status_text = _cell_text(row, "status").strip().lower()
        if status_text in UNFINISHED_STATUSES:
            n_skipped += 1
            continue
        diverged = _parse_status(status_text, where)
        variant = _cell_text(row, "variant").strip()
        if not variant:
            raise ResultsFileError(f"{where}, column 'variant': empty variant name")
        if diverged and row.get("top1") is None:
            n_skipped += 1  # diverged before its first evaluation: nothing to place on the landscape
            continue
        lr = _parse_positive(_cell_text(row, "lr"), where, "lr")
        wd = _parse_positive(_cell_text(row, "wd"), where, "wd")
        seed = _parse_seed(_cell_text(row, "seed"), where)
        top1 = _parse_accuracy(_cell_text(row, "top1"), where, "top1")
        top5_text = _cell_text(row, "top5").strip()
        top5 = _parse_accuracy(top5_text, where, "top5") if top5_text else math.nan
        run_id = row.get("run_id")
        builder.add(where, variant, lr, wd, seed, top1, top5, diverged, run_id)
    return builder.build(n_skipped=n_skipped)


def as_table(rows: ResultsTable | Iterable[Mapping[str, Any]]) -> ResultsTable:
    """Accept a :class:`ResultsTable` as is, or build one from dict rows."""
    if isinstance(rows, ResultsTable):
        return rows
    return table_from_rows(rows)


def table_to_csv(table: ResultsTable) -> str:
    """Write a table back as CSV text in the import format (round-trips through the parser)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = ["variant", "lr", "wd", "seed", "top1", "top5", "status"]
    if table.run_id is not None:
        header.append("run_id")
    writer.writerow(header)
    for i in range(len(table)):
        top5 = table.top5[i]
        line = [
            table.variant[i],
            repr(float(table.lr[i])),
            repr(float(table.wd[i])),
            int(table.seed[i]),
            repr(float(table.top1[i])),
            "" if math.isnan(top5) else repr(float(top5)),
            "diverged" if table.diverged[i] else "succeeded",
        ]
        if table.run_id is not None:
            line.append("" if table.run_id[i] is None else table.run_id[i])
        writer.writerow(line)
    return out.getvalue()
