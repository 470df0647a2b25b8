"""A hand-built analysis record in the JSON shape of backend/analysis/records.py (two variants on a
3 x 3 grid), for testing the figure functions without the analysis engine."""

from __future__ import annotations

import copy
import math

X = [-4.4, -4.0, -3.6]  # log10 wd
Y = [-1.4, -1.0, -0.6]  # log10 lr


def _variant(name: str, z: list[list[float | None]], run_base: int, diverged: tuple[int, int] | None) -> dict:
    xs, ys, means, ns, n_div, run_ids = [], [], [], [], [], []
    for i, y in enumerate(Y):
        for j, x in enumerate(X):
            xs.append(x)
            ys.append(y)
            means.append(z[i][j])
            ns.append(0 if z[i][j] is None else 2)
            n_div.append(2 if diverged == (i, j) else 0)
            run_ids.append([] if z[i][j] is None else [run_base + 10 * i + j, run_base + 10 * i + j + 100])
    values = [v for v in means if v is not None]
    best_index = means.index(max(values))
    best = {
        "value": means[best_index],
        "x": xs[best_index],
        "y": ys[best_index],
        "wd": 10 ** xs[best_index],
        "lr": 10 ** ys[best_index],
        "std": None,
        "n": 2,
        "run_ids": run_ids[best_index],
        "ties": [[xs[best_index], ys[best_index]]],
        "n_ties": 1,
    }

    def ellipse(level: float, length: float, width: float, angle: float) -> dict:
        return {
            "level": level,
            "centre": [best["x"] + 0.02, best["y"] - 0.03],
            "centre_wd": 10 ** best["x"],
            "centre_lr": 10 ** best["y"],
            "length": length,
            "width": width,
            "angle_deg": angle,
            "semi_axes": [length / 2, width / 2],
            "eigenvalues": [(length / 4) ** 2, (width / 4) ** 2],
            "covariance": [[0.01, 0.0], [0.0, 0.01]],
            "k": 2.0,
            "alpha": math.exp(-2.0),
            "coverage": 1 - math.exp(-2.0),
            "n_points": 5 if level == 0.5 else 7,
        }

    return {
        "variant": name,
        "n_runs": 2 * len(values),
        "n_diverged": 2 if diverged else 0,
        "landscape": {
            "variant": name,
            "metric": "top1",
            "x": X,
            "y": Y,
            "wd_values": [10**x for x in X],
            "lr_values": [10**y for y in Y],
            "z": z,
            "n_points": len(values),
            "n_runs": 2 * len(values),
            "points": {
                "x": xs,
                "y": ys,
                "wd": [10**x for x in xs],
                "lr": [10**y for y in ys],
                "mean": means,
                "std": [None] * len(xs),
                "n": ns,
                "n_diverged": n_div,
                "run_ids": run_ids,
            },
        },
        "best": best,
        "roi": {
            "0.5": {"level": 0.5, "threshold": best["value"] - 0.5, "n_points": 5, "points": []},
            "1.0": {"level": 1.0, "threshold": best["value"] - 1.0, "n_points": 7, "points": []},
        },
        "ellipse": {"0.5": ellipse(0.5, 0.6, 0.3, 30.0), "1.0": ellipse(1.0, 0.9, 0.5, 20.0)},
        "ellipse_reason": {"0.5": None, "1.0": None},
        "risk": {
            "level": 0.5,
            "best_value": best["value"],
            "theta_r_size": 5,
            "n": 5,
            "missing": 0,
            "mean": 0.4,
            "std": 0.2,
            "rel_mean": 0.0044,
            "rel_std": 0.0022,
            "quartiles": [0.2, 0.4, 0.6],
            "rel_quartiles": [0.0022, 0.0044, 0.0066],
            "min": 0.1,
            "max": 0.7,
            "values": [0.1, 0.2, 0.4, 0.6, 0.7],
            "rel_values": [0.0011, 0.0022, 0.0044, 0.0066, 0.0077],
            "points": [],
            "reason": None,
        },
        "shift": {},
        "extension": {
            "level": 1.0,
            "needed": False,
            "sides": [],
            "new_lr_values": [],
            "new_wd_values": [],
            "points": [],
            "n_points": 0,
            "edge_points": [],
            "reason": None,
        },
    }


def make_record() -> dict:
    base = _variant("base", [[90.0, 91.0, 90.5], [91.2, 92.0, 91.5], [89.0, 90.8, 90.1]], 1000, None)
    pruned = _variant("u50", [[88.0, 89.5, None], [89.9, 90.6, 90.2], [90.9, 91.0, 12.0]], 2000, (2, 2))
    pruned["shift"] = {
        "1.0": {
            "level": 1.0,
            "tested": True,
            "reason": None,
            "delta": [0.05, 0.3],
            "distance": 0.304,
            "ci_low": [-0.1, 0.1],
            "ci_high": [0.2, 0.5],
            "ci_level": 0.95,
            "p_value": 0.004,
            "alpha": 0.05,
            "significant": True,
            "verdict": "shift towards larger lr",
            "n_variant": 7,
            "n_base": 7,
            "n_boot": 1000,
            "n_perm": 1000,
            "seed": 0,
        },
        "0.5": {
            "level": 0.5,
            "tested": True,
            "reason": None,
            "delta": [0.01, 0.05],
            "distance": 0.05,
            "ci_low": [-0.1, -0.1],
            "ci_high": [0.1, 0.2],
            "ci_level": 0.95,
            "p_value": 0.41,
            "alpha": 0.05,
            "significant": False,
            "verdict": "no significant shift",
            "n_variant": 5,
            "n_base": 5,
            "n_boot": 1000,
            "n_perm": 1000,
            "seed": 0,
        },
    }
    observed = [v for r in (base, pruned) for v in r["landscape"]["points"]["mean"] if v is not None]
    return copy.deepcopy(
        {
            "metric": "top1",
            "metrics_available": ["top1"],
            "base": "base",
            "variants": ["base", "u50"],
            "roi_levels": [0.5, 1.0],
            "k": 2.0,
            "seed": 0,
            "n_runs": 34,
            "n_skipped": 0,
            "warnings": [],
            "grid": {},
            "colour_scale": {
                "min": 90.5,
                "max": max(observed),
                "percentile": 85.0,
                "n_observations": len(observed),
            },
            "summary": {"columns": ["variant"], "rows": [{"variant": "base"}, {"variant": "u50"}], "csv": ""},
            "results": {"base": base, "u50": pruned},
        }
    )
