#!/usr/bin/env bash
# compare_policies.sh - the evidence run: trains the same small CIFAR-style ResNet
# (cifar_resnet8) on the synthetic data set with the inputs of every convolution pooled by
# f = 1, 2 and 4, writes the three CSV logs and a chart comparing them, and prints a table
# of final validation accuracy, planned peak memory and time per step. It uses the cuda
# backend where a GPU driver is present and the host backend elsewhere; on the host it is
# sized to finish in well under 15 minutes on 2 cores.
# Usage: examples/compare_policies.sh [OUT_DIR]   (POOLPROP=path/to/poolprop, EPOCHS=n)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
tool=${POOLPROP:-$here/build/poolprop}
out=${1:-compare-policies}
epochs=${EPOCHS:-3}
backend=host
if [ -e /dev/nvidiactl ] || command -v nvidia-smi >/dev/null 2>&1; then backend=cuda; fi
mkdir -p "$out"
settings=(--data synthetic --image 16 --batch 32 --epochs "$epochs" --train-size 2048 --val-size 512
          --lr 0.05 --seed 1 --backend "$backend")
steps_per_epoch=$((2048 / 32))
for f in 1 2 4; do
  echo "== f = $f"
  "$tool" train cifar_resnet8 "${settings[@]}" --policy "$f" --log "$out/f$f.csv"
done
"$tool" report "$out/f1.csv" "$out/f2.csv" "$out/f4.csv" -o "$out/curves.svg" \
  --title "cifar_resnet8 on synthetic 16x16, $backend backend: pooled weight-gradient inputs"
echo
printf '%-8s %14s %14s %16s %14s\n' policy val_accuracy val_loss peak_bytes ms_per_step
for f in 1 2 4; do
  awk -F, -v f="$f" -v steps="$steps_per_epoch" '
    /^#/ || /^epoch/ { next }
    { last = $0; secs += $6; n++ }
    END { split(last, c, ","); printf "f=%-6s %14.4f %14.4f %16d %14.1f\n", f, c[5], c[4], c[7], 1000 * secs / (n * steps) }' \
    "$out/f$f.csv"
done
echo "logs: $out/f{1,2,4}.csv  chart: $out/curves.svg"
