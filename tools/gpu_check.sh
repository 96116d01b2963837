#!/usr/bin/env bash
# gpu_check.sh - the one prepared run for a lent GPU machine: builds, runs every test (the
# GPU tests run for real there instead of reporting skipped), benchmarks poolprop on the
# cuda backend and PyTorch/cuDNN on the same GPU where PyTorch is installed, and writes
# everything under $OUT (default ./gpu-out). Each stage's output goes to its own file, so
# a stage that fails or times out leaves the others' results.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}
mkdir -p "$out"
export POOLPROP_CACHE_DIR=${POOLPROP_CACHE_DIR:-$PWD/build/gpu-cache}
{ nvidia-smi || true; } > "$out/nvidia-smi.txt" 2>&1
(tools/install-deps.sh && cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j"$(nproc)") \
  > "$out/build.txt" 2>&1 || { echo "build failed: see $out/build.txt"; exit 1; }
ctest --test-dir build -j4 --output-on-failure > "$out/ctest.txt" 2>&1
echo "ctest: $(grep -E 'tests passed|tests failed' "$out/ctest.txt")"
timeout 300 build/poolprop bench resnet50 --batch 64 --image 224x224 --policy 2 --backend cuda \
  --json "$out/poolprop_resnet50.json" > "$out/bench_resnet50.txt" 2>&1
timeout 120 build/poolprop bench cifar_resnet56 --batch 128 --image 32x32 --policy 2 --backend cuda \
  --json "$out/poolprop_cifar_resnet56.json" > "$out/bench_cifar_resnet56.txt" 2>&1
for model in resnet50 cifar_resnet56; do
  if [ -f "$out/poolprop_$model.json" ]; then
    timeout 300 python3 examples/bench_pytorch.py "$out/poolprop_$model.json" > "$out/pytorch_$model.txt" 2>&1
  fi
done
timeout 300 env EPOCHS=3 examples/compare_policies.sh "$out/compare" > "$out/compare.txt" 2>&1
tail -n 3 "$out"/bench_*.txt "$out"/pytorch_*.txt "$out/compare.txt" 2>/dev/null
