#!/usr/bin/env bash
# fuzz.sh - builds the libFuzzer targets (fuzz/fuzz_<name>.c) with clang, ASan and UBSan in
# build-fuzz/ and runs each for SECONDS (default 300), seeded with its checked-in corpus
# fuzz/corpus/<name>/. New inputs go to a scratch folder, never into the checked-in corpus;
# a crash, leak, timeout or invariant failure is saved there too and fails the run.
#   tools/fuzz.sh [SECONDS] [NAME...]    e.g. tools/fuzz.sh 3600 npy checkpoint
# Environment: FUZZ_OUT (scratch folder; default build-fuzz/out, emptied first),
# FUZZ_JOBS (build jobs, default 2). A finding: copy the saved input into
# fuzz/corpus/<name>/ (named crash_<what>), fix the bug, and the replay test keeps it fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(npy checkpoint tunedb csv cifar policy layer model)
[[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -gt 0 ] || { echo "fuzz.sh: SECONDS must be a positive integer" >&2; exit 2; }
build=build-fuzz
out=${FUZZ_OUT:-$build/out}
flags="-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_C_FLAGS="$flags" -DBUILD_TESTING=OFF -DPP_FUZZ=ON >/dev/null
cmake --build "$build" -j"${FUZZ_JOBS:-2}" --target "${targets[@]/#/fuzz_}" >/dev/null
rm -rf "$out"
mkdir -p "$out"
# The targets write each input to a file (most readers take paths): on tmpfs where there is one.
scratch=$(mktemp -d /dev/shm/pp-fuzz.XXXXXX 2>/dev/null || mktemp -d "$PWD/$out/tmp.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export TMPDIR=$scratch
# The generator's Lua state is bounded by its own instruction budget and memory cap; these
# limits are the backstop (a hang or a leak past them is a finding). The targets set ASan's
# quarantine to 32 MiB themselves (fuzz/fuzz_util.c says why); ASAN_OPTIONS can override it.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
printf '%-12s %10s %8s  %s\n' target runs corpus result
for t in "${targets[@]}"; do
  mkdir -p "$out/$t" "$out/findings"
  log="$out/$t.log"
  rc=0
  dict=()
  case $t in policy | layer | model) dict=(-dict=fuzz/lua.dict) ;; esac
  "$build/fuzz/fuzz_$t" "$out/$t" "fuzz/corpus/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=16384 -close_fd_mask=3 -print_final_stats=1 -artifact_prefix="$out/findings/$t-" "${dict[@]}" >"$log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  [ -n "$runs" ] || runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
  new=$(find "$out/$t" -type f | wc -l)
  if [ "$rc" -eq 0 ]; then
    result=ok
  else
    result="FAILED (rc $rc; see $log)"
    failed+=("$t")
  fi
  printf '%-12s %10s %8s  %s\n' "$t" "${runs:-?}" "+$new" "$result"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: findings in ${failed[*]}; inputs saved under $out/findings/:" >&2
  ls -l "$out/findings" >&2 || true
  for t in "${failed[@]}"; do grep -m3 -E "ERROR|runtime error|invariant failed|SUMMARY" "$out/$t.log" >&2 || true; done
  exit 1
fi
