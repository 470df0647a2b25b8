"""The study spec (docs/contracts.md section 2): pydantic models shared by the API and the workers.

Every validation message names the field it is about; unknown keys are rejected. The API must not
import torch, so models and data sets are checked against the torch-free `workers.engine.catalog`.

Grid convention: axis i is the learning rate, axis j the weight decay;
lr_i = lr_centre * 10 ** (step * i), wd_j = wd_centre * 10 ** (step * j); the prior is i = j = 0.
`lr_range` / `wd_range` are inclusive index ranges; by default -(size // 2) .. size // 2, and an
extension widens them (a study's stored spec always holds the ranges it has now).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from workers.engine import catalog
from workers.engine.errors import DataError

NAME_MAX = 200
VARIANT_NAME_MAX = 64
VARIANT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
MAX_STEP = 3.0  # log10 units between grid neighbours
# Hard sanity bounds, checked before anything is built from a grid (the service's own, smaller
# limits come after: settings.max_grid_size, max_runs_per_study). A grid index beyond +-MAX_INDEX
# or an axis longer than MAX_AXIS_POINTS is never a study anyone means.
MAX_AXIS_POINTS = 1001
MAX_INDEX = 10_000
# Every grid value must be a finite, normal float > 0: its log10 must stay within these bounds.
GRID_LOG10_MIN, GRID_LOG10_MAX = -300.0, 300.0
# auto_extend.max_points can never exceed the points of the largest grid there is.
MAX_AUTO_POINTS = MAX_AXIS_POINTS * MAX_AXIS_POINTS

# Sensitivity scans (docs/spec.md section 4): a few scans per study, each a short list of fractions; a
# layer scan evaluates the validation set layers x fractions times.
MAX_SCANS = 8
MAX_SCAN_FRACTIONS = 20
DEFAULT_SCAN_FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
# Iterative pruning: rounds of prune -> retrain per pruned variant (each round retrains).
MAX_ITERATIONS = 10

PRUNED_KINDS = ("structured", "unstructured")
QUANTISED_KINDS = ("int8", "mixed", "fp16")
TRAINED_KINDS = ("base", *PRUNED_KINDS)


class SpecError(ValueError):
    """A spec problem found outside pydantic (limits from the settings); `field` is a dotted path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    @property
    def loc(self) -> list[str | int]:
        return [int(p) if p.isdigit() else p for p in self.field.split(".")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # Postgres text cannot hold NUL; refuse it here rather than fail at INSERT.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("text must not contain NUL characters")
        return value


class DatasetSpec(_Strict):
    name: str = Field(min_length=1, max_length=64)
    path: str | None = Field(None, max_length=4096)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    val_fraction: float = Field(0.2, gt=0, lt=1)
    synthetic_shape: tuple[int, int, int] | None = None
    synthetic_classes: int | None = Field(None, ge=2, le=100000)
    synthetic_size: int | None = Field(None, ge=1, le=10_000_000)

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        if name not in catalog.DATASETS:
            raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(catalog.DATASETS))}")
        return name

    @field_validator("synthetic_shape")
    @classmethod
    def _positive_shape(cls, shape: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        if shape is not None and any(d < 1 for d in shape):
            raise ValueError("every dimension of synthetic_shape must be >= 1")
        if shape is not None and any(d > catalog.SYNTHETIC_MAX_SIDE for d in shape):
            raise ValueError(f"every dimension of synthetic_shape must be <= {catalog.SYNTHETIC_MAX_SIDE}")
        return shape

    @model_validator(mode="after")
    def _format(self) -> DatasetSpec:
        # Format only: whether the files exist, and lie inside the allowed data roots, depends on
        # the server's settings (backend/services/dataset_paths.py; the worker checks again), and a
        # stored spec must still parse after those change.
        info_ds = catalog.DATASETS[self.name]
        if info_ds.needs_path and not self.path:
            raise ValueError(f"dataset.path is required for {self.name}; expected {info_ds.layout}")
        if self.name == "synthetic":
            try:  # the default cap here; the API checks the operator's setting too
                catalog.check_synthetic_size(
                    self.synthetic_shape, self.synthetic_size, catalog.MAX_DATASET_BYTES
                )
            except DataError as exc:
                raise ValueError(str(exc)) from None
        return self


class ModelSpec(_Strict):
    name: str = Field(min_length=1, max_length=64)
    num_classes: int | None = Field(None, ge=2, le=100000)
    input_shape: tuple[int, int, int] | None = None

    @field_validator("name")
    @classmethod
    def _known_model(cls, name: str) -> str:
        if name not in catalog.MODELS:
            raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(catalog.MODELS))}")
        return name

    @field_validator("input_shape")
    @classmethod
    def _positive_shape(cls, shape: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        if shape is not None and any(d < 1 for d in shape):
            raise ValueError("every dimension of input_shape must be >= 1")
        return shape


class RecipeSpec(_Strict):
    """The engine's Recipe minus lr / weight_decay (the grid gives them) and seed (repeats do)."""

    epochs: int = Field(180, ge=1, le=10000)
    batch_size: int = Field(128, ge=1, le=65536)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = Field(0.1, gt=0, le=1)
    augment: bool = True
    init: Literal["kaiming"] = "kaiming"
    amp: bool = False
    eval_batch_size: int = Field(1000, ge=1, le=65536)
    # Speed switches: they do not change the recipe's meaning (channels_last, compile,
    # cpu_malloc_cache, cuda_graph, fused) or are opt-in because they change numerics (amp). Each is recorded
    # with the run; the engine reports which took effect on the run's device (workers/engine/training.py).
    channels_last: bool = True  # NHWC model and batches, CUDA and CPU (faster on both, measured)
    compile: bool = False
    cpu_malloc_cache: bool = True  # CPU runs: glibc keeps freed memory for the run (no page faults)
    cuda_graph: bool = True  # CUDA runs: each full-batch step replayed from one captured CUDA graph
    # a worker may train runs of one variant together as one fused model (docs/spec.md section 8;
    # its group size is the worker's PRUNESCAPE_FUSED_GROUP_SIZE); false: every run alone
    fused: bool = True

    @field_validator("milestones")
    @classmethod
    def _fractions(cls, milestones: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < m < 1 for m in milestones):
            raise ValueError("milestones are fractions of the epochs, each in (0, 1)")
        if any(b <= a for a, b in zip(milestones, milestones[1:], strict=False)):
            raise ValueError("milestones must be strictly increasing")
        return milestones

    def to_recipe_dict(self, *, lr: float, weight_decay: float, seed: int) -> dict[str, Any]:
        """The engine's `Recipe.from_dict` input for one run."""
        return {**self.model_dump(mode="json"), "lr": lr, "weight_decay": weight_decay, "seed": seed}


class AutoExtendSpec(_Strict):
    """Auto-extension of the grid (SPEC section 5; docs/spec.md "Auto-extension"): off when absent."""

    max_points: int = Field(
        ge=1,
        le=MAX_AUTO_POINTS,
        description="grid points the extensions may add, per variant (every variant gets the same points); "
        "also at most the service's max_runs_per_study",
    )
    level: float = Field(
        1.0, gt=0, le=100, description="the x-ROI (percentage points) whose touching an edge triggers a row"
    )


class GridSpec(_Strict):
    lr_centre: float = Field(gt=0, description="learning rate at the prior (grid centre)")
    wd_centre: float = Field(gt=0, description="weight decay at the prior (grid centre)")
    step: float = Field(0.2, gt=0, le=MAX_STEP, description="log10 units between neighbours")
    size: int = Field(
        9, ge=1, le=MAX_AXIS_POINTS, description="points per axis; odd, so the prior is the centre"
    )
    lr_range: tuple[int, int] | None = Field(None, description="inclusive lr index range (extensions)")
    wd_range: tuple[int, int] | None = Field(None, description="inclusive wd index range (extensions)")
    auto_extend: AutoExtendSpec | None = Field(None, description="extend the grid until the ROI is enclosed")

    @field_validator("size")
    @classmethod
    def _odd(cls, size: int) -> int:
        if size % 2 == 0:
            raise ValueError(f"size must be odd so the prior is the centre point (got {size})")
        return size

    @field_validator("lr_range", "wd_range")
    @classmethod
    def _bounded_range(cls, rng: tuple[int, int] | None) -> tuple[int, int] | None:
        if rng is None:
            return rng
        lo, hi = rng
        if not (-MAX_INDEX <= lo <= hi <= MAX_INDEX):
            raise ValueError(f"an index range low..high with -{MAX_INDEX} <= low <= high <= {MAX_INDEX}")
        if hi - lo + 1 > MAX_AXIS_POINTS:
            raise ValueError(f"{hi - lo + 1} points per axis is above {MAX_AXIS_POINTS}")
        return rng

    @model_validator(mode="after")
    def _ranges(self) -> GridSpec:
        half = self.size // 2
        for name in ("lr_range", "wd_range"):
            rng = getattr(self, name)
            if rng is None:
                setattr(self, name, (-half, half))
                continue
            lo, hi = rng
            if lo > -half or hi < half:
                raise ValueError(f"{name} must contain the base grid {-half}..{half} (got {lo}..{hi})")
        for axis, centre in (("learning rate", self.lr_centre), ("weight decay", self.wd_centre)):
            lo, hi = self.lr_range if axis == "learning rate" else self.wd_range  # type: ignore[misc]
            for index in (lo, hi):
                exponent = math.log10(centre) + self.step * index
                if not GRID_LOG10_MIN <= exponent <= GRID_LOG10_MAX:
                    raise ValueError(
                        f"the {axis} at grid index {index} would be 1e{exponent:+.0f}: every grid value must "
                        f"be a finite number > 0 (between 1e{GRID_LOG10_MIN:.0f} and 1e+{GRID_LOG10_MAX:.0f}); "
                        "use a smaller step, fewer points or another centre"
                    )
        return self

    @property
    def lr_count(self) -> int:
        lo, hi = self.lr_range  # type: ignore[misc]
        return hi - lo + 1

    @property
    def wd_count(self) -> int:
        lo, hi = self.wd_range  # type: ignore[misc]
        return hi - lo + 1

    @property
    def lr_indices(self) -> list[int]:
        lo, hi = self.lr_range  # type: ignore[misc]
        return list(range(lo, hi + 1))

    @property
    def wd_indices(self) -> list[int]:
        lo, hi = self.wd_range  # type: ignore[misc]
        return list(range(lo, hi + 1))

    def lr_at(self, i: int) -> float:
        return grid_value(self.lr_centre, self.step, i)

    def wd_at(self, j: int) -> float:
        return grid_value(self.wd_centre, self.step, j)

    @property
    def n_points(self) -> int:
        return self.lr_count * self.wd_count


def grid_value(centre: float, step: float, index: int) -> float:
    """centre * 10 ** (step * index), rounded to 12 significant digits so values compare exactly."""
    return float(f"{centre * 10 ** (step * index):.12g}")


class _VariantBase(_Strict):
    name: str = Field(min_length=1, max_length=VARIANT_NAME_MAX)

    @field_validator("name")
    @classmethod
    def _name_chars(cls, name: str) -> str:
        if not VARIANT_NAME_RE.match(name):
            raise ValueError("variant names use letters, digits and _ . + - and start with a letter or digit")
        return name


class BaseVariant(_VariantBase):
    kind: Literal["base"]


class _PrunedVariant(_VariantBase):
    retrain: Literal["scratch", "finetune", "rewind"] = "scratch"
    finetune_epochs: int | None = Field(None, ge=1, le=10000)
    rewind_epoch: int | None = Field(None, ge=0, le=10000)
    iterations: int = Field(
        1,
        ge=1,
        le=MAX_ITERATIONS,
        description=(
            "reach the target in this many equal steps, retraining at the prior after each: "
            "finetune_epochs per step (finetune), the full recipe from a He re-initialisation "
            "(scratch), the full recipe from the base weights at rewind_epoch (rewind, unstructured)"
        ),
    )

    @model_validator(mode="after")
    def _retrain_fields(self) -> _PrunedVariant:
        if self.retrain == "finetune" and self.finetune_epochs is None:
            raise ValueError("finetune_epochs is required when retrain is 'finetune'")
        if self.retrain != "finetune" and self.finetune_epochs is not None:
            raise ValueError("finetune_epochs is only allowed when retrain is 'finetune'")
        if self.retrain == "rewind" and self.rewind_epoch is None:
            raise ValueError("rewind_epoch is required when retrain is 'rewind'")
        if self.retrain != "rewind" and self.rewind_epoch is not None:
            raise ValueError("rewind_epoch is only allowed when retrain is 'rewind'")
        return self


class StructuredVariant(_PrunedVariant):
    kind: Literal["structured"]
    method: Literal["uniform", "nonuniform"] = "uniform"
    flops_ratio: float = Field(gt=0, le=1, description="kept fraction of the base FLOPs, in (0, 1]")

    @model_validator(mode="after")
    def _iterations(self) -> StructuredVariant:
        if self.iterations > 1 and self.retrain == "rewind":
            raise ValueError(
                "iterations > 1 cannot use retrain 'rewind' on a structured variant: the base weights "
                "at rewind_epoch do not fit the pruned filters; use 'scratch' or 'finetune'"
            )
        if self.iterations > 1 and self.flops_ratio >= 1:
            raise ValueError("iterations > 1 needs flops_ratio < 1 (there is nothing to prune in steps)")
        return self


class UnstructuredVariant(_PrunedVariant):
    kind: Literal["unstructured"]
    amount: float = Field(ge=0, lt=1, description="fraction of prunable weights zeroed, in [0, 1)")
    scope: Literal["layer", "global"] = "layer"

    @model_validator(mode="after")
    def _iterations(self) -> UnstructuredVariant:
        if self.iterations > 1 and self.amount <= 0:
            raise ValueError("iterations > 1 needs amount > 0 (there is nothing to prune in steps)")
        return self


class QuantisedVariant(_VariantBase):
    kind: Literal["int8", "mixed", "fp16"]
    source: str = Field(min_length=1, max_length=VARIANT_NAME_MAX)
    calibration_batches: int = Field(10, ge=1, le=10000)


class ScanSpec(_Strict):
    """One sensitivity scan (docs/spec.md section 4): the accuracy of a trained model pruned by each
    fraction without retraining. `on`: `base` scans the base model trained at the prior; `all`
    also scans every structured / unstructured variant's model trained at the prior."""

    kind: Literal["structured", "unstructured"]
    scope: Literal["layer", "global"] = "global"
    fractions: list[float] = Field(
        default_factory=lambda: list(DEFAULT_SCAN_FRACTIONS),
        min_length=1,
        max_length=MAX_SCAN_FRACTIONS,
        description="fractions of weights (unstructured) or of each layer's filters (structured) "
        "removed, each in [0, 1); stored sorted, duplicates dropped; 0 is the unpruned reference",
    )
    on: Literal["base", "all"] = "base"

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, fractions: list[float]) -> list[float]:
        bad = [f for f in fractions if not 0 <= f < 1]
        if bad:
            raise ValueError(f"every fraction must lie in [0, 1) (got {bad[0]:g})")
        return sorted(set(fractions))


