#!/usr/bin/env bash
# The GPU numbers of BENCHMARKS.md, in parts that each fit one 10-minute command on a lent GPU machine
# (torch, torchvision, scikit-learn, tqdm and timm are already there; the package runs from the tree).
#
#   bash benchmarks/gpu_suite.sh tests      # the GPU-marked tests (skipped on CI, which has no GPU)
#   bash benchmarks/gpu_suite.sh maco       # MaCo vs the folded model's own throughput, torch.compile, Horama-style
#   bash benchmarks/gpu_suite.sh nmf        # torch HALS vs scikit-learn: 20,000 x 2,048 planted, and demo features
#   bash benchmarks/gpu_suite.sh features   # crop features vs plain inference
#   bash benchmarks/gpu_suite.sh class      # one ImageNet-sized class end to end, per stage, projected hours
#   bash benchmarks/gpu_suite.sh all        # all of the above (about 15 minutes: split it across two calls)
#
# Each part writes $OUT/<part>.json (device, torch/torchvision/CUDA versions, date, command, settings, every
# figure) and $OUT/<part>.md (the table); OUT defaults to benchmarks/results/gpu. Without a CUDA device the
# script stops: CPU figures must not land among the GPU results.
#
#   bash benchmarks/gpu_suite.sh --dry-run all     # or GPU_SUITE_DRY_RUN=1: every part on the CPU, tiny sizes
#
# A dry run checks the script itself (tests/test_benchmarks_gpu_suite.py runs it); it writes into $OUT, by default
# a new temporary folder, and refuses benchmarks/results/gpu.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
results=benchmarks/results/gpu
dry="${GPU_SUITE_DRY_RUN:-0}"
if [ "${1:-}" = --dry-run ]; then
  dry=1
  shift
fi

if [ "$dry" = 1 ]; then
  out="${OUT:-$(mktemp -d)}"
  case "$(realpath -m "$out")/" in
    "$(realpath -m "$results")"/*)
      echo "gpu_suite: a dry run writes CPU figures; give OUT a folder outside $results" >&2
      exit 2 ;;
  esac
  device=cpu
  maco=(--steps 3 --image-size 64 --crops 2 --targets 2 --input-size 32 --repeats 1 --rounds 1)
  nmf=(--n 300 --c 64 --demo-images 5)
  features=(--images 1 --input-size 64 --patch-size 32 --batch-size 8)
  class=(--model demo --images 4 --k 2 --steps 2 --crops 2 --image-size 64 --inversions 1)
else
  out="${OUT:-$results}"
  if ! python -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
    echo "gpu_suite: no CUDA device here; run on a GPU machine, or pass --dry-run to check the script on the CPU" >&2
    exit 2
  fi
  device=cuda
  maco=(--compile --repeats 10 --rounds 3)  # paper settings; Horama-style: all 10 targets timed
  nmf=(--n 20000)
  features=(--images 300)
  class=(--model resnet50)
fi
mkdir -p "$out"
echo "gpu_suite: results in $out"

part() {
  case "$1" in
    tests) python benchmarks/gpu_tests.py --out "$out" ;;
    maco) python benchmarks/bench_maco.py --device "$device" "${maco[@]}" --out "$out" ;;
    nmf) python benchmarks/bench_nmf.py --device "$device" --solvers hals "${nmf[@]}" --out "$out" ;;
    features) python benchmarks/bench_features.py --device "$device" "${features[@]}" --out "$out" ;;
    class) python benchmarks/bench_class.py --device "$device" "${class[@]}" --out "$out" ;;
    *) echo "unknown part '$1': use tests, maco, nmf, features, class or all" >&2; return 2 ;;
  esac
}

if [ "${1:-}" = all ]; then
  status=0
  for p in tests maco nmf features class; do part "$p" || status=1; done  # one failing part does not stop the rest
  exit "$status"
fi
part "${1:?name a part: tests, maco, nmf, features, class or all}"
