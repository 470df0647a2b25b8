"""Engine subcommands of `prunescape`: measure, train, prune, quantise, scan.

Registered by `backend.cli.main` through `register(subparsers)`. Torch and the engine are imported
inside the handlers so `prunescape --help` and the web commands stay light. Every bad argument is
reported on one line naming the argument, with exit status 2: range checks raise
`ArgumentError` (a ValueError, which main() prints), and argparse's own errors (missing or
malformed options) are rerouted to the same one-line form. `--json` prints one JSON object on
stdout; progress bars go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.engine.cli_args import (
    ArgumentError,
    add_command,
    emit,
    load_data,
    parse_fractions,
    parse_input_shape,
    positive,
)
from workers.engine.cli_train import train_command

if TYPE_CHECKING:
    from torch import nn


def _model_from_name(name: str, num_classes: int | None, input_text: str | None, weights: str | None):
    from workers.engine.models import build_model, get_model_info

    info = get_model_info(name)
    shape = parse_input_shape(input_text) if input_text else info.input_shape
    positive(num_classes, "--num-classes")
    model = build_model(name, num_classes=num_classes, input_shape=shape, weights_path=weights)
    return model, shape, num_classes or info.num_classes


def _load_model_file(path: str) -> tuple[nn.Module, dict[str, Any]]:
    from workers.engine.artifacts import load_model

    if not Path(path).is_file():
        raise ArgumentError(f"--model-file: {path} does not exist")
    return load_model(path)


def _meta_shape(meta: dict[str, Any]) -> tuple[int, int, int]:
    return tuple(int(d) for d in meta["input_shape"])  # type: ignore[return-value]


# --- measure -------------------------------------------------------------------------------------


def _latency_devices() -> tuple[str, ...]:
    """The devices whose runtimes are timed: the CPU, and the GPU when torch sees one."""
    import torch

    return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)


def _fmt_ms(value: float) -> str:
    return f"{value:.3f} ms"


def latency_lines(by_runtime: dict[str, dict[str, Any]]) -> list[str]:
    """One line per runtime and batch size, the runtime named with every figure; a runtime that
    gives no figure says why."""
    width = max((len(name) for name in by_runtime), default=0)
    lines = []
    for name, record in by_runtime.items():
        if not record.get("supported"):
            lines.append(f"latency {name:<{width}}  {record['precision']} not timed: {record['reason']}")
            continue
        quick = "" if record["meets_spec"] else f", quick: {record['warmup']} warm-up / {record['runs']} runs"
        for batch, timing in record["by_batch"].items():
            lines.append(
                f"latency {name:<{width}}  b={batch:<3} median {_fmt_ms(timing['median_ms'])}  "
                f"p90 {_fmt_ms(timing['p90_ms'])}  ({record['precision']}, {record['threads']} threads{quick})"
            )
    return lines


def latency_ratios(
    before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
) -> dict[str, dict[str, float]]:
    """{runtime: {batch: after median / before median}}, only where both were timed on that one
    runtime: a ratio across runtimes would credit the change of runtime to the compression."""
    ratios: dict[str, dict[str, float]] = {}
    for name, record in after.items():
        other = before.get(name)
        if not record.get("supported") or not other or not other.get("supported"):
            continue
        for batch, timing in record["by_batch"].items():
            base = other["by_batch"].get(batch)
            if base and base["median_ms"] > 0:
                ratios.setdefault(name, {})[batch] = timing["median_ms"] / base["median_ms"]
    return ratios


def _measure(args: argparse.Namespace) -> int:
    from workers.engine.flops import FLOPS_CONVENTION, count_flops
    from workers.engine.measure import count_params, environment_info, file_size_bytes
    from workers.engine.runtimes import latency_by_runtime

    positive(args.threads, "--threads")
    if args.model_file:
        model, meta = _load_model_file(args.model_file)
        shape, name = _meta_shape(meta), meta.get("model_name")
    else:
        model, shape, _ = _model_from_name(args.model, args.num_classes, args.input, None)
        name = args.model
    params, nonzero = count_params(model)
    flops = count_flops(model, shape)
    payload: dict[str, Any] = {
        "model": name,
        "input_shape": list(shape),
        "params": params,
        "params_nonzero": nonzero,
        "flops": flops,
        "flops_convention": FLOPS_CONVENTION,
    }
    lines = [
        f"model          {name}",
        f"input          {'x'.join(map(str, shape))}",
        f"params         {params:,} ({nonzero:,} non-zero)",
        f"FLOPs          {flops:,}  [{FLOPS_CONVENTION}]",
    ]
    if args.model_file:
        payload["size_bytes"] = file_size_bytes(args.model_file)
        lines.append(f"size           {payload['size_bytes'] / 1e6:.3f} MB")
    if args.layers:
        from workers.engine.pruning import prunable_layers

        payload["layers"] = [
            {"name": info.name, "out_channels": info.out_channels, "flops_share": info.flops_share}
            for info in prunable_layers(model)
        ]
        lines += [f"  {row['name']:<40} {row['out_channels']:>5} channels" for row in payload["layers"]]
    if args.latency:
        import torch

        # A half-precision file (`prunescape quantise --mode fp16`, an fp16 variant) is timed as fp16.
        half = any(p.dtype == torch.float16 for p in model.parameters())
        precision = "fp16" if half else "fp32"
        payload["latency"] = latency_by_runtime(
            model, None, shape, precision=precision, threads=args.threads, devices=_latency_devices()
        )
        payload["environment"] = environment_info()
        lines += latency_lines(payload["latency"])
    emit(args, payload, lines)
    return 0


# --- prune ---------------------------------------------------------------------------------------


def _read_layer_ratios(path: str) -> dict[str, float]:
    try:
        plan = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ArgumentError(f"--layer-ratios: {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ArgumentError(f"--layer-ratios: {path} is not valid JSON ({exc})") from None
    if not isinstance(plan, dict) or not all(
        isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) for k, v in plan.items()
    ):
        raise ArgumentError(
            f"--layer-ratios: {path} must hold an object {{layer name: fraction of filters to remove}}"
        )
    return {k: float(v) for k, v in plan.items()}


def _prune(args: argparse.Namespace) -> int:
    from workers.engine.artifacts import save_model, sparse_size_bytes
    from workers.engine.flops import FLOPS_CONVENTION, count_flops
    from workers.engine.measure import count_params

    modes = [args.method is not None, args.layer_ratios is not None, args.unstructured is not None]
    if sum(modes) != 1:
        raise ArgumentError(
            "give exactly one of --method (with --flops-ratio), --layer-ratios or --unstructured"
        )
    if args.method is not None and args.flops_ratio is None:
        raise ArgumentError("--method needs --flops-ratio")
    if args.flops_ratio is not None:
        if args.method is None:
            raise ArgumentError("--flops-ratio needs --method uniform|nonuniform")
        if not 0 < args.flops_ratio <= 1:
            raise ArgumentError(f"--flops-ratio must be in (0, 1], got {args.flops_ratio}")
    if args.unstructured is not None and not 0 <= args.unstructured < 1:
        raise ArgumentError(f"--unstructured must be in [0, 1), got {args.unstructured}")

    if args.model_file:
        if args.weights or args.model:
            raise ArgumentError("--model-file already holds the model; drop --model/--weights")
        model, meta = _load_model_file(args.model_file)
        name, shape, classes = meta["model_name"], _meta_shape(meta), int(meta["num_classes"])
    elif args.model:
        name = args.model
        model, shape, classes = _model_from_name(name, args.num_classes, args.input, args.weights)
    else:
        raise ArgumentError("give --model NAME or --model-file FILE")

    payload: dict[str, Any] = {
        "model": name,
        "input_shape": list(shape),
        "flops_convention": FLOPS_CONVENTION,
    }
    if args.unstructured is not None:
        from workers.engine.pruning import prune_unstructured

        base_params, _ = count_params(model)
        flops = count_flops(model, shape)
        result = prune_unstructured(model, amount=args.unstructured, scope=args.scope, permanent=True)
        params, nonzero = count_params(result.model)
        payload.update(
            kind="unstructured",
            scope=args.scope,
            amount=args.unstructured,
            sparsity=result.sparsity,
            zero_weights=result.zero_weights,
            prunable_weights=result.prunable_weights,
            base_params=base_params,
            params=params,
            params_nonzero=nonzero,
            base_flops=flops,
            flops=flops,  # dense FLOPs: zeros are still multiplied by a dense kernel
            flops_ratio=1.0,
            layers=[],
        )
        pruned = result.model
        meta_extra = {"unstructured": {"amount": args.unstructured, "scope": args.scope}}
    else:
        from workers.engine.pruning import prune_structured, prune_with_plan

        if args.layer_ratios is not None:
            result = prune_with_plan(model, shape, _read_layer_ratios(args.layer_ratios))
            payload.update(kind="structured", method="plan")
        else:
            result = prune_structured(model, shape, method=args.method, flops_ratio=args.flops_ratio)
            payload.update(kind="structured", method=args.method, target_flops_ratio=args.flops_ratio)
        pruned = result.model
        params, nonzero = count_params(pruned)
        payload.update(
            base_params=result.base_params,
            params=result.params,
            params_nonzero=nonzero,
            base_flops=result.base_flops,
            flops=result.flops,
            flops_ratio=result.flops_ratio,
            layers=[
                {
                    "name": layer,
                    "kept_channels": result.kept_channels[layer],
                    "kept_fraction": result.kept_fractions.get(layer),
                }
                for layer in result.kept_channels
            ],
        )
        meta_extra = {"structured": {"method": payload["method"], "kept_fractions": result.kept_fractions}}
    size = save_model(
        pruned, args.out, model_name=name, num_classes=classes, input_shape=shape, meta=meta_extra
    )
    payload.update(out=str(args.out), size_bytes=size, sparse_size_bytes=sparse_size_bytes(pruned))
    lines = [
        f"{payload['kind']} pruning of {name}: params {payload['base_params']:,} -> {payload['params']:,} "
        f"({payload['params_nonzero']:,} non-zero), FLOPs {payload['base_flops']:,} -> {payload['flops']:,} "
        f"(ratio {payload['flops_ratio']:.3f})",
        *(f"  {row['name']:<40} keeps {row['kept_channels']} channels" for row in payload["layers"]),
        f"-> {args.out} ({size:,} bytes dense, {payload['sparse_size_bytes']:,} sparse-encoded)",
    ]
    emit(args, payload, lines)
    return 0


# --- quantise ------------------------------------------------------------------------------------


def _quantise(args: argparse.Namespace) -> int:
    import tempfile

    from workers.engine.artifacts import save_model
    from workers.engine.measure import environment_info, file_size_bytes
    from workers.engine.quantise import OnnxClassifier, export_onnx, quantise_int8, to_fp16
    from workers.engine.runtimes import latency_by_runtime
    from workers.engine.training import evaluate

    positive(args.threads, "--threads")
    positive(args.calib_batches, "--calib-batches")
    positive(args.calib_batch_size, "--calib-batch-size")
    model, meta = _load_model_file(args.model_file)
    shape = _meta_shape(meta)
    data = load_data(args.dataset, args.data_path)
    if tuple(data.input_shape) != shape:
        raise ArgumentError(
            f"--dataset {args.dataset} gives {'x'.join(map(str, data.input_shape))} inputs but "
            f"--model-file was built for {'x'.join(map(str, shape))}"
        )
    steps = 3 + (0 if args.no_latency else 2)
    from tqdm import tqdm

    with (
        tqdm(total=steps, desc=f"quantise {args.mode}", unit="step", file=sys.stderr) as bar,
        tempfile.TemporaryDirectory(prefix="prunescape-cli-") as tmp,
    ):
        _, fp32_top1, fp32_top5 = evaluate(model, data)
        bar.update(1)
        fp32_file_size = file_size_bytes(args.model_file)
        # The fp32 export gives the ONNX size and is what ONNX Runtime times for fp32.
        fp32_onnx = export_onnx(model, shape, Path(tmp) / "fp32.onnx")
        fp32_onnx_size = file_size_bytes(fp32_onnx)
        bar.update(1)
        if args.mode in ("int8", "mixed"):
            calib = data.calibration_batches(args.calib_batches, args.calib_batch_size)
            out = quantise_int8(model, calib, args.out, mixed=args.mode == "mixed")
            runner: Any = OnnxClassifier(out)
            q_top1, q_top5 = runner.evaluate(data)
            runtime = "onnxruntime"
        else:
            runner = to_fp16(model)
            _, q_top1, q_top5 = evaluate(runner, data)
            save_model(
                runner.model,
                args.out,
                model_name=meta["model_name"],
                num_classes=int(meta["num_classes"]),
                input_shape=shape,
                meta={"precision": "fp16"},
            )
            out = Path(args.out)
            runtime = "torch"
        bar.update(1)
        payload: dict[str, Any] = {
            "model": meta.get("model_name"),
            "mode": args.mode,
            "runtime": runtime,  # what evaluated top1 / top5
            "fp32_top1": fp32_top1,
            "fp32_top5": fp32_top5,
            "top1": q_top1,
            "top5": q_top5,
            "fp32_size_bytes": fp32_file_size,
            "fp32_onnx_size_bytes": fp32_onnx_size,
            "size_bytes": file_size_bytes(out),
            "out": str(out),
        }
        if not args.no_latency:
            timing = {"threads": args.threads, "devices": _latency_devices()}
            payload["fp32_latency"] = latency_by_runtime(model, fp32_onnx, shape, precision="fp32", **timing)
            bar.update(1)
            if runtime == "onnxruntime":  # int8 and mixed: the QDQ file
                payload["latency"] = latency_by_runtime(None, out, shape, precision="int8", **timing)
            else:
                payload["latency"] = latency_by_runtime(model, fp32_onnx, shape, precision="fp16", **timing)
            bar.update(1)
            payload["latency_ratio"] = latency_ratios(payload["fp32_latency"], payload["latency"])
            payload["environment"] = environment_info()
    lines = [
        f"{args.mode} ({runtime}): top1 {fp32_top1:.2f} -> {q_top1:.2f} %, top5 {fp32_top5:.2f} -> {q_top5:.2f} %",
        f"size: fp32 {fp32_file_size / 1e6:.3f} MB (ONNX {fp32_onnx_size / 1e6:.3f} MB) -> "
        f"{payload['size_bytes'] / 1e6:.3f} MB at {out}",
    ]
    if not args.no_latency:
        lines += _quantised_latency_lines(args.mode, payload["fp32_latency"], payload["latency"])
    emit(args, payload, lines)
    return 0


def _quantised_latency_lines(
    mode: str, fp32: dict[str, dict[str, Any]], quantised: dict[str, dict[str, Any]]
) -> list[str]:
    """fp32 -> quantised medians per runtime and batch, the ratio only within one runtime."""
    ratios = latency_ratios(fp32, quantised)
    width = max((len(name) for name in quantised), default=0)
    lines = []
    for name, record in quantised.items():
        base = fp32.get(name) or {}
        if not record.get("supported"):
            lines.append(f"latency {name:<{width}}  {mode} not timed: {record['reason']}")
            continue
        for batch, timing in record["by_batch"].items():
            ratio = ratios.get(name, {}).get(batch)
            fp32_text = (
                _fmt_ms(base["by_batch"][batch]["median_ms"])
                if ratio is not None
                else f"not timed ({base.get('reason') or 'no figure'})"
            )
            vs = f", x{ratio:.2f} on {name}" if ratio is not None else ""
            lines.append(
                f"latency {name:<{width}}  b={batch:<3} fp32 {fp32_text} -> {mode} "
                f"{_fmt_ms(timing['median_ms'])} (median{vs})"
            )
    return lines


# --- scan ----------------------------------------------------------------------------------------


def _scan(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from workers.engine.scan import DEFAULT_FRACTIONS, sensitivity_scan

    fractions = parse_fractions(args.fractions) if args.fractions else list(DEFAULT_FRACTIONS)
    model, meta = _load_model_file(args.model_file)
    data = load_data(args.dataset, args.data_path)
    with tqdm(desc=f"scan {args.kind}/{args.scope}", unit="point", file=sys.stderr) as bar:
        rows = sensitivity_scan(
            model,
            data,
            kind=args.kind,
            fractions=fractions,
            scope=args.scope,
            input_shape=_meta_shape(meta),
            on_row=lambda _row: bar.update(1),
        )
    measure = "sparsity" if args.kind == "unstructured" else "flops_ratio"
    payload = {"model": meta.get("model_name"), "kind": args.kind, "scope": args.scope, "rows": rows}
    lines = [f"{'layer':<30} {'fraction':>8} {measure:>11} {'top1':>7} {'top5':>7}"] + [
        f"{row['layer'] or '(global)':<30} {row['fraction']:>8.2f} {row[measure]:>11.3f} "
        f"{row['top1']:>7.2f} {row['top5']:>7.2f}"
        for row in rows
    ]
    emit(args, payload, lines)
    return 0


# --- registration --------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    """Add measure, train, prune, quantise and scan to the `prunescape` command."""
    p = add_command(subparsers, "measure", "Parameters, FLOPs, prunable layers and latency of a model.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="registry model name, e.g. resnet56")
    source.add_argument("--model-file", help="a model saved by prunescape train/prune")
    p.add_argument("--input", help="input shape CxHxW (default: the model's)")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--layers", action="store_true", help="list the prunable layers")
    p.add_argument(
        "--latency",
        action="store_true",
        help="time batch 1 and 32 on every runtime: ONNX Runtime CPU and torch CPU (and CUDA ones on a GPU)",
    )
    p.add_argument("--threads", type=int, help="threads for --latency (default: torch's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_measure)

    p = add_command(
        subparsers,
        "train",
        "Train a model on a data set with the study's recipe; several --lr/--wd values train their grid "
        "(--json: one object per point, one per line).",
    )
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-path")
    p.add_argument("--model", required=True)
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", help="learning rate, or several: 0.01,0.1,0.5 (a grid with --wd)")
    p.add_argument("--wd", help="weight decay, or several: 1e-4,1e-3")
    p.add_argument(
        "--fused",
        action=argparse.BooleanOptionalAction,
        help="train the grid's points as one fused model (default for a grid) or one by one",
    )
    p.add_argument("--dtype", choices=("float32", "float64"), help="float64: for equivalence checks on CPU")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--out",
        required=True,
        help="where to save the trained model (grid points: <stem>-lr<lr>-wd<wd><suffix>)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=train_command)

    p = add_command(
        subparsers, "prune", "Prune a model structurally (to a FLOPs ratio or a plan) or unstructured."
    )
    p.add_argument("--model", help="registry model name")
    p.add_argument("--model-file", help="a model saved by prunescape train/prune (instead of --model)")
    p.add_argument("--input", help="input shape CxHxW for --model (default: the model's)")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--weights", help="state_dict file for --model")
    p.add_argument("--method", choices=("uniform", "nonuniform"))
    p.add_argument("--flops-ratio", type=float, help="fraction of the base FLOPs to keep, in (0, 1]")
    p.add_argument("--layer-ratios", help="JSON file {layer: fraction of its filters to remove}")
    p.add_argument("--unstructured", type=float, metavar="AMOUNT", help="fraction of weights to zero")
    p.add_argument("--scope", choices=("layer", "global"), default="layer", help="for --unstructured")
    p.add_argument("--out", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_prune)

    p = add_command(
        subparsers, "quantise", "Quantise a trained model (int8 / mixed with ONNX Runtime, or fp16)."
    )
    p.add_argument("--model-file", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-path")
    p.add_argument("--mode", choices=("int8", "mixed", "fp16"), required=True)
    p.add_argument("--out", required=True, help=".onnx for int8/mixed; a model file for fp16")
    p.add_argument("--calib-batches", type=int, default=8)
    p.add_argument("--calib-batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, help="threads for latency (default: torch's)")
    p.add_argument(
        "--no-latency", action="store_true", help="skip timing fp32 and the result on every runtime"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_quantise)

    p = add_command(subparsers, "scan", "Accuracy after pruning a fraction, without retraining.")
    p.add_argument("--model-file", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-path")
    p.add_argument("--kind", choices=("unstructured", "structured"), required=True)
    p.add_argument("--scope", choices=("global", "layer"), default="global")
    p.add_argument("--fractions", help="comma-separated, default 0,0.1,...,0.9")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_scan)
