"""A synthetic finished study: 5 x 5 grid, base + one pruned variant whose optimum sits one step
towards a larger learning rate, as the CSV that POST /studies/import takes."""

from __future__ import annotations

import math

STEP = 0.2
LR0, WD0 = 0.1, 1e-4
INDICES = range(-2, 3)


def accuracy(variant: str, i: int, j: int, seed: int, wobble: float = 0.02) -> float:
    # Smooth bowl: one grid step costs 0.2 pp, so the 0.5-ROI holds the optimum's 3 x 3 neighbourhood.
    centre_i, centre_j, top = (0, 0, 92.0) if variant == "base" else (1, 0, 91.8)
    drop = 5.0 * ((STEP * (i - centre_i)) ** 2 + (STEP * (j - centre_j)) ** 2)
    # `wobble`: the seed-to-seed amplitude (pp); above ~0.35 the 0.5-ROI is within seed noise
    return round(top - drop + wobble * math.sin(3 * i + 5 * j + 7 * seed), 4)


def rows(seeds: int = 2, wobble: float = 0.02) -> list[dict]:
    out = []
    for variant in ("base", "u50"):
        for i in INDICES:
            for j in INDICES:
                for seed in range(seeds):
                    lr = LR0 * 10 ** (STEP * i)
                    wd = WD0 * 10 ** (STEP * j)
                    status = "succeeded"
                    top1 = accuracy(variant, i, j, seed, wobble)
                    if variant == "u50" and i == 2 and j == 2:
                        status, top1 = "diverged", 10.0  # the corner blew up: a real outcome
                    out.append(
                        {
                            "variant": variant,
                            "lr": f"{lr:.12g}",
                            "wd": f"{wd:.12g}",
                            "seed": seed,
                            "top1": top1,
                            "top5": min(100.0, round(top1 + 6.0, 4)),
                            "status": status,
                        }
                    )
    return out


def csv_text(seeds: int = 2, wobble: float = 0.02) -> str:
    header = "variant,lr,wd,seed,top1,top5,status"
    lines = [header] + [
        f"{r['variant']},{r['lr']},{r['wd']},{r['seed']},{r['top1']},{r['top5']},{r['status']}"
        for r in rows(seeds, wobble)
    ]
    return "\n".join(lines) + "\n"
