#!/bin/sh
# Builds evstore's libFuzzer targets with clang and runs each of them for a
# time budget (tests/fuzz/, docs/reliability.md "Fuzzing").
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS per target: the argument, else $EVS_FUZZ_SECONDS, else 30.
# TARGETs: protocol record import json fold timeparse base64 (default:
# all).
#
# The build goes to $EVS_FUZZ_BUILD_DIR (default build-fuzz/): clang, every
# library instrumented for coverage (-fsanitize=fuzzer-no-link) under
# ASan+UBSan (-fno-sanitize-recover), only the fuzzer binaries built. Each
# target starts from its seed corpus tests/fuzz/corpus/NAME/ (only read)
# and keeps what it discovers in BUILD/corpus/NAME/, so that later runs go
# on from there. Logs go to BUILD/logs/NAME.log, crashers to
# BUILD/artifacts/NAME/. The exit status is 1 when any target found a
# crash, a leak, a timeout or an out-of-memory input; the message says how
# to turn the input into a regression input of the corpus.
#
#   scripts/fuzz.sh --msan [SECONDS] [TARGET...]
#
# The same with MemorySanitizer instead (uses of uninitialised memory, which
# ASan does not see), in BUILD-msan/, for the targets whose code has no
# dependency that would need an instrumented build of its own: protocol,
# json, timeparse, base64.
#
#   scripts/fuzz.sh --ctest --build-only
#   scripts/fuzz.sh --ctest --no-build TARGET
#
# The forms the ctest tests of label `fuzz` use (tests/fuzz/CMakeLists.txt):
# `fuzz_build` builds every target once, then `fuzz_run_TARGET` runs one
# without building, so that parallel tests do not share a build. In this
# mode SECONDS defaults to 20 rather than 30, and the script exits 77
# (ctest's "skipped") with the reason when clang or its libFuzzer runtime
# is missing, or when EVS_FUZZ_SECONDS is 0 (fuzzing turned off); a run
# whose binary was not built fails. Anything else, as above.
#
# --build-only builds and runs nothing; --no-build runs what is there.
# $EVS_FUZZ_BUILD_JOBS, when set, caps the build's parallel jobs.
set -eu

cd "$(dirname "$0")/.."
root=$(pwd)

all_targets="protocol record import json fold timeparse base64"
msan_targets="protocol json timeparse base64"
ctest_mode=0
build_step=1
run_step=1
msan=0
seconds=""
targets=""
for arg in "$@"; do
  case "$arg" in
  --ctest) ctest_mode=1 ;;
  --build-only) run_step=0 ;;
  --no-build) build_step=0 ;;
  --msan) msan=1 ;;
  -h | --help)
    sed -n '2,/^set -eu/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
    ;;
  *[!0-9]*) targets="$targets $arg" ;;
  *) seconds=$arg ;;
  esac
done
valid=$all_targets
if [ "$msan" = 1 ]; then
  valid=$msan_targets
fi
[ -n "$targets" ] || targets=$valid
for t in $targets; do
  case " $valid " in
  *" $t "*) ;;
  *)
    echo "fuzz.sh: unknown target '$t' (targets: $valid)" >&2
    exit 2
    ;;
  esac
done

skip() {
  echo "fuzz.sh: $*"
  if [ "$ctest_mode" = 1 ]; then
    exit 77
  fi
  exit 1
}

if [ "$build_step" = 0 ] && [ "$run_step" = 0 ]; then
  echo "fuzz.sh: --build-only and --no-build leave nothing to do" >&2
  exit 2
fi

if [ -z "$seconds" ]; then
  seconds=${EVS_FUZZ_SECONDS:-}
  if [ "$ctest_mode" = 1 ] && [ "$seconds" = 0 ]; then
    skip "skipped: EVS_FUZZ_SECONDS=0 turns fuzzing off"
  fi
  if [ -z "$seconds" ]; then
    seconds=30
    [ "$ctest_mode" = 0 ] || seconds=20
  fi
fi
case "$seconds" in
'' | *[!0-9]* | 0)
  echo "fuzz.sh: SECONDS must be a number above 0, not '$seconds'" >&2
  exit 2
  ;;
esac

cc=${EVS_FUZZ_CC:-clang}
command -v "$cc" >/dev/null 2>&1 ||
  skip "no $cc: install clang and libclang-rt-14-dev (scripts/deps.sh)"
