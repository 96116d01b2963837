#!/usr/bin/env bash
# sanitize.sh - the sanitizer stage of the test command: builds, in build-asan/, only what a
# subset of fast tests needs, with gcc's AddressSanitizer (LeakSanitizer included) and
# UndefinedBehaviorSanitizer made fatal (-fno-sanitize-recover=undefined), and runs them:
# the .npy, tuning database, cache, data set and report tests, the planner, the layer and
# op calls on caller memory, the rendezvous and the NCCL loader, the fuzz corpus replays,
# and one full training step of cifar_resnet8 on the host backend (step_once). Any finding
# fails the stage. The one LeakSanitizer quirk and its handling: tests/lsan.supp, README.
#   tools/sanitize.sh            (SANITIZE_JOBS: build jobs, default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
build=build-asan
flags="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined"
tests=(test_cache test_tunedb test_npy test_report test_data test_step_warm_cache test_planner test_layer_memory
  test_ops_memory test_rendezvous test_nccl)
targets=(test_cache test_tunedb test_npy test_report poolprop_cli test_data step_once test_planner test_layer_memory
  test_ops_memory test_rendezvous test_nccl)
for t in npy checkpoint tunedb csv cifar policy layer model; do
  tests+=("test_fuzz_replay_$t")
  targets+=("fuzz_replay_$t")
done
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" >/dev/null
cmake --build "$build" -j"${SANITIZE_JOBS:-2}" --target "${targets[@]}" >/dev/null
# The kernels the host backend compiles are plain shared objects (the host compiler and
# flags are those of the normal build, so its kernel cache serves them): reuse it when the
# normal build has one rather than compile every kernel again.
if [ -d build/test-cache ] && [ ! -e "$build/test-cache" ]; then ln -s ../build/test-cache "$build/test-cache"; fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
# TLS is no root set for the leak check (a scan of the TLS of unloaded kernel modules can
# crash LeakSanitizer); tests/lsan.supp names what glibc then leaves unreachable.
export LSAN_OPTIONS=${LSAN_OPTIONS:-use_tls=0:suppressions=$PWD/tests/lsan.supp}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
# The leak check with these options must still see a leak: a canary that leaks one block.
printf 'void *volatile kept;\nint main(void) { kept = __builtin_malloc(77); kept = 0; return 0; }\n' >"$build/lsan_canary.c"
gcc $flags "$build/lsan_canary.c" -o "$build/lsan_canary"
if "$build/lsan_canary" 2>/dev/null; then
  echo "sanitize.sh: LeakSanitizer missed the canary's leak: the leak check is not working" >&2
  exit 1
fi
regex="^($(IFS='|'; echo "${tests[*]}"))\$"
ctest --test-dir "$build" -j2 --output-on-failure -R "$regex"
