#!/usr/bin/env bash
# The GPU numbers of BENCHMARKS.md, in parts that each fit one 10-minute command on a lent GPU machine
# (torch, torchvision, scikit-learn, tqdm and timm are already there; the package runs from the tree).
#
#   bash benchmarks/gpu_suite.sh tests      # the GPU-marked tests (skipped on CI, which has no GPU)
#   bash benchmarks/gpu_suite.sh maco       # MaCo vs the model's own throughput, torch.compile, Horama-style
#   bash benchmarks/gpu_suite.sh nmf        # torch HALS vs scikit-learn, 20,000 x 2,048
#   bash benchmarks/gpu_suite.sh features   # crop features vs plain inference
#   bash benchmarks/gpu_suite.sh class      # one ImageNet-sized class end to end, per stage, projected hours
#   bash benchmarks/gpu_suite.sh all        # all of the above (about 15 minutes: split it across two calls)
#
# Each part writes its table to $OUT/<part>.md (or benchmarks/results/gpu/ without $OUT).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out="${OUT:-benchmarks/results/gpu}"
mkdir -p "$out"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "no nvidia-smi"; } \
  | tee "$out/device.txt"
python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" \
  | tee -a "$out/device.txt"

part() {
  case "$1" in
    tests) python -m pytest -q -m gpu tests 2>&1 | tee "$out/tests.md" ;;
    maco) python benchmarks/bench_maco.py --device cuda --compile --repeats 10 --horama-targets 2 | tee "$out/maco.md" ;;
    nmf) python benchmarks/bench_nmf.py --device cuda --n 20000 --solvers hals | tee "$out/nmf.md" ;;
    features) python benchmarks/bench_features.py --device cuda --images 300 | tee "$out/features.md" ;;
    class) python benchmarks/bench_class.py --device cuda | tee "$out/class.md" ;;
    *) echo "unknown part '$1': use tests, maco, nmf, features, class or all" >&2; exit 2 ;;
  esac
}

if [ "${1:-}" = all ]; then
  for p in tests maco nmf features class; do part "$p"; done
else
  part "${1:?name a part: tests, maco, nmf, features, class or all}"
fi
