#!/usr/bin/env bash
# install-deps.sh - installs the Debian packages poolprop builds with, where missing:
# Lua 5.4 (library, headers, interpreter for the generator tests), CMake, a C/C++
# compiler, valgrind (a full training step runs under it in the tests), python3 (the test
# of examples/bench_pytorch.py's comparisons), clang with its sanitizer and libFuzzer runtimes
# (libclang-rt-dev: libclang_rt.fuzzer, for the fuzz targets of tools/fuzz.sh; the versions
# of Debian's default clang), clang-format (tools/check-format.sh; .clang-format is written for
# Debian bookworm's clang-format 14), Debian's PyTorch and torchvision (python3-torch,
# python3-torchvision: the tests of python/, poolprop.torch), Open MPI (libopenmpi-dev,
# openmpi-bin: data-parallel training on the host backend and its tests). The CUDA toolkit (NVRTC and headers) must already be installed; no GPU or
# driver is needed to build and test.
set -euo pipefail
packages=(liblua5.4-dev lua5.4 cmake make gcc g++ valgrind python3 clang libclang-rt-dev clang-format python3-torch
  python3-torchvision libopenmpi-dev openmpi-bin)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: not root; run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -e /usr/local/cuda/include/nvrtc.h ] && ! command -v nvcc >/dev/null 2>&1; then
  echo "install-deps: the CUDA toolkit (NVRTC) was not found under /usr/local/cuda or on PATH" >&2
  exit 1
fi