Variant = Annotated[
    BaseVariant | StructuredVariant | UnstructuredVariant | QuantisedVariant, Field(discriminator="kind")
]


class StudySpec(_Strict):
    name: str = Field(min_length=1, max_length=NAME_MAX)
    dataset: DatasetSpec
    model: ModelSpec
    recipe: RecipeSpec = Field(default_factory=RecipeSpec)
    grid: GridSpec
    repeats: int = Field(1, ge=1, le=100)
    variants: list[Variant] = Field(min_length=1, max_length=64)
    scans: list[ScanSpec] = Field(default_factory=list, max_length=MAX_SCANS)

    @field_validator("variants")
    @classmethod
    def _variants_consistent(cls, variants: list[Any]) -> list[Any]:
        names = [v.name for v in variants]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate variant names: {', '.join(duplicates)}")
        bases = [v.name for v in variants if v.kind == "base"]
        if len(bases) != 1:
            raise ValueError(f"exactly one variant of kind 'base' is required (found {len(bases)})")
        by_name = {v.name: v for v in variants}
        for v in variants:
            if v.kind in QUANTISED_KINDS:
                source = by_name.get(v.source)
                if source is None:
                    raise ValueError(
                        f"variant {v.name!r}: source {v.source!r} is not a variant of this study"
                    )
                if source.kind in QUANTISED_KINDS:
                    raise ValueError(
                        f"variant {v.name!r}: source {v.source!r} is itself quantised; "
                        "name a base or pruned variant"
                    )
        return variants

    @model_validator(mode="after")
    def _cross_checks(self) -> StudySpec:
        why_not = catalog.MODELS[self.model.name].no_structured_pruning
        for v in self.variants:
            if v.kind == "structured" and why_not:
                raise ValueError(
                    f"variants: {v.name!r} is structured, but {self.model.name} cannot be filter-pruned "
                    f"({why_not}); use kind 'unstructured'"
                )
            if getattr(v, "rewind_epoch", None) is not None and v.rewind_epoch > self.recipe.epochs:
                raise ValueError(
                    f"variants: {v.name!r} rewind_epoch {v.rewind_epoch} is after the last epoch "
                    f"({self.recipe.epochs})"
                )
        for index, scan in enumerate(self.scans):
            if scan.kind == "structured" and why_not:
                raise ValueError(
                    f"scans[{index}]: a structured scan needs filter pruning, but {self.model.name} cannot be "
                    f"filter-pruned ({why_not}); use kind 'unstructured'"
                )
        return self

    @property
    def base_variant(self) -> BaseVariant:
        return next(v for v in self.variants if v.kind == "base")

    def variant(self, name: str) -> Any:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def scans_for(self, variant_kind: str) -> list[tuple[int, ScanSpec]]:
        """(index in `scans`, scan) of the scans a variant of `variant_kind` gets at its prior."""
        if variant_kind == "base":
            return list(enumerate(self.scans))
        if variant_kind in PRUNED_KINDS:
            return [(i, s) for i, s in enumerate(self.scans) if s.on == "all"]
        return []

    @property
    def scanned_variants(self) -> list[str]:
        """The variants that get a scan run (base first, then pruned ones in spec order)."""
        return [v.name for v in self.variants if self.scans_for(v.kind)]


