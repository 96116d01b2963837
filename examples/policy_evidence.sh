#!/usr/bin/env bash
# policy_evidence.sh - what `poolprop policy` buys, on the host backend, in one script:
#   1. memory: CIFAR ResNet-20 on the synthetic data (batch 32, 16x16): the budget is the
#      planned peak of uniform f=4; the chosen policy and uniform f=4 train the same steps
#      from the same initialisation; their logs, final accuracies and error totals;
#   2. curve: ResNet-50 at batch 64 (224x224 for memory), the chosen policy's error against
#      uniform f=2, 4, 8 at budgets from f=8's peak to f=1's, from one probe of 2 batches of
#      4 images at 32x32 (the emulator cannot probe 224x224 in minutes; the errors are those
#      of the small images, the memory that of the real run).
# Figures go to $OUT (default policy-evidence/) and the terminal. About 15 minutes on 2 cores.
#   POOLPROP=build/poolprop OUT=policy-evidence examples/policy_evidence.sh
set -euo pipefail
tool=${POOLPROP:-build/poolprop}
out=${OUT:-policy-evidence}
epochs=${EPOCHS:-4}
mkdir -p "$out"
peak() { "$tool" plan "$@" --json | sed -n 's/.*"peak_bytes": \([0-9]*\).*/\1/p'; }

model=(cifar_resnet20 --batch 32 --image 16x16)
budget=$(peak "${model[@]}" --policy 4)
echo "== 1. cifar_resnet20, batch 32, 16x16: budget = uniform f=4's planned peak, $budget bytes"
"$tool" policy "${model[@]}" --budget "$budget" --probe-steps 2 --probe-batch 16 --factors 1,2,4 --backend host \
  --out "$out/auto.lua" | tee "$out/policy_cifar.txt"
for run in auto f4; do
  policy=$([ "$run" = auto ] && echo "$out/auto.lua" || echo 4)
  "$tool" train "${model[@]}" --policy "$policy" --epochs "$epochs" --train-size 512 --val-size 256 --backend host \
    --seed 3 --log "$out/train_$run.csv" > "$out/train_$run.txt" 2>&1
  echo "$run: $(grep -E '^planned peak' "$out/train_$run.txt")"
  echo "$run: $(tail -n 1 "$out/train_$run.csv")   (epoch,train_loss,train_acc,val_loss,val_acc,s,peak)"
done

echo "== 2. resnet50, batch 64, 224x224: error against memory, probed at 32x32"
f1=$(peak resnet50 --batch 64 --policy 1)
f8=$(peak resnet50 --batch 64 --policy 8)
budgets=""
for i in 0 1 2 3 4 5; do budgets="$budgets${budgets:+,}$((f8 + (f1 - f8) * i / 5))"; done
"$tool" policy resnet50 --batch 64 --budget "$budgets" --probe-steps 2 --probe-batch 4 --probe-image 32x32 \
  --factors 1,2,4,8 --backend host | tee "$out/curve_resnet50.txt"
