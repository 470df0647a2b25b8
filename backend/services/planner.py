"""Run planning (docs/spec.md section 2, docs/contracts.md section 3): a pure function of a validated spec.

No database here: runs refer to each other by `RunKey`, and the caller resolves keys to ids
(`backend.services.study_creation`, `study_extension`). For an extension, pass the new grid points; the runs they need and
that already exist (a variant's prune run) are referenced by key all the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from backend.run_states import RUN_KINDS
from backend.spec import PRUNED_KINDS, QUANTISED_KINDS, StudySpec

# (variant name, run kind, grid_i, grid_j, seed); grid indices are None for prune / measure / scan runs.
RunKey = tuple[str, str, int | None, int | None, int]


@dataclass(frozen=True)
class PlannedVariant:
    name: str
    kind: str
    spec: dict[str, Any]
    source: str | None  # the variant whose models it compresses (base for pruned ones)


@dataclass(frozen=True)
class PlannedRun:
    variant: str
    kind: str  # train | prune | quantise | measure | scan
    seed: int
    grid_i: int | None = None
    grid_j: int | None = None
    lr: float | None = None
    wd: float | None = None
    depends_on: RunKey | None = None

    @property
    def key(self) -> RunKey:
        return (self.variant, self.kind, self.grid_i, self.grid_j, self.seed)

    @property
    def initial_status(self) -> str:
        """`blocked` while it waits on another run, else `pending` (ready to dispatch)."""
        return "pending" if self.depends_on is None else "blocked"


@dataclass
class Plan:
    variants: list[PlannedVariant] = field(default_factory=list)
    runs: list[PlannedRun] = field(default_factory=list)

    def count_by_kind(self) -> dict[str, int]:
        counts = dict.fromkeys(RUN_KINDS, 0)
        for run in self.runs:
            counts[run.kind] += 1
        counts["total"] = len(self.runs)
        return counts


def train_key(variant: str, i: int, j: int, seed: int) -> RunKey:
    return (variant, "train", i, j, seed)


def prune_key(variant: str) -> RunKey:
    return (variant, "prune", None, None, 0)


def quantise_key(variant: str, i: int, j: int, seed: int) -> RunKey:
    return (variant, "quantise", i, j, seed)


def scan_key(variant: str) -> RunKey:
    return (variant, "scan", None, None, 0)


def plan_variants(spec: StudySpec) -> list[PlannedVariant]:
    base = spec.base_variant.name
    planned = []
    for v in spec.variants:
        source = base if v.kind in PRUNED_KINDS else getattr(v, "source", None)
        planned.append(PlannedVariant(v.name, v.kind, v.model_dump(mode="json"), source))
    return planned


def plan_study(spec: StudySpec, points: Iterable[tuple[int, int]] | None = None) -> Plan:
    """Every run of `spec` (or, with `points`, only the runs of those grid points (i, j)).

    Order is topological: a run comes after the run it depends on, whenever both are planned.
    Non-grid runs (prune, measure, scan) are planned only for a whole study (`points is None`).

    Scans: one scan run per scanned variant (`StudySpec.scanned_variants`), running every scan
    that variant gets, on its model trained at the prior (seed 0), and blocked on that train run.
    Not on a pruned variant's best run: that is known only once its grid has finished, and an
    extension can move it; the prior is the point every variant shares (docs/spec.md section 5's
    "not retuning" comparison).
    """
    whole = points is None
    grid = spec.grid
    grid_points = [(i, j) for i in grid.lr_indices for j in grid.wd_indices] if whole else sorted(set(points))
    seeds = range(spec.repeats)
    base = spec.base_variant.name
    plan = Plan(variants=plan_variants(spec) if whole else [])

    def trains(variant: str, depends_on: RunKey | None) -> None:
        for i, j in grid_points:
            for seed in seeds:
                plan.runs.append(
                    PlannedRun(variant, "train", seed, i, j, grid.lr_at(i), grid.wd_at(j), depends_on)
                )

    # 1. base training at every point x seed; its measure run measures the model trained at the prior.
    trains(base, None)
    if whole:
        plan.runs.append(PlannedRun(base, "measure", 0, depends_on=train_key(base, 0, 0, 0)))
    # 2-3. per pruned variant: prune on the base run at the prior (seed 0), then retrain the grid.
    for v in spec.variants:
        if v.kind not in PRUNED_KINDS:
            continue
        if whole:
            plan.runs.append(PlannedRun(v.name, "prune", 0, depends_on=train_key(base, 0, 0, 0)))
            plan.runs.append(PlannedRun(v.name, "measure", 0, depends_on=prune_key(v.name)))
        trains(v.name, prune_key(v.name))
    # 4-5. per quantised variant: quantise each source train run; measure the model the quantise run
    # at the prior made (no third quantisation).
    for v in spec.variants:
        if v.kind not in QUANTISED_KINDS:
            continue
        for i, j in grid_points:
            for seed in seeds:
                plan.runs.append(
                    PlannedRun(
                        v.name,
                        "quantise",
                        seed,
                        i,
                        j,
                        grid.lr_at(i),
                        grid.wd_at(j),
                        depends_on=train_key(v.source, i, j, seed),
                    )
                )
        if whole:
            plan.runs.append(PlannedRun(v.name, "measure", 0, depends_on=quantise_key(v.name, 0, 0, 0)))
    # 6. sensitivity scans of the models trained at the prior (no retraining).
    if whole:
        for name in spec.scanned_variants:
            plan.runs.append(PlannedRun(name, "scan", 0, depends_on=train_key(name, 0, 0, 0)))
    return plan


@dataclass(frozen=True)
class VariantRunCounts:
    name: str
    kind: str
    source: str | None
    train: int
    prune: int
    quantise: int
    measure: int
    scan: int
    total: int
    iterations: int | None  # prune -> retrain rounds of a pruned variant (None: not pruned)
    prune_epochs: int  # epochs its prune run retrains (iterations x epochs per round; 0: one shot)


def prune_epochs(spec: StudySpec, variant: Any) -> int:
    """Epochs the prune run of `variant` trains: none for one-shot pruning, else every round
    retrains finetune_epochs (finetune) or the full recipe (scratch, rewind)."""
    iterations = getattr(variant, "iterations", 1)
    if variant.kind not in PRUNED_KINDS or iterations <= 1:
        return 0
    per_round = variant.finetune_epochs if variant.retrain == "finetune" else spec.recipe.epochs
    return iterations * per_round


@dataclass(frozen=True)
class PlanSummary:
    """What a whole-study plan holds, for a preview before anything is stored."""

    run_counts: dict[str, int]
    variants: list[VariantRunCounts]
    grid_points: int
    repeats: int
    lr_values: list[float]
    wd_values: list[float]


def summarise_plan(spec: StudySpec) -> PlanSummary:
    """Run counts per variant and in total, and the grid's values, of `plan_study(spec)`."""
    plan = plan_study(spec)
    per_variant: dict[str, dict[str, int]] = {v.name: dict.fromkeys(RUN_KINDS, 0) for v in plan.variants}
    for run in plan.runs:
        per_variant[run.variant][run.kind] += 1
    grid = spec.grid
    return PlanSummary(
        run_counts=plan.count_by_kind(),
        variants=[
            VariantRunCounts(
                v.name,
                v.kind,
                v.source,
                **per_variant[v.name],
                total=sum(per_variant[v.name].values()),
                iterations=getattr(spec.variant(v.name), "iterations", None),
                prune_epochs=prune_epochs(spec, spec.variant(v.name)),
            )
            for v in plan.variants
        ],
        grid_points=grid.n_points,
        repeats=spec.repeats,
        lr_values=[grid.lr_at(i) for i in grid.lr_indices],
        wd_values=[grid.wd_at(j) for j in grid.wd_indices],
    )


def extension_points(
    old_lr_range: tuple[int, int],
    old_wd_range: tuple[int, int],
    new_lr_range: tuple[int, int],
    new_wd_range: tuple[int, int],
) -> list[tuple[int, int]]:
    """Grid points (i, j) inside the new ranges and outside the old ones."""
    return [
        (i, j)
        for i in range(new_lr_range[0], new_lr_range[1] + 1)
        for j in range(new_wd_range[0], new_wd_range[1] + 1)
        if not (old_lr_range[0] <= i <= old_lr_range[1] and old_wd_range[0] <= j <= old_wd_range[1])
    ]