def grid_values(grid: GridSpec) -> tuple[list[float], list[float]]:
    """(learning rates, weight decays) of the grid, in index order."""
    return [grid.lr_at(i) for i in grid.lr_indices], [grid.wd_at(j) for j in grid.wd_indices]


def count_runs(spec: StudySpec) -> dict[str, int]:
    """How many runs the planner makes for `spec`, by kind and in total ("this will plan N runs")."""
    per_variant_trains = spec.grid.n_points * spec.repeats
    counts = {"train": 0, "prune": 0, "quantise": 0, "measure": 0, "scan": 0}
    for v in spec.variants:
        counts["measure"] += 1
        counts["scan"] += 1 if spec.scans_for(v.kind) else 0
        if v.kind == "base":
            counts["train"] += per_variant_trains
        elif v.kind in PRUNED_KINDS:
            counts["prune"] += 1
            counts["train"] += per_variant_trains
        else:
            counts["quantise"] += per_variant_trains
    counts["total"] = sum(counts.values())
    return counts


def check_limits(spec: StudySpec, *, max_grid_size: int, max_runs_per_study: int) -> None:
    """Raise SpecError when the grid or the run count is above the service's caps."""
    for name, count in (("lr_range", spec.grid.lr_count), ("wd_range", spec.grid.wd_count)):
        if count > max_grid_size:
            field = "grid.size" if spec.grid.size > max_grid_size else f"grid.{name}"
            raise SpecError(field, f"{count} points per axis is above the limit of {max_grid_size}")
    auto = spec.grid.auto_extend
    if auto is not None and auto.max_points > max_runs_per_study:
        raise SpecError(
            "grid.auto_extend.max_points",
            f"{auto.max_points} points is above the limit of {max_runs_per_study} runs per study",
        )
    total = count_runs(spec)["total"]
    if total > max_runs_per_study:
        raise SpecError(
            "grid.size",
            f"this spec plans {total} runs, above the limit of {max_runs_per_study} per study; "
            "use a smaller grid, fewer repeats or fewer variants",
        )


def parse_spec(data: Any, *, check_paths: bool = True) -> StudySpec:
    """Validate a spec dict (e.g. the one stored with a study); raises pydantic.ValidationError.

    The model checks format only; `check_paths` is accepted for existing callers and has no effect:
    dataset files are checked against the settings by `backend.services.dataset_paths`.
    """
    del check_paths
    return StudySpec.model_validate(data)
