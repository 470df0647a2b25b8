"""The landscape f_v on the grid: mean over seeds per grid point, with spread and counts.

f_v(theta) is the mean of the metric over the seeds of variant v at theta = (wd, lr) (SPEC
section 5). The spread is the sample standard deviation over seeds (denominator n - 1), ``None``
when a point has one seed. Diverged runs count with their final accuracy and are also counted in
``n_diverged``. A run without the chosen metric (a missing top-5) does not count for that metric.

All variants share the study's axes (:mod:`backend.analysis.grid`), so the dense ``z`` matrices
(rows = lr ascending, columns = wd ascending, ``None`` where missing) line up for contour plots.
Everything is computed for all variants at once with ``np.bincount`` over a (variant, lr, wd)
cell index; no Python loop over runs except to gather run ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.analysis.grid import Axes, GridSpec, build_axes
from backend.analysis.records import LandscapePoints, LandscapeRecord, clean_list, clean_matrix
from backend.analysis.table import ResultsTable, as_table


@dataclass(frozen=True)
class Cells:
    """Per (variant, lr index, wd index) aggregates; arrays of shape (n_variants, n_lr, n_wd)."""

    variants: list[str]
    axes: Axes
    metric: str
    mean: np.ndarray  # NaN where no run
    std: np.ndarray  # NaN where fewer than 2 runs
    n: np.ndarray  # int
    n_diverged: np.ndarray  # int
    run_ids: np.ndarray | None  # object (n_variants, n_lr, n_wd): list of run ids per cell
    runs_per_variant: np.ndarray  # runs with the metric, per variant
    diverged_per_variant: np.ndarray
    # The runs' values sorted by (cell, seed) and their flat cell index: the seeds of each point,
    # for the seed bootstrap (noise.py), independent of the order of the rows.
    run_values: np.ndarray
    run_cell: np.ndarray

    def variant_index(self, variant: str) -> int:
        try:
            return self.variants.index(variant)
        except ValueError:
            raise ValueError(
                f"unknown variant {variant!r}; the results have {', '.join(self.variants) or 'none'}"
            ) from None

    def coords(self, vi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Grid points of variant ``vi`` that have a result: (lr index, wd index, [x, y] coords)."""
        iy, ix = np.nonzero(self.n[vi] > 0)
        xy = np.column_stack([self.axes.wd.log[ix], self.axes.lr.log[iy]])
        return iy, ix, xy

    def point_runs(self, vi: int) -> np.ndarray:
        """Values of variant ``vi``'s runs, point after point in the order of :meth:`coords`
        (``n[vi][iy, ix]`` values per point), seeds ascending within a point."""
        size = self.n.shape[1] * self.n.shape[2]
        lo, hi = np.searchsorted(self.run_cell, [vi * size, (vi + 1) * size])
        return self.run_values[lo:hi]


