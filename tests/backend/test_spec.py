"""Study spec validation: every bad field is rejected with its name in the error."""

from __future__ import annotations

import copy
import math

import pytest
from pydantic import ValidationError

from backend.spec import SpecError, check_limits, count_runs, grid_values, parse_spec
from tests.backend.conftest import DEMO_SPEC


def _spec(**changes):
    spec = copy.deepcopy(DEMO_SPEC)
    for path, value in changes.items():
        node = spec
        keys = path.split("__")
        for key in keys[:-1]:
            node = node[int(key)] if key.isdigit() else node[key]
        node[keys[-1]] = value
    return spec


def _error_text(data) -> str:
    with pytest.raises(ValidationError) as info:
        parse_spec(data)
    return "\n".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in info.value.errors())


def test_demo_spec_is_valid_and_defaults_are_filled():
    spec = parse_spec(DEMO_SPEC)
    assert spec.recipe.momentum == 0.9 and spec.recipe.milestones == (0.5, 0.75)
    assert spec.grid.lr_range == (-1, 1)
    lrs, wds = grid_values(spec.grid)
    assert lrs == pytest.approx([0.1 * 10**-0.4, 0.1, 0.1 * 10**0.4])
    assert wds == pytest.approx([1e-4 * 10**-0.4, 1e-4, 1e-4 * 10**0.4])
    assert lrs[1] == 0.1  # the prior exactly


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"model__name": "resnet9000"}, "model.name", "unknown model"),
        ({"dataset__name": "mnist9"}, "dataset.name", "unknown dataset"),
        ({"dataset": {"name": "cifar10"}}, "dataset", "dataset.path is required"),
        # files and data roots are the server's check (tests/backend/test_api_dataset_paths.py)
        (
            {"dataset": {"name": "synthetic", "synthetic_shape": [3, 100000, 100000]}},
            "dataset.synthetic_shape",
            "<= 4096",
        ),
        ({"grid__step": 0}, "grid.step", "greater than 0"),
        ({"grid__step": -0.2}, "grid.step", "greater than 0"),
        ({"grid__size": 0}, "grid.size", "greater than or equal to 1"),
        ({"grid__size": 4}, "grid.size", "odd"),
        ({"grid__lr_centre": -0.1}, "grid.lr_centre", "greater than 0"),
        ({"grid__wd_centre": math.inf}, "grid.wd_centre", "finite"),
        ({"grid__lr_centre": math.nan}, "grid.lr_centre", "finite"),
        ({"recipe__epochs": 0}, "recipe.epochs", "greater than or equal to 1"),
        ({"recipe__momentum": -0.5}, "recipe.momentum", "greater than or equal to 0"),
        ({"recipe__lr": 0.1}, "recipe.lr", "Extra inputs"),
        ({"recipe__milestones": [0.75, 0.5]}, "recipe.milestones", "increasing"),
        ({"repeats": 0}, "repeats", "greater than or equal to 1"),
        ({"surprise": 1}, "surprise", "Extra inputs"),
        ({"name": "x" * 201}, "name", "at most 200"),
        ({"name": ""}, "name", "at least 1"),
        ({"variants__1__flops_ratio": 0}, "variants.1.structured.flops_ratio", "greater than 0"),
        ({"variants__1__flops_ratio": 1.5}, "variants.1.structured.flops_ratio", "less than or equal to 1"),
        ({"variants__1__name": "bad name!"}, "variants.1.structured.name", "letters"),
        ({"variants__1__kind": "magic"}, "variants.1", "magic"),
        ({"variants__2__source": "nope"}, "variants", "source 'nope'"),
        ({"variants__1__name": "base"}, "variants", "duplicate variant names: base"),
        ({"variants__1__retrain": "finetune"}, "variants.1.structured", "finetune_epochs is required"),
    ],
)
def test_bad_field_is_named(changes, field, words):
    text = _error_text(_spec(**changes))
    assert field in text and words in text, text


def test_unstructured_amount_range():
    variant = {"name": "sp", "kind": "unstructured", "amount": 1.0}
    text = _error_text({**DEMO_SPEC, "variants": [*DEMO_SPEC["variants"], variant]})
    assert "variants.3.unstructured.amount" in text and "less than 1" in text
    variant["amount"] = -0.1
    assert "greater than or equal to 0" in _error_text(
        {**DEMO_SPEC, "variants": [*DEMO_SPEC["variants"], variant]}
    )


def test_exactly_one_base_and_no_quantised_source():
    two_bases = _spec()
    two_bases["variants"].append({"name": "base2", "kind": "base"})
    assert "exactly one variant of kind 'base'" in _error_text(two_bases)
    chained = _spec()
    chained["variants"].append({"name": "q8q", "kind": "fp16", "source": "q8"})
    assert "is itself quantised" in _error_text(chained)


def test_limits_name_the_field():
    spec = parse_spec(_spec(grid__size=9, repeats=3))
    assert count_runs(spec) == {
        "train": 486,
        "prune": 1,
        "quantise": 243,
        "measure": 3,
        "scan": 0,
        "total": 733,
    }
    with pytest.raises(SpecError) as info:
        check_limits(spec, max_grid_size=7, max_runs_per_study=10_000)
    assert info.value.field == "grid.size" and "limit of 7" in info.value.message
    with pytest.raises(SpecError, match="plans 733 runs"):
        check_limits(spec, max_grid_size=41, max_runs_per_study=700)
    check_limits(spec, max_grid_size=9, max_runs_per_study=733)


def test_extension_ranges_must_contain_the_base_grid():
    assert "must contain the base grid" in _error_text(_spec(grid__lr_range=[0, 1]))
    spec = parse_spec(_spec(grid__lr_range=[-1, 3]))
    assert len(grid_values(spec.grid)[0]) == 5 and spec.grid.n_points == 15


def test_recipe_spec_mirrors_the_engine_recipe_with_its_speed_switches():
    import dataclasses

    from backend.spec import RecipeSpec
    from workers.engine.training import Recipe

    engine_fields = {f.name for f in dataclasses.fields(Recipe)}
    assert set(RecipeSpec.model_fields) == engine_fields - {"lr", "weight_decay", "seed"}
    recipe = Recipe.from_dict(RecipeSpec().to_recipe_dict(lr=0.1, weight_decay=1e-4, seed=0))
    assert recipe == Recipe()  # same defaults on both sides of the seam
    assert recipe.channels_last and recipe.cpu_malloc_cache and not (recipe.compile or recipe.amp)
    off = parse_spec(_spec(recipe={"channels_last": False, "cpu_malloc_cache": False}))
    values = off.recipe.to_recipe_dict(lr=0.1, weight_decay=1e-4, seed=0)
    assert values["channels_last"] is False and values["cpu_malloc_cache"] is False
    assert "recipe.cpu_malloc_cache" in _error_text(_spec(recipe={"cpu_malloc_cache": "sometimes"}))
