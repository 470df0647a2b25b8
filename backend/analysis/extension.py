"""Grid extension proposal (docs/spec.md section 5, auto-extension).

For every side of the grid (lr low / high, wd low / high) where a point of the variant's 1.0-ROI
lies on the grid's edge, propose the next row or column one step beyond that edge. The edge is the
edge of the study's axes (the given grid's lattice, or the observed values when inferred). Nothing
is proposed when the ROI is enclosed. The points to add are the full new rows (across every wd
value, old and new) and the full new columns (across every old lr value): the corners are
included once. One round only; the scheduler repeats until none is needed or its budget is spent.
When an axis is irregular the new value is one gap (the outermost one) beyond the edge and the
lattice index is ``None``.
"""

from __future__ import annotations

import numpy as np

from backend.analysis.grid import Axis
from backend.analysis.records import ExtensionRecord, ExtensionSide, clean_points

EXTENSION_LEVEL = 1.0


def propose_extension(
    roi_lr_index: np.ndarray,
    roi_wd_index: np.ndarray,
    lr_axis: Axis,
    wd_axis: Axis,
    *,
    level: float = EXTENSION_LEVEL,
) -> ExtensionRecord:
    """Rows/columns to add for an ROI given by its points' indices into the lr and wd axes."""
    iy = np.asarray(roi_lr_index, dtype=int)
    ix = np.asarray(roi_wd_index, dtype=int)
    if iy.size == 0:
        return ExtensionRecord(
            level=float(level),
            needed=False,
            sides=[],
            new_lr_values=[],
            new_wd_values=[],
            points=[],
            n_points=0,
            edge_points=[],
            reason="no results: the ROI is empty",
        )
    ny, nx = len(lr_axis.log), len(wd_axis.log)
    sides: list[ExtensionSide] = []
    on_edge = np.zeros(iy.size, dtype=bool)
    checks = (
        ("lr", "low", iy == 0, lr_axis),
        ("lr", "high", iy == ny - 1, lr_axis),
        ("wd", "low", ix == 0, wd_axis),
        ("wd", "high", ix == nx - 1, wd_axis),
    )
    for axis_name, side, hit, axis in checks:
        if hit.any():
            on_edge |= hit
            log10, index = axis.next_beyond(side)
            sides.append(
                ExtensionSide(axis=axis_name, side=side, log10=log10, value=10.0**log10, index=index)
            )
    new_lr = np.array([s.log10 for s in sides if s.axis == "lr"])
    new_wd = np.array([s.log10 for s in sides if s.axis == "wd"])
    all_wd = np.sort(np.concatenate([wd_axis.log, new_wd]))
    rows = [(y, x) for y in new_lr for x in all_wd] + [(y, x) for y in lr_axis.log for x in new_wd]
    rows.sort()
    points = np.array([(x, y) for y, x in rows], dtype=float).reshape(-1, 2)
    edge = np.column_stack([wd_axis.log[ix[on_edge]], lr_axis.log[iy[on_edge]]])
    return ExtensionRecord(
        level=float(level),
        needed=bool(sides),
        sides=sides,
        new_lr_values=(10.0 ** np.sort(new_lr)).tolist(),
        new_wd_values=(10.0 ** np.sort(new_wd)).tolist(),
        points=clean_points(points),
        n_points=len(points),
        edge_points=clean_points(edge),
        reason=None if sides else "the ROI is enclosed by the grid",
    )