def compute_cells(
    table: ResultsTable,
    metric: str = "top1",
    *,
    axes: Axes | None = None,
    grid: GridSpec | Mapping[str, Any] | None = None,
    variants: list[str] | None = None,
) -> Cells:
    """Aggregate the runs of every variant on the study's grid."""
    values_all = table.values(metric)
    axes = axes if axes is not None else build_axes(table, grid)
    variants = variants if variants is not None else table.variants
    code = {name: i for i, name in enumerate(variants)}
    ny, nx, nv = len(axes.lr.log), len(axes.wd.log), len(variants)
    size = nv * ny * nx
    v_idx = np.array([code.get(name, -1) for name in table.variant], dtype=np.int64)
    use = (v_idx >= 0) & np.isfinite(values_all)
    cell = (v_idx * ny + axes.row_lr) * nx + axes.row_wd
    cell_u = cell[use]
    vals = values_all[use]
    n = np.bincount(cell_u, minlength=size)
    sums = np.bincount(cell_u, weights=vals, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, sums / np.maximum(n, 1), np.nan)
        dev2 = np.bincount(cell_u, weights=(vals - mean[cell_u]) ** 2, minlength=size)
        std = np.where(n > 1, np.sqrt(dev2 / np.maximum(n - 1, 1)), np.nan)
    n_div = np.bincount(cell_u, weights=table.diverged[use].astype(float), minlength=size).astype(np.int64)
    run_ids = None
    if table.run_id is not None:
        run_ids = _group_run_ids(table.run_id, cell_u, np.flatnonzero(use), size).reshape(nv, ny, nx)
    by_cell = np.lexsort((table.seed[use], cell_u))
    shape = (nv, ny, nx)
    return Cells(
        variants=list(variants),
        axes=axes,
        metric=metric,
        mean=mean.reshape(shape),
        std=std.reshape(shape),
        n=n.reshape(shape),
        n_diverged=n_div.reshape(shape),
        run_ids=run_ids,
        runs_per_variant=np.bincount(v_idx[use], minlength=nv),
        diverged_per_variant=np.bincount(v_idx[use & table.diverged], minlength=nv),
        run_values=vals[by_cell],
        run_cell=cell_u[by_cell],
    )


def _group_run_ids(ids: list[Any], cell: np.ndarray, rows: np.ndarray, size: int) -> np.ndarray:
    """Object array over cells: the list of run ids of each cell (row order), ``[]`` where none."""
    has_id = np.array([ids[r] is not None for r in rows.tolist()], dtype=bool)
    cell, rows = cell[has_id], rows[has_id]
    order = np.argsort(cell, kind="stable")
    cell_sorted = cell[order].tolist()
    ids_sorted = [ids[r] for r in rows[order].tolist()]
    out = np.empty(size, dtype=object)
    for i in range(size):
        out[i] = []
    start = 0
    for i in range(1, len(cell_sorted) + 1):
        if i == len(cell_sorted) or cell_sorted[i] != cell_sorted[start]:
            out[cell_sorted[start]] = ids_sorted[start:i]
            start = i
    return out


def landscape_record(cells: Cells, variant: str) -> LandscapeRecord:
    """The landscape of one variant: points (column-wise) and the dense z matrix."""
    vi = cells.variant_index(variant)
    iy, ix, xy = cells.coords(vi)
    mean = cells.mean[vi]
    z = clean_matrix(mean)
    run_ids = None
    if cells.run_ids is not None:
        run_ids = cells.run_ids[vi][iy, ix].tolist()
    points = LandscapePoints(
        x=xy[:, 0].tolist(),
        y=xy[:, 1].tolist(),
        wd=cells.axes.wd.values[ix].tolist(),
        lr=cells.axes.lr.values[iy].tolist(),
        mean=mean[iy, ix].tolist(),
        std=clean_list(cells.std[vi][iy, ix]),
        n=cells.n[vi][iy, ix].tolist(),
        n_diverged=cells.n_diverged[vi][iy, ix].tolist(),
        run_ids=run_ids,
    )
    return LandscapeRecord(
        variant=variant,
        metric=cells.metric,
        x=cells.axes.wd.log.tolist(),
        y=cells.axes.lr.log.tolist(),
        wd_values=cells.axes.wd.values.tolist(),
        lr_values=cells.axes.lr.values.tolist(),
        z=z,
        n_points=len(iy),
        n_runs=int(cells.n[vi].sum()),
        points=points,
    )


def landscape_for(
    rows: ResultsTable | Iterable[Mapping[str, Any]],
    variant: str,
    metric: str = "top1",
    *,
    grid: GridSpec | Mapping[str, Any] | None = None,
) -> LandscapeRecord:
    """The landscape of one variant on the study's axes, without the rest of the analysis."""
    table = as_table(rows)
    if variant not in table.variants:
        raise ValueError(
            f"unknown variant {variant!r}; the results have {', '.join(table.variants) or 'none'}"
        )
    return landscape_record(compute_cells(table, metric, grid=grid, variants=[variant]), variant)
