"""Pruning plans as pure functions: layer sizes + filter L1 norms + a FLOPs model -> kept counts.

A plan here is `kept[layer] = number of filters left`. Which filters go is always the same rule:
within a layer, the ones with the smallest L1 norm (H. Li et al. 2017), ties broken by index.
The nonuniform method's single global ranking removes, in any layer, exactly that layer's lowest
filters too, so both methods share `filters_to_remove`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch

from workers.engine.errors import PruningError

# docs/spec.md section 4: the pruned model's FLOPs / base FLOPs must be within this of the target.
FLOPS_TOLERANCE = 0.01

# floor(C * (1 - p)) in floats can land just under an integer (10 * (1 - 0.3) = 6.999...);
# this nudge makes the floor mean what the user wrote.
_FLOOR_EPS = 1e-9

FlopsOf = Callable[[Mapping[str, int]], int]


def kept_for_fraction(channels: int, fraction: float) -> int:
    """Filters left after removing `fraction` of `channels`: floor(C * (1 - fraction)), at least 1."""
    return max(1, math.floor(channels * (1.0 - fraction) + _FLOOR_EPS))


def uniform_kept(channels: Mapping[str, int], fraction: float) -> dict[str, int]:
    return {name: kept_for_fraction(count, fraction) for name, count in channels.items()}


def uniform_fractions(channels: Mapping[str, int]) -> list[float]:
    """Every fraction at which some layer's kept count changes (1 - k/C), plus 0, ascending.

    Between two consecutive values every layer's kept count is constant, so searching these is
    searching every distinct uniform plan.
    """
    fractions = {0.0}
    for count in set(channels.values()):
        fractions.update(1.0 - k / count for k in range(1, count))
    return sorted(fractions)


def plan_uniform(
    channels: Mapping[str, int], flops_of: FlopsOf, base_flops: int, flops_ratio: float
) -> tuple[float, dict[str, int]]:
    """The uniform fraction whose FLOPs ratio is closest to `flops_ratio` (ties: fewer removed)."""
    best: tuple[float, float, dict[str, int]] | None = None
    for fraction in uniform_fractions(channels):
        kept = uniform_kept(channels, fraction)
        gap = abs(flops_of(kept) / base_flops - flops_ratio)
        if best is None or gap < best[0] - 1e-15:
            best = (gap, fraction, kept)
    assert best is not None
    # Uniform steps are coarse (one filter of a 16-wide stage moves ResNet-56 by ~2 % of its FLOPs),
    # so the closest uniform plan is returned with its achieved ratio; only a target below what is
    # reachable at all is an error.
    _check_reachable(flops_ratio, flops_of, channels, base_flops)
    return best[1], best[2]


def global_removal_order(norms: Mapping[str, torch.Tensor]) -> list[tuple[str, int]]:
    """One ranking of all removable filters, lowest L1 norm first.

    Each layer's highest-norm filter is left out of the ranking so that no layer is emptied
    (docs/spec.md: keep >= 1 filter per layer); ties go by layer order, then filter index.
    """
    entries: list[tuple[float, int, int, str]] = []
    for layer_index, (name, layer_norms) in enumerate(norms.items()):
        values = layer_norms.tolist()
        keep = max(range(len(values)), key=lambda i: (values[i], -i))
        entries += [(value, layer_index, i, name) for i, value in enumerate(values) if i != keep]
    entries.sort()
    return [(name, index) for _, _, index, name in entries]


def kept_after_removing(
    channels: Mapping[str, int], order: Sequence[tuple[str, int]], count: int
) -> dict[str, int]:
    kept = dict(channels)
    for name, _ in order[:count]:
        kept[name] -= 1
    return kept


def plan_nonuniform(
    channels: Mapping[str, int],
    norms: Mapping[str, torch.Tensor],
    flops_of: FlopsOf,
    base_flops: int,
    flops_ratio: float,
) -> dict[str, int]:
    """Remove the globally lowest-ranked filters; the count removed is searched so the FLOPs ratio
    comes as close to `flops_ratio` as one filter allows (the ratio falls as the count grows)."""
    order = global_removal_order(norms)

    def ratio(count: int) -> float:
        return flops_of(kept_after_removing(channels, order, count)) / base_flops

    # Smallest count whose ratio is <= the target (len(order) when even all of them is not enough).
    low, high = 0, len(order)
    while low < high:
        middle = (low + high) // 2
        if ratio(middle) <= flops_ratio:
            high = middle
        else:
            low = middle + 1
    candidates = [c for c in (low - 1, low) if 0 <= c <= len(order)]
    count = min(candidates, key=lambda c: (abs(ratio(c) - flops_ratio), c))
    _check_reached(abs(ratio(count) - flops_ratio), flops_ratio, flops_of, channels, base_flops, "nonuniform")
    return kept_after_removing(channels, order, count)


def _check_reachable(
    flops_ratio: float, flops_of: FlopsOf, channels: Mapping[str, int], base_flops: int
) -> None:
    floor = flops_of(dict.fromkeys(channels, 1)) / base_flops
    if flops_ratio < floor - FLOPS_TOLERANCE:
        raise PruningError(
            f"flops_ratio {flops_ratio:g} is unreachable: with one filter left in every prunable "
            f"layer the model keeps {floor:.4f} of its FLOPs (the first conv, the residual convs "
            "and the classifier are never pruned)"
        )


def _check_reached(
    gap: float,
    flops_ratio: float,
    flops_of: FlopsOf,
    channels: Mapping[str, int],
    base_flops: int,
    method: str,
) -> None:
    if gap <= FLOPS_TOLERANCE:
        return
    floor = flops_of(dict.fromkeys(channels, 1)) / base_flops
    if flops_ratio < floor:
        raise PruningError(
            f"flops_ratio {flops_ratio:g} is unreachable: with one filter left in every prunable "
            f"layer the model keeps {floor:.4f} of its FLOPs (the first conv, the residual convs "
            "and the classifier are never pruned)"
        )
    raise PruningError(
        f"flops_ratio {flops_ratio:g} cannot be met within {FLOPS_TOLERANCE} by {method} pruning "
        f"(closest reachable differs by {gap:.4f}); pick a nearby ratio"
    )


def filters_to_remove(norms: Mapping[str, torch.Tensor], kept: Mapping[str, int]) -> dict[str, list[int]]:
    """Per layer, the indices of its lowest-L1 filters so that `kept[layer]` remain (sorted)."""
    removal: dict[str, list[int]] = {}
    for name, count in kept.items():
        values = norms[name].tolist()
        drop = len(values) - count
        if drop <= 0:
            continue
        ranked = sorted(range(len(values)), key=lambda i: (values[i], i))
        removal[name] = sorted(ranked[:drop])
    return removal


def validate_plan(plan: Mapping[str, float], channels: Mapping[str, int]) -> dict[str, int]:
    """Plan (layer name -> fraction of its filters to remove) -> kept counts; errors name the key."""
    if not isinstance(plan, Mapping):
        raise PruningError(f"plan must map layer names to fractions, got {type(plan).__name__}")
    kept: dict[str, int] = {}
    for name, fraction in plan.items():
        if name not in channels:
            raise PruningError(
                f"plan[{name!r}]: not a prunable layer of this model; prunable: {', '.join(channels)}"
            )
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 <= fraction < 1:
            raise PruningError(f"plan[{name!r}]: fraction must be a number in [0, 1), got {fraction!r}")
        kept[name] = kept_for_fraction(channels[name], float(fraction))
    return kept
