#!/usr/bin/env bash
# test_train_mpi.sh - `poolprop train` across 2 processes under mpirun (host backend):
#   checkpoints  a 2-rank run stopped by SIGINT after 3 steps (rank 0's, agreed by both)
#                writes one checkpoint and exits 130; resumed with 2 ranks, its log equals
#                the uninterrupted 2-rank run's, epoch for epoch (every number but seconds);
#   one writer   only rank 0 writes the log and the checkpoint, and prints;
#   refusals     resuming with 1 process, or with 3 ranks, a checkpoint of 2; a global batch
#                that 2 ranks cannot share; --rank without --world-size; a rendezvous on the
#                host backend (MPI carries the host's reductions) -> clear errors.
# Usage: test_train_mpi.sh POOLPROP MPIRUN
set -euo pipefail
tool=$1
mpirun=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# The shapes of test_data_parallel's 2-rank run (cifar_resnet8, 16x16, 16 per rank, policy 2), whose kernels
# the cache then holds; 2 epochs of 2 steps.
base=(train cifar_resnet8 --image 16x16 --epochs 2 --train-size 64 --val-size 32 --backend host --lr 0.05 --policy 2)
common=("${base[@]}" --batch 32)
run2() { timeout 600 "$mpirun" --oversubscribe -np 2 "$tool" "$@"; }
fail() { echo "test_train_mpi: $*" >&2; exit 1; }
expect_error() { # expect_error TEXT COMMAND...: the command fails and says TEXT
  local text=$1 rc=0
  shift
  "$@" > "$work/err.log" 2>&1 || rc=$?
  [ "$rc" -ne 0 ] || fail "succeeded, expected an error saying '$text': $*"
  grep -q -- "$text" "$work/err.log" || { cat "$work/err.log" >&2; fail "the error does not say '$text': $*"; }
  echo "refused as expected: $(grep -m1 -- "$text" "$work/err.log")"
}

run2 "${common[@]}" --log "$work/a.csv" > "$work/a.out" 2>&1 || { cat "$work/a.out" >&2; fail "2-rank run failed"; }
[ "$(grep -c '^poolprop train:' "$work/a.out")" -eq 1 ] || fail "the banner was printed by more than rank 0"
grep -q "data parallel: 2 ranks of batch 16, BN per rank" "$work/a.out" || { cat "$work/a.out" >&2; fail "no data-parallel line"; }

rc=0
POOLPROP_TEST_INTERRUPT_AFTER_STEPS=3 run2 "${common[@]}" --log "$work/b.csv" --checkpoint "$work/ck" \
  > "$work/b1.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "the interrupted run exited 0"
grep -q "interrupted: checkpoint written" "$work/b1.out" || { cat "$work/b1.out" >&2; fail "no checkpoint message"; }
[ "$(grep -c 'interrupted: checkpoint written' "$work/b1.out")" -eq 1 ] || fail "more than one rank wrote"
[ "$(ls "$work/ck")" = "checkpoint.ppc" ] || fail "checkpoint folder holds: $(ls "$work/ck")"
run2 "${common[@]}" --log "$work/b.csv" --checkpoint "$work/ck" --resume "$work/ck" > "$work/b2.out" 2>&1 ||
  { cat "$work/b2.out" >&2; fail "resume failed"; }
grep -q "resuming from" "$work/b2.out" || fail "no resume message"
# Every column but seconds (6th) must match.
strip() { grep -E '^[0-9]+,' "$1" | cut -d, -f1-5,7; }
if ! diff <(strip "$work/a.csv") <(strip "$work/b.csv"); then
  fail "the resumed 2-rank run differs from the uninterrupted one"
fi
echo "2 ranks: interrupted after 3 steps and resumed = uninterrupted:"
strip "$work/b.csv"

expect_error "made by 2 ranks and this run has 1" "$tool" "${common[@]}" --resume "$work/ck"
expect_error "made by 2 ranks and this run has 3" timeout 600 "$mpirun" --oversubscribe -np 3 "$tool" "${base[@]}" \
  --batch 48 --resume "$work/ck"
expect_error "does not divide among 2 ranks" run2 "${base[@]}" --batch 31
expect_error "go together" "$tool" "${common[@]}" --rank 0
expect_error "runs its reductions over MPI: launch it with mpirun" "$tool" "${common[@]}" --rank 0 --world-size 2 \
  --rendezvous "file:$work/rv"
