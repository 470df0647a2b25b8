"""The demo study of `prunescape serve --demo`: small enough to finish in a few minutes on two CPU
cores, large enough to show a landscape move. The bundled `digits` set needs no download."""

from __future__ import annotations

import copy
from typing import Any

DEMO_SPEC: dict[str, Any] = {
    "name": "digits demo: structured pruning and int8",
    "dataset": {"name": "digits"},
    "model": {"name": "digits_cnn"},
    "recipe": {"epochs": 5, "batch_size": 64, "eval_batch_size": 1000},
    # 5 x 5 points, half a decade apart: lr 0.005 .. 0.5, wd 1e-3 .. 1e-1. Weight decay below 1e-3
    # barely matters in 5 epochs on digits; up to 1e-1 the high-lr, high-wd corner collapses, so
    # the landscape has a ridge for the ROI to follow and for pruning to move.
    "grid": {"lr_centre": 0.05, "wd_centre": 1e-2, "step": 0.5, "size": 5},
    "repeats": 1,
    "variants": [
        {"name": "base", "kind": "base"},
        {"name": "u50", "kind": "structured", "method": "uniform", "flops_ratio": 0.5, "retrain": "scratch"},
        {
            "name": "n50",
            "kind": "structured",
            "method": "nonuniform",
            "flops_ratio": 0.5,
            "retrain": "scratch",
        },
        {"name": "q8", "kind": "int8", "source": "base"},
    ],
}


def demo_spec() -> dict[str, Any]:
    return copy.deepcopy(DEMO_SPEC)


def submit_demo(base_url: str, *, timeout_s: float = 60.0, token: str | None = None) -> dict[str, Any]:
    """POST the demo study to a running server's API; returns the created study (StudyOut)."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(
        f"{base_url.rstrip('/')}/api/v1/studies", json=demo_spec(), headers=headers, timeout=timeout_s
    )
    response.raise_for_status()
    return response.json()
