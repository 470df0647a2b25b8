"""Where a CUDA training step's time goes: eager vs one CUDA graph per step, same model and batch.

Times N steps of SGD (fused, lr held in a device tensor) on one synthetic batch, for
(1) eager, read once at the end; (2) eager with a host sync per step (what per-step `.item()`
meters cost); (3) the whole step (forward, loss, backward, optimizer) captured once as a CUDA
graph and replayed. If (3) is much faster than (1), the step is bound by launching kernels, not
by the GPU's arithmetic.

    python3 bench/step_probe.py --models resnet56,mobilenetv2_cifar --steps 100
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.engine.models import build_model, init_kaiming  # noqa: E402


def probe(name: str, batch: int, steps: int, channels_last: bool, modes: list[str]) -> dict[str, float]:
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model(name, num_classes=10)
    init_kaiming(model)
    model.to(device, memory_format=fmt).train()
    lr = torch.tensor(0.1, device=device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, fused=True)
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> torch.Tensor:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    def timed(fn, sync_each: bool) -> float:
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(steps):
            fn()
            if sync_each:
                torch.cuda.synchronize()
        torch.cuda.synchronize()
        return (time.perf_counter() - t) / steps * 1e3

    def eager() -> None:
        opt.zero_grad(set_to_none=True)
        step()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(5):
            eager()
    torch.cuda.current_stream().wait_stream(side)
    out = {"eager_ms": timed(eager, False), "eager_sync_ms": timed(eager, True)}
    opt.zero_grad(set_to_none=True)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    out["graph_ms"] = timed(graph.replay, False)
    for mode in modes:  # torch.compile of the model; the optimizer step stays eager
        compiled = torch.compile(model, mode=mode)

        def compiled_step(compiled=compiled) -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(compiled(x), y).backward()
            opt.step()

        t = time.perf_counter()
        for _ in range(3):
            compiled_step()
        torch.cuda.synchronize()
        out[f"compile {mode} first 3 steps s"] = time.perf_counter() - t
        out[f"compile {mode} ms"] = timed(compiled_step, False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet56,mobilenetv2_cifar")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument(
        "--compile-modes", default="", help="e.g. default,reduce-overhead (channels_last only)"
    )
    args = parser.parse_args()
    print(f"{torch.cuda.get_device_name()}; torch {torch.__version__}; batch {args.batch_size}")
    for name in args.models.split(","):
        for cl in (False, True):
            modes = [m for m in args.compile_modes.split(",") if m] if cl else []
            r = probe(name, args.batch_size, args.steps, cl, modes)
            rate = args.batch_size / r["graph_ms"] * 1e3
            print(f"{name:18s} channels_last={cl!s:5s} eager {r['eager_ms']:6.2f} ms/step, "
                  f"eager+sync {r['eager_sync_ms']:6.2f}, graph {r['graph_ms']:6.2f} "
                  f"(x{r['eager_ms'] / r['graph_ms']:.2f}, {rate:,.0f} img/s)"
                  + "".join(f"; {k} {v:.2f}" for k, v in r.items() if k.startswith("compile")), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
