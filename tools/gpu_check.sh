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
# Stages (arguments select some, in this order; none: all): ctest step tune pytorch cifar
# bf16 torch nccl train. Limits (s): ctest 150, step (a training step against the host) 160,
# tune 70, pytorch (ResNet-50 comparison) 185, cifar 60, bf16 60, torch 70, nccl 160,
# train 90: 1005 s at most, plus the build; where one 10-minute device call
# cannot hold them all, split them over two calls (tools/gpu_check.sh ctest step nccl torch,
# then tune pytorch cifar bf16 train).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}
mkdir -p "$out"
export POOLPROP_CACHE_DIR=${POOLPROP_CACHE_DIR:-$PWD/build/gpu-cache}
stages=${*:-ctest step tune pytorch cifar bf16 torch nccl train}
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
# A machine without a package registry (a lent GPU machine) builds against Debian packages
# carried in the folder PP_OFFLINE_DEBS (liblua5.4-0, liblua5.4-dev and lua5.4, from
# `apt-get download`), unpacked under build/offline-deps; valgrind, which only a host test
# uses, is then named as /bin/false so that no test can pass through it.
cmake_args=(-DCMAKE_BUILD_TYPE=Release -DPP_TORCH_PYTHON="$torch_python")
prepare=tools/install-deps.sh
if [ -n "${PP_OFFLINE_DEBS:-}" ]; then
  deps=$PWD/build/offline-deps
  prepare="mkdir -p $deps"
  for deb in "$PP_OFFLINE_DEBS"/*.deb; do
    if command -v dpkg > /dev/null; then prepare+=" && dpkg -x $deb $deps"
    else prepare+=" && ar p $deb data.tar.xz | tar -xJ -C $deps"; fi
  done
  # luaconf.h includes Debian's multiarch header from the include folder's own directory.
  prepare+=" && cp $deps/usr/include/x86_64-linux-gnu/lua5.4-deb-multiarch.h $deps/usr/include/lua5.4/"
  lua_lib=$deps/usr/lib/x86_64-linux-gnu
  export LD_LIBRARY_PATH=$lua_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  cmake_args+=(-DLUA_INCLUDE_DIR="$deps/usr/include/lua5.4" -DLUA_LIBRARY="$lua_lib/liblua5.4.so"
    -DPP_LUA_INTERPRETER="$deps/usr/bin/lua5.4" -DPP_VALGRIND=/bin/false)
fi
# NCCL where the system has none: the copy a pip-installed PyTorch carries.
if [ -z "${POOLPROP_NCCL_LIBRARY:-}" ] && ! ldconfig -p 2>/dev/null | grep -q 'libnccl\.so\.2'; then
  nccl=$(find /opt /usr -name 'libnccl.so.2' -print -quit 2>/dev/null)
  [ -n "$nccl" ] && export POOLPROP_NCCL_LIBRARY=$nccl
fi
(eval "$prepare" && cmake -S . -B build "${cmake_args[@]}" && cmake --build build -j"$(nproc)") \
  > "$out/build.txt" 2>&1 || { echo "build failed: see $out/build.txt"; tail -n 30 "$out/build.txt"; exit 1; }
echo "build: ok (NCCL: ${POOLPROP_NCCL_LIBRARY:-from the system})"
if want ctest; then
  # The GPU tests only: the host-emulation suite is CI's, and takes minutes there.
  timeout 150 ctest --test-dir build -R "cuda|tensor_core|nccl" -j4 --output-on-failure > "$out/ctest.txt" 2>&1
  echo "ctest (GPU tests): $(grep -E 'tests passed|tests failed' "$out/ctest.txt")"
  grep -E "^ *[0-9]+/[0-9]+ Test" "$out/ctest.txt"
fi
if want step; then
  # One whole training step (loss, every gradient, the updated BN statistics) on the GPU
  # against the host backend running the same generated kernels: cifar_resnet20 at 32x32
  # (basic blocks, policy 4) and resnet18 at 64x64 (the 7x7 stem and max pool, policy 2).
  # fp32: the GPU within 1e-4 of the host. TF32: the GPU's error against the host's fp32
  # step at most 3 times the host's own TF32 error plus 1e-3 (tools/compare_npy.py says why
  # two TF32 runs cannot be compared directly).
  d=$out/step
  mkdir -p "$d"
  python3 -c "
import numpy as np; r = np.random.default_rng(7)
for n, hw in ((8, 32), (4, 64)):
    np.save('$d/x%d.npy' % hw, r.standard_normal((n, 3, hw, hw)).astype(np.float32))
    np.save('$d/labels%d.npy' % hw, r.integers(0, 10, n).astype(np.int64))"
  for run in "cifar_resnet20 32 4" "resnet18 64 2"; do
    set -- $run
    timeout 20 build/poolprop init "$1" --classes 10 --seed 3 --out "$d/params_$1" > /dev/null 2>&1
    for math in fp32 tf32; do
      for b in host cuda; do
        tag=$1_$3_${math}_$b
        mkdir -p "$d/$tag"
        timeout 60 build/poolprop step "$1" --params "$d/params_$1" --x "$d/x$2.npy" --labels "$d/labels$2.npy" \
          --policy "$3,math=$math" --backend "$b" --out "$d/$tag" > "$d/$tag.txt" 2>&1 || tail -n 5 "$d/$tag.txt"
      done
    done
    ref=$d/$1_$3_fp32_host
    echo "step $1 ${2}x$2 policy $3 fp32, cuda against host: $(python3 tools/compare_npy.py "$ref" \
      "$d/$1_$3_fp32_cuda" --tol 1e-4 | tee "$d/$1_fp32.compare.txt" | tail -n 1)"
    echo "step $1 ${2}x$2 policy $3 tf32, cuda against host fp32: $(python3 tools/compare_npy.py "$ref" \
      "$d/$1_$3_tf32_cuda" --baseline "$d/$1_$3_tf32_host" --factor 3 --tol 1e-3 |
      tee "$d/$1_tf32.compare.txt" | tail -n 1)"
  done
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
  # Without, with, and again without: the order's own effect (compilation into the cache,
  # the clocks) shows as a difference between the two runs without.
  timeout 40 build/poolprop "${train[@]}" --log "$out/nccl_off.csv" > "$out/nccl_off.txt" 2>&1
  rm -f "$out/rendezvous"
  timeout 40 build/poolprop "${train[@]}" --rank 0 --world-size 1 --rendezvous "file:$out/rendezvous" \
    --log "$out/nccl_1.csv" > "$out/nccl_1.txt" 2>&1
  timeout 40 build/poolprop "${train[@]}" --log "$out/nccl_off2.csv" > "$out/nccl_off2.txt" 2>&1
  # Synchronised BN through NCCL (the partials' gather) at world size 1.
  rm -f "$out/rendezvous"
  timeout 40 build/poolprop "${train[@]}" --rank 0 --world-size 1 --rendezvous "file:$out/rendezvous" --sync-bn \
    --log "$out/nccl_1_sync_bn.csv" > "$out/nccl_1_sync_bn.txt" 2>&1
  echo "NCCL world size 1: $(grep -E '^data parallel' "$out/nccl_1.txt")"
  for f in nccl_off nccl_1 nccl_off2 nccl_1_sync_bn; do
    echo "  $f: last progress line: $(grep -E "step 40/40" "$out/$f.txt")"
    echo "  $f: $(grep -E '^epoch 1:' "$out/$f.txt") $(tail -n 1 "$out/$f.csv" 2>/dev/null)"
    grep -q '^epoch 1:' "$out/$f.txt" || tail -n 5 "$out/$f.txt"
  done
fi
if want train; then
  # `poolprop train` on ResNet-50's synthetic 224x224 images: where a batch's time goes
  # (making the images on the CPU's threads, and the training step).
  # (lr 0.02: at the default 0.1 with no warm-up ResNet-50 diverges in its first steps, in
  # PyTorch as here.)
  timeout 90 build/poolprop train resnet50 --backend cuda --batch 64 --image 224x224 --epochs 1 --steps 12 \
    --train-size 768 --val-size 64 --lr 0.02 --policy 2,math=tf32 > "$out/train_resnet50.txt" 2>&1
  echo "train resnet50: $(grep -E '^epoch 1:' "$out/train_resnet50.txt" || tail -n 3 "$out/train_resnet50.txt")"
fi
# The figures a closing note quotes: per-kernel totals, poolprop's step, one line per PyTorch
# mode, the verdicts.
grep -E "^(all layers|training step|PyTorch mode|ratios|fastest)" "$out"/pytorch_*.txt 2>/dev/null
grep -E "^(training step|memory|peak)" "$out/bench_resnet50_act_bf16.txt" 2>/dev/null
