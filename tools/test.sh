#!/usr/bin/env bash
# test.sh - the test command (README, .ci/run): every stage, in order, each timed:
#   deps       tools/install-deps.sh
#   build      the normal build in build/
#   ctest      every CTest test (the fuzz corpus replays included)
#   format     tools/check-format.sh: C/C++/CUDA against .clang-format, Lua against stylua.toml
#   sanitize   tools/sanitize.sh: ASan+UBSan build of a fast subset, a training step included
#   fuzz       tools/fuzz.sh: each libFuzzer target for FUZZ_SECONDS (default 15)
# A failing deps or build stage stops the run; a failing test stage does not stop the others.
# Exits non-zero if any stage failed, after a table of stages, times and results.
set -uo pipefail
cd "$(dirname "$0")/.."
names=() results=() times=()
failed=0
stage() { # stage NAME COMMAND...
  local name=$1 start=$SECONDS rc=0
  shift
  echo "== test.sh: $name: $*"
  "$@" || rc=$?
  names+=("$name") times+=($((SECONDS - start)))
  if [ "$rc" -eq 0 ]; then results+=(ok); else results+=("FAILED (exit $rc)"); failed=1; fi
  return "$rc"
}
summary() {
  echo "== test.sh: summary"
  for i in "${!names[@]}"; do printf '   %-9s %5ss  %s\n' "${names[$i]}" "${times[$i]}" "${results[$i]}"; done
}
trap summary EXIT
stage deps tools/install-deps.sh || exit 1
stage build bash -c 'cmake -S . -B build && cmake --build build -j2' || exit 1
stage ctest ctest --test-dir build -j2 --output-on-failure
stage format tools/check-format.sh
stage sanitize tools/sanitize.sh
stage fuzz tools/fuzz.sh "${FUZZ_SECONDS:-15}"
exit "$failed"
