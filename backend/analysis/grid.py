"""The hyperparameter grid in log10 units: given by the study, or inferred from the runs.

A study grid (contracts section 2) has lr/wd values ``centre * 10 ** (step * i)`` for
``i = -(size//2) .. size//2`` plus any extension indices. When no grid is given it is inferred per
axis from the observed values: the step is the smallest gap between distinct log10 values, the
axis is *regular* when every gap is a whole multiple of it (within 1e-3 steps), and the centre is
the lattice point ``floor(n_steps / 2)`` steps above the smallest value (the middle of a 9-point
axis). An axis with a single value borrows the other axis's step (or docs/spec.md default 0.2).

The plotting axes are the union of the grid's lattice values and every observed value, so a grid
that is still filling shows its unfilled points as ``None`` and an off-lattice value still appears.
Values are matched on log10 rounded to 6 decimals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.analysis.records import GridRecord
from backend.analysis.table import ResultsTable

DEFAULT_STEP = 0.2
_KEY_DECIMALS = 6
_REGULAR_TOL = 1e-3


@dataclass(frozen=True)
class GridSpec:
    """The study's grid (contracts section 2), optionally with the lattice indices actually used."""

    lr_centre: float
    wd_centre: float
    step: float = DEFAULT_STEP
    size: int = 9
    lr_indices: tuple[int, ...] | None = None
    wd_indices: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not (self.lr_centre > 0 and self.wd_centre > 0):
            raise ValueError("grid: lr_centre and wd_centre must be > 0")
        if not (math.isfinite(self.step) and self.step > 0):
            raise ValueError("grid: step must be a positive number of log10 units")
        if self.size < 1:
            raise ValueError("grid: size must be >= 1")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GridSpec:
        """Accepts the spec's grid dict; ``extra_lr_indices``/``extra_wd_indices`` add extensions."""
        allowed = {"lr_centre", "wd_centre", "step", "size", "lr_indices", "wd_indices"}
        allowed |= {"extra_lr_indices", "extra_wd_indices"}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise ValueError(f"grid: unknown keys {', '.join(unknown)}")
        size = int(d.get("size", 9))
        base = list(range(-(size // 2), size // 2 + 1))
        axes: dict[str, tuple[int, ...] | None] = {}
        for axis in ("lr", "wd"):
            indices = d.get(f"{axis}_indices")
            extra = d.get(f"extra_{axis}_indices")
            if indices is None and extra is None:
                axes[axis] = None
            else:
                merged = set(base if indices is None else indices) | set(extra or ())
                axes[axis] = tuple(sorted(int(i) for i in merged))
        return cls(
            lr_centre=float(d["lr_centre"]),
            wd_centre=float(d["wd_centre"]),
            step=float(d.get("step", DEFAULT_STEP)),
            size=size,
            lr_indices=axes["lr"],
            wd_indices=axes["wd"],
        )

    def indices(self, axis: str) -> tuple[int, ...]:
        given = self.lr_indices if axis == "lr" else self.wd_indices
        if given is not None:
            return given
        return tuple(range(-(self.size // 2), self.size // 2 + 1))


@dataclass(frozen=True)
class Axis:
    """One axis of the plotting grid (ascending log10 values) and the lattice behind it."""

    log: np.ndarray  # ascending, log10
    values: np.ndarray  # natural units (observed value where one was observed)
    step: float | None
    centre: float | None  # log10 of the lattice centre
    indices: np.ndarray | None  # lattice index of each value; None when the axis is irregular
    regular: bool

    def next_beyond(self, side: str) -> tuple[float, int | None]:
        """log10 value (and lattice index) one step beyond the low or high edge."""
        if side == "low":
            edge, inner = self.log[0], self.log[1] if len(self.log) > 1 else None
        else:
            edge, inner = self.log[-1], self.log[-2] if len(self.log) > 1 else None
        step = (
            self.step if self.step is not None else (abs(edge - inner) if inner is not None else DEFAULT_STEP)
        )
        sign = -1.0 if side == "low" else 1.0
        new = float(edge + sign * step)
        index = None
        if self.indices is not None:
            index = int(self.indices[0] - 1) if side == "low" else int(self.indices[-1] + 1)
            new = float(self.centre + index * self.step)
        return new, index


@dataclass(frozen=True)
class Axes:
    lr: Axis
    wd: Axis
    row_lr: np.ndarray  # per table row: index into lr.log
    row_wd: np.ndarray  # per table row: index into wd.log
    source: str
    warnings: tuple[str, ...]

    def record(self) -> GridRecord:
        centre = None
        if self.lr.centre is not None and self.wd.centre is not None:
            centre = [float(self.wd.centre), float(self.lr.centre)]
        return GridRecord(
            source=self.source,
            regular=self.lr.regular and self.wd.regular,
            lr_values=self.lr.values.tolist(),
            wd_values=self.wd.values.tolist(),
            lr_log=self.lr.log.tolist(),
            wd_log=self.wd.log.tolist(),
            lr_indices=None if self.lr.indices is None else self.lr.indices.tolist(),
            wd_indices=None if self.wd.indices is None else self.wd.indices.tolist(),
            step_lr=self.lr.step,
            step_wd=self.wd.step,
            centre=centre,
        )


def _keys(log_values: np.ndarray) -> np.ndarray:
    return np.round(log_values, _KEY_DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0


def axis_key(log_value: float) -> float:
    """The key a log10 axis value is matched on (6 decimals), for lookups outside this module."""
    return round(float(log_value), _KEY_DECIMALS) + 0.0


def _infer_step(keys: np.ndarray) -> tuple[float | None, bool]:
    if len(keys) < 2:
        return None, True
    gaps = np.diff(keys)
    step = float(gaps.min())
    ratios = gaps / step
    regular = bool(np.all(np.abs(ratios - np.round(ratios)) < _REGULAR_TOL))
    return step, regular


def _axis(
    observed_log: np.ndarray,
    observed_raw: np.ndarray,
    centre: float | None,
    step: float | None,
    lattice: tuple[int, ...] | None,
    fallback_step: float | None,
) -> tuple[Axis, np.ndarray, list[str]]:
    """Axis from observed values and (optionally) a given lattice; returns row indices too."""
    warnings: list[str] = []
    row_keys = _keys(observed_log)
    obs_keys, first = np.unique(row_keys, return_index=True)
    regular = True
    if lattice is None:  # infer
        step, regular = _infer_step(obs_keys)
        if step is None:
            step = fallback_step if fallback_step is not None else DEFAULT_STEP
        if len(obs_keys):
            n_steps = round((obs_keys[-1] - obs_keys[0]) / step)
            centre = float(_keys(obs_keys[0] + step * (n_steps // 2)))
        lattice_keys = np.empty(0)
    else:
        lattice_keys = _keys(centre + step * np.asarray(lattice, dtype=float))
    keys = np.union1d(obs_keys, lattice_keys)
    values = 10.0**keys
    # Show the value as the user wrote it where it was observed.
    pos = np.searchsorted(keys, obs_keys)
    values[pos] = observed_raw[first]
    indices = None
    if regular and centre is not None and step is not None and len(keys):
        ratio = (keys - centre) / step
        if np.all(np.abs(ratio - np.round(ratio)) < _REGULAR_TOL):
            indices = np.round(ratio).astype(int)
        else:
            regular = False
            warnings.append("some values are not on the grid's lattice")
    row_index = np.searchsorted(keys, row_keys)
    axis = Axis(log=keys, values=values, step=step, centre=centre, indices=indices, regular=regular)
    return axis, row_index, warnings


def build_axes(table: ResultsTable, grid: GridSpec | Mapping[str, Any] | None = None) -> Axes:
    """The study's plotting axes and each run's place on them."""
    if grid is not None and not isinstance(grid, GridSpec):
        grid = GridSpec.from_dict(grid)
    lr_log = np.log10(table.lr) if len(table) else np.empty(0)
    wd_log = np.log10(table.wd) if len(table) else np.empty(0)
    warnings: list[str] = []
    if grid is None:
        lr_step, _ = _infer_step(np.unique(_keys(lr_log)))
        wd_step, _ = _infer_step(np.unique(_keys(wd_log)))
        lr_axis, row_lr, w1 = _axis(lr_log, table.lr, None, None, None, wd_step)
        wd_axis, row_wd, w2 = _axis(wd_log, table.wd, None, None, None, lr_step)
        source = "inferred"
        for name, axis in (("lr", lr_axis), ("wd", wd_axis)):
            if not axis.regular and len(axis.log) > 1:
                warnings.append(f"the observed {name} values are not evenly spaced in log10")
    else:
        lr_axis, row_lr, w1 = _axis(
            lr_log, table.lr, math.log10(grid.lr_centre), grid.step, grid.indices("lr"), None
        )
        wd_axis, row_wd, w2 = _axis(
            wd_log, table.wd, math.log10(grid.wd_centre), grid.step, grid.indices("wd"), None
        )
        source = "given"
        warnings += [f"lr: {w}" for w in w1] + [f"wd: {w}" for w in w2]
    return Axes(
        lr=lr_axis,
        wd=wd_axis,
        row_lr=row_lr.astype(np.int64),
        row_wd=row_wd.astype(np.int64),
        source=source,
        warnings=tuple(warnings),
    )
