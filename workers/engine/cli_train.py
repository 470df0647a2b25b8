"""`prunescape train`: one model, or the grid of --lr x --wd values, fused or one by one."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.engine.cli_args import ArgumentError, emit, load_data, positive

if TYPE_CHECKING:
    from torch import nn

MAX_GRID_POINTS = 64  # --lr x --wd points one command trains (a fused group of 64 small nets fits a GPU)


def parse_values(text: str, flag: str, *, positive: bool) -> list[float]:
    """Comma-separated finite numbers (> 0 with `positive`, else >= 0), at least one, no repeats."""
    try:
        values = [float(part) for part in (text or "").split(",") if part.strip()]
    except ValueError:
        raise ArgumentError(f"{flag} must be comma-separated numbers like 0.01,0.1, got {text!r}") from None
    if not values:
        raise ArgumentError(f"{flag} needs at least one number, got {text!r}")
    bad = [v for v in values if not math.isfinite(v) or (v <= 0 if positive else v < 0)]
    if bad:
        raise ArgumentError(f"{flag} must be {'> 0' if positive else '>= 0'} and finite, got {bad[0]}")
    if len(set(values)) != len(values):
        raise ArgumentError(f"{flag} lists a value twice: {text!r}")
    return values


def _point_out(out: str, lr: float, wd: float, grid: bool) -> Path:
    """A single point is saved at --out; grid points next to it as <stem>-lr<lr>-wd<wd><suffix>."""
    path = Path(out)
    return path.with_name(f"{path.stem}-lr{lr:g}-wd{wd:g}{path.suffix}") if grid else path


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def train_command(args: argparse.Namespace) -> int:
    import dataclasses

    from tqdm import tqdm

    from workers.engine.artifacts import save_model
    from workers.engine.fused import CastData, parse_dtype, train_group
    from workers.engine.models import build_model
    from workers.engine.training import Recipe, train

    for flag, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size)):
        positive(value, flag)
    lrs = parse_values(args.lr, "--lr", positive=True) if args.lr is not None else [None]
    wds = parse_values(args.wd, "--wd", positive=False) if args.wd is not None else [None]
    if len(lrs) * len(wds) > MAX_GRID_POINTS:
        raise ArgumentError(
            f"--lr x --wd makes {len(lrs) * len(wds)} points; at most {MAX_GRID_POINTS} per command"
        )
    dtype = parse_dtype(args.dtype) if args.dtype else None
    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed}
    base = Recipe(**{k: v for k, v in overrides.items() if v is not None})
    recipes = [
        dataclasses.replace(
            base, lr=base.lr if lr is None else lr, weight_decay=base.weight_decay if wd is None else wd
        )
        for lr in lrs
        for wd in wds
    ]
    grid = len(recipes) > 1
    fused = grid if args.fused is None else args.fused
    data = load_data(args.dataset, args.data_path)
    payloads: list[dict[str, Any]] = []
    lines: list[str] = []

    def make() -> nn.Module:
        return build_model(args.model, num_classes=data.num_classes, input_shape=data.input_shape)

    def save(model: nn.Module, recipe: Recipe, result: Any) -> None:
        out = _point_out(args.out, recipe.lr, recipe.weight_decay, grid)
        group_size = int(result.fast_path.get("group_size", 1)) if fused else 1
        meta = {
            "dataset": args.dataset, "recipe": recipe.to_dict(), "top1": result.top1, "top5": result.top5,
            "group_size": group_size,
        }  # fmt: skip
        size = save_model(
            model, out, model_name=args.model, num_classes=data.num_classes,
            input_shape=tuple(data.input_shape), meta=meta,
        )  # fmt: skip
        payloads.append(
            {
                "model": args.model,
                "dataset": args.dataset,
                "lr": recipe.lr,
                "wd": recipe.weight_decay,
                "status": result.status,
                "epochs": result.epochs,
                "top1": _finite_or_none(result.top1),
                "top5": _finite_or_none(result.top5),
                "loss": _finite_or_none(result.history[-1].val_loss),
                "group_size": group_size,
                "seconds": result.seconds,
                "device": str(result.device),
                "dtype": args.dtype or "float32",
                "recipe": recipe.to_dict(),
                "out": str(out),
                "size_bytes": size,
            }
        )
        lines.append(
            f"lr {recipe.lr:g} wd {recipe.weight_decay:g}: {result.status}, top1 {result.top1:.2f} %, "
            f"top5 {result.top5:.2f} %, group of {group_size} -> {out} ({size:,} bytes)"
        )

    with tqdm(
        total=base.epochs * len(recipes), desc=f"train {args.model}", unit="epoch", file=sys.stderr
    ) as bar:

        def on_epoch(*event: Any) -> None:
            metrics = event[-1]  # (metrics) from train(), (index, metrics) from train_group()
            bar.set_postfix(loss=f"{metrics.train_loss:.3f}", val_top1=f"{metrics.val_top1:.1f}")
            bar.update(1)

        if fused:
            models = [make() for _ in recipes]
            results = train_group(models, data, recipes, on_epoch=on_epoch, dtype=dtype)
            for model, recipe, result in zip(models, recipes, results, strict=True):
                save(model, recipe, result)
        else:
            for recipe in recipes:
                model = make()
                if dtype is not None:  # an equivalence check: the model and its batches in that dtype
                    model.to(dtype)
                save(
                    model,
                    recipe,
                    train(model, data if dtype is None else CastData(data, dtype), recipe, on_epoch=on_epoch),
                )
    if not grid:
        emit(args, payloads[0], lines)  # one point: the object (or line) it always printed
    elif args.json:
        for payload in payloads:  # one JSON object per point, one per line
            print(json.dumps(payload, default=str))
    else:
        print("\n".join(lines))
    return 0
