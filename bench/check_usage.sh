#!/bin/sh
# Bad invocations of evstore-bench fail at once with exit status 2 (a usage
# error), before any scenario runs, and leave nothing behind.
# usage: check_usage.sh EVSTORE-BENCH SCRATCH-DIR
bench=$1
dir=$2
mkdir -p "$dir" || exit 1
fail=0
expect2() {
  "$bench" "$@" >/dev/null 2>&1
  rc=$?
  if [ "$rc" != 2 ]; then
    echo "FAIL: evstore-bench $* exited $rc, expected 2"
    fail=1
  fi
}
expect2 --reps 0
expect2 --reps 3x
expect2 --reps 1000
expect2 --secs 0
expect2 --secs inf
expect2 --secs 61
expect2 --secs 1x
expect2 --only bogus
expect2 --bogus-option
expect2 --reps
expect2 --json "$dir/no/such/dir/out.json" --only storage --quick
: >"$dir/file-not-dir"
expect2 --out "$dir/file-not-dir" --only storage
expect2 --peers-log "$dir/no-such-log" --only storage --quick
expect2 --evstored "$dir/no-such-evstored" --only server --quick
expect2 --dir "$dir/no/such/dir" --only storage --quick
if ls "$dir"/evstore-bench.* >/dev/null 2>&1; then
  echo "FAIL: a scratch directory was left in $dir"
  fail=1
fi
exit $fail
