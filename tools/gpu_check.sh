#!/usr/bin/env bash
# gpu_check.sh - the one prepared run for a lent GPU machine (at most about 9.5 minutes,
# inside one 10-minute device call): builds,
# runs the GPU tests (which report skipped elsewhere), tunes ResNet-50's convolutions,
# benchmarks poolprop on the cuda backend against PyTorch/cuDNN on the same GPU where
# PyTorch is installed (ResNet-50 batch 64 and CIFAR ResNet-56 batch 128; PyTorch's training
# step in each of its modes: TF32, channels_last + TF32, bf16 autocast in NCHW and in
# channels_last, one line each), times ResNet-50's step with bf16 storage (policy
# 2,act=bf16, to set beside PyTorch's bf16 autocast lines), runs poolprop.torch on the GPU
# (python/tests/test_torch_gpu.py: caller pointers on PyTorch's stream, and torchvision
# ResNet-50 batch 64 converted against unconverted and torch.utils.checkpoint: peak memory
# and step time; it needs a CUDA build of PyTorch, and reports skipped with Debian's
# CPU-only one), and writes everything under $OUT
# (default ./gpu-out). Each stage's output goes to its own file, so a stage that fails or
# times out leaves the others' results, and runs the data-parallel path with NCCL at world
# size 1 (rank 0 of 1, a rendezvous file) against the same training run without it.
# Stages (arguments select some, in this order; none: all): ctest tune pytorch cifar bf16
# torch nccl. Limits (s): ctest 120, tune 70, pytorch (ResNet-50 comparison) 185, cifar 60,
# bf16 60, torch 70, nccl 80: 645 s at most, plus the build; where one 10-minute device call
# cannot hold them all, split them over two calls (tools/gpu_check.sh ctest tune pytorch,
# then cifar bf16 torch nccl: the build is reused).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}
mkdir -p "$out"
export POOLPROP_CACHE_DIR=${POOLPROP_CACHE_DIR:-$PWD/build/gpu-cache}
stages=${*:-ctest tune pytorch cifar bf16 torch nccl}
want() { case " $stages " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
{ nvidia-smi || true; } > "$out/nvidia-smi.txt" 2>&1
# poolprop.torch's GPU test runs under the first Python whose PyTorch sees a GPU (CTest's
# default is Debian's /usr/bin/python3, whose PyTorch is CPU-only).
torch_python=/usr/bin/python3
for p in python3 /usr/bin/python3; do
  if "$p" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    torch_python=$(command -v "$p"); break
  fi
done
(tools/install-deps.sh && cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DPP_TORCH_PYTHON="$torch_python" &&
  cmake --build build -j"$(nproc)") \
  > "$out/build.txt" 2>&1 || { echo "build failed: see $out/build.txt"; exit 1; }
if want ctest; then
  # The GPU tests only: the host-emulation suite is CI's, and takes minutes there.
  timeout 120 ctest --test-dir build -R "cuda|tensor_core" --output-on-failure > "$out/ctest.txt" 2>&1
  echo "ctest (GPU tests): $(grep -E 'tests passed|tests failed' "$out/ctest.txt")"
fi
# Tune ResNet-50's kernels (TF32 allowed, as PyTorch runs), bounded, then benchmark with
# the tuned variants against PyTorch/cuDNN in the same invocation.
export POOLPROP_TUNING_DIR="$out/tuning"
if want tune; then
  timeout 70 build/poolprop tune resnet50 --batch 64 --policy 2,math=tf32 --backend cuda \
    --budget-seconds 50 --max-variants 10 > "$out/tune_resnet50.txt" 2>&1
  echo "tune: $(tail -n 2 "$out/tune_resnet50.txt" | head -n 1)"
fi
modes=tf32,channels_last_tf32,amp_bf16,channels_last_amp_bf16
if want pytorch; then
  timeout 185 python3 examples/bench_pytorch.py resnet50 --batch 64 --policy 2,math=tf32 \
    --pytorch-mode "$modes" --poolprop build/poolprop > "$out/pytorch_resnet50.txt" 2>&1
fi
if want cifar; then
  timeout 60 python3 examples/bench_pytorch.py cifar_resnet56 --batch 128 --policy 2,math=tf32 \
    --pytorch-mode "$modes" --poolprop build/poolprop > "$out/pytorch_cifar_resnet56.txt" 2>&1
fi
if want bf16; then
  # bf16 storage: the step's time and its peak against the AMP-like baseline (default variants).
  timeout 60 build/poolprop bench resnet50 --batch 64 --policy 2,act=bf16 --backend cuda --step-only \
    > "$out/bench_resnet50_act_bf16.txt" 2>&1
fi
if want torch; then
  # poolprop.torch on the GPU (its own ctest entry sets the library and Python paths).
  timeout 70 ctest --test-dir build -R "^test_torch_gpu$" --output-on-failure -V > "$out/torch_gpu.txt" 2>&1
  echo "poolprop.torch GPU test: $(grep -E 'tests passed|tests failed|Skipped' "$out/torch_gpu.txt" | tail -n 1)"
  grep -E "ResNet-50|peak" "$out/torch_gpu.txt" 2>/dev/null
fi
if want nccl; then
  # The same 40 training steps without a communicator and through NCCL at world size 1 (the
  # rendezvous file, the all-reduce of the gradients, the statistics broadcast).
  train=(train cifar_resnet56 --backend cuda --batch 128 --epochs 1 --steps 40 --train-size 5120 --val-size 256
    --policy 2,math=tf32)
  timeout 40 build/poolprop "${train[@]}" --log "$out/nccl_off.csv" > "$out/nccl_off.txt" 2>&1
  rm -f "$out/rendezvous"
  timeout 40 build/poolprop "${train[@]}" --rank 0 --world-size 1 --rendezvous "file:$out/rendezvous" \
    --log "$out/nccl_1.csv" > "$out/nccl_1.txt" 2>&1
  echo "NCCL world size 1: $(grep -E '^data parallel' "$out/nccl_1.txt")"
  for f in nccl_off nccl_1; do echo "  $f: $(grep -E '^epoch 1:' "$out/$f.txt") $(tail -n 1 "$out/$f.csv")"; done
fi
# The figures a closing note quotes: per-kernel totals, poolprop's step, one line per PyTorch
# mode, the verdicts.
grep -E "^(all layers|training step|PyTorch mode|ratios|fastest)" "$out"/pytorch_*.txt 2>/dev/null
grep -E "^(training step|memory|peak)" "$out/bench_resnet50_act_bf16.txt" 2>/dev/null
