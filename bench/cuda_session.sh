#!/usr/bin/env bash
# The CUDA figures of the performance issue, for one call on a lent GPU machine whose `python3`
# already holds torch, torchvision and onnxruntime. That machine reaches no package index, so
# torch-pruning travels as a wheel in .whl/ (`pip download --no-deps torch-pruning==1.6.1 -d .whl`)
# and is installed here. Logs go to $OUT (default /tmp/cuda-bench); a failing part does not stop
# the next.
#
#   bench/cuda_session.sh smoke tests throughput grid amp   # parts: smoke tests fused-tests probe epoch throughput amp compile grid grid56 plan
set -u
out=${OUT:-/tmp/cuda-bench}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" >/dev/null; then
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl &&
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

step() {  # name, seconds, command...
  local name=$1 limit=$2
  shift 2
  echo "=== $name ($(date -u +%T))"
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
  echo "=== $name exit ${PIPESTATUS[0]}"
}

for part in "$@"; do
  case $part in
  smoke)
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
    $py -c "import torch, torchvision, onnxruntime, torch_pruning; print(torch.__version__, torchvision.__version__, onnxruntime.__version__, torch_pruning.__version__, torch.cuda.get_device_name())"
    nproc
    # the GPU path trains and learns (digits well above chance after 15 epochs)
    step smoke-train 180 $py - <<'PY'
from workers.engine.concurrency import TrainJob, run_train_job
for model, data, epochs in (("digits_cnn", {"name": "digits"}, 15),
                            ("resnet20", {"name": "synthetic", "synthetic_size": 5000, "synthetic_shape": [3, 32, 32]}, 2)):
    r = run_train_job(TrainJob(model, data, {"epochs": epochs, "lr": 0.05, "weight_decay": 5e-4}, "cuda"))
    print(model, r.status, r.device, f"top1 {r.top1:.2f}", f"{r.seconds:.2f} s", r.fast_path)
PY
    ;;
  tests) step cuda-tests 240 $py -m pytest -q -p no:cacheprovider tests/engine/test_cuda_graph.py tests/engine/test_fast_path.py tests/engine/test_concurrency.py ;;
  probe) step step-probe 300 $py bench/step_probe.py --compile-modes default,reduce-overhead ;;
  epoch) step epoch-probe 120 $py bench/epoch_probe.py --model resnet56 ;;
  throughput)
    step train-throughput-resnet56 300 $py bench/train_throughput.py --device cuda --models resnet56 --trials 2 --ablation
    step train-throughput-mbv2 150 $py bench/train_throughput.py --device cuda --models mobilenetv2_cifar --trials 1
    ;;
  amp) step variant-amp 100 $py bench/train_throughput.py --device cuda --models resnet56,mobilenetv2_cifar --only prunescape --trials 1 --amp ;;
  compile) step variant-compile 200 $py bench/train_throughput.py --device cuda --models resnet56 --only prunescape --trials 1 --compile ;;
  # fused grid training (issue 15): the solo fast path vs fused groups of 1, 3, 9, 27, NHWC and NCHW
  fused-tests) step fused-cuda-tests 240 $py -m pytest -q -p no:cacheprovider tests/engine/test_fused_cuda.py tests/engine/test_fused_service_hooks.py ;;
  grid) step grid-fused 540 $py bench/grid_throughput.py --device cuda ;;
  grid56) step grid-fused-resnet56 300 $py bench/grid_throughput.py --device cuda --models resnet56 --images 25600 --groups 1,9,27 --layouts nhwc ;;
  plan) step concurrency-plan 120 $py -m workers.engine.concurrency --model resnet56 --device cuda --verbose ;;
  *) echo "unknown part $part" ;;
  esac
done