probe=$(mktemp -d "${TMPDIR:-/tmp}/evs-fuzz-probe.XXXXXX")
trap 'rm -rf "$probe"' EXIT INT TERM
printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
  'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
  'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {' \
  '  (void)d; (void)n; return 0; }' >"$probe/p.c"
sanitizers=address,undefined
if [ "$msan" = 1 ]; then
  sanitizers=memory
fi
"$cc" -fsanitize=fuzzer,$sanitizers "$probe/p.c" -o "$probe/p" \
  >"$probe/log" 2>&1 ||
  skip "$cc cannot build a libFuzzer binary (libclang-rt-14-dev missing?)"

build=${EVS_FUZZ_BUILD_DIR:-$root/build-fuzz}
if [ "$msan" = 1 ]; then
  build=$build-msan
  # Everything instrumented by the flags below, not by EVS_SANITIZE.
  cflags="-fsanitize=memory,fuzzer-no-link -fsanitize-memory-track-origins"
  cflags="$cflags -fno-omit-frame-pointer"
  sanitize=""
  label=MSan
else
  cflags="-fsanitize=fuzzer-no-link"
  sanitize=address
  label=ASan+UBSan
fi
generator=""
if command -v ninja >/dev/null 2>&1; then
  generator="-G Ninja"
fi

bins=""
for t in $targets; do
  bins="$bins ${t}_fuzzer"
done
build_fuzzers() {
  echo "fuzz.sh: building the fuzzers in $build ($cc, $label)"
  if [ ! -f "$build/CMakeCache.txt" ]; then
    # shellcheck disable=SC2086
    CC=$cc cmake -S "$root" -B "$build" $generator \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_C_FLAGS="$cflags" \
      -DEVS_SANITIZE="$sanitize" \
      -DEVS_WERROR=OFF \
      -DEVS_BUILD_EXAMPLES=OFF >"$probe/log" 2>&1 || {
      cat "$probe/log" >&2
      echo "fuzz.sh: configuring $build failed" >&2
      exit 1
    }
  fi
  # shellcheck disable=SC2086
  cmake --build "$build" ${EVS_FUZZ_BUILD_JOBS:+-j "$EVS_FUZZ_BUILD_JOBS"} \
    --target $bins >"$probe/log" 2>&1 || {
    cat "$probe/log" >&2
    echo "fuzz.sh: building the fuzzers failed" >&2
    exit 1
  }
}
if [ "$build_step" = 1 ]; then
  build_fuzzers
fi
if [ "$run_step" = 0 ]; then
  echo "fuzz.sh: built:$bins"
  exit 0
fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}"
export MSAN_OPTIONS="${MSAN_OPTIONS:-halt_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

failed=""
for t in $targets; do
  bin=$(find "$build" -type f -name "${t}_fuzzer" -perm -u+x | head -n 1)
  if [ -z "$bin" ]; then
    echo "fuzz.sh: ${t}_fuzzer was not built in $build" >&2
    failed="$failed $t"
    continue
  fi
  seeds=$root/tests/fuzz/corpus/$t
  work=$build/corpus/$t
  arts=$build/artifacts/$t
  log=$build/logs/$t.log
  mkdir -p "$work" "$arts" "$build/logs"
  rm -f "$arts"/*
  dict=""
  if [ -f "$root/tests/fuzz/$t.dict" ]; then
    dict="-dict=$root/tests/fuzz/$t.dict"
  fi
  printf 'fuzz.sh: %-10s %ss ... ' "$t" "$seconds"
  rc=0
  # shellcheck disable=SC2086
  "$bin" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2560 \
    -print_final_stats=1 -artifact_prefix="$arts/" $dict \
    "$work" "$seeds" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  units=$(find "$work" -type f | wc -l)
  if [ "$rc" = 0 ]; then
    echo "ok: ${execs:-?} executions, $units inputs in $work"
  else
    echo "FAILED (exit $rc) after ${execs:-?} executions"
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error:)' "$log" | head -n 5
    for a in "$arts"/*; do
      [ -f "$a" ] || continue
      echo "  input: $a"
      echo "  reproduce: $bin $a"
      echo "  keep it as a regression input:" \
        "cp $a tests/fuzz/corpus/$t/crash-$(sha1sum <"$a" | cut -c1-40)"
    done
    echo "  log: $log"
    failed="$failed $t"
  fi
done

if [ -n "$failed" ]; then
  echo "fuzz.sh: findings in:$failed"
  exit 1
fi
echo "fuzz.sh: no findings"
