#!/bin/sh
# Runs the hello example twice on a fresh store: the first run must write
# and read back versions 0 and 1, the second (reopening the same store)
# versions 2 and 3 after them.
# Usage: hello.sh <path to evstore-hello>
set -eu

hello=$1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/evs-hello.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

"$hello" "$tmp/store" >"$tmp/run1"
cat "$tmp/run1"
"$hello" "$tmp/store" >"$tmp/run2"
cat "$tmp/run2"

expect() {
  if ! grep -q -- "$2" "$1"; then
    echo "hello.sh: expected a line matching '$2' in $(basename "$1")" >&2
    exit 1
  fi
}
expect "$tmp/run1" '^version 0 position 1 type OrderPlaced data {"sku":"A-1","qty":2}$'
expect "$tmp/run1" '^version 1 position 2 type OrderPaid data '
expect "$tmp/run2" '^appended versions 2\.\.3 at positions 3\.\.4$'
expect "$tmp/run2" '^version 3 position 4 type OrderPaid data '
if [ "$(grep -c '^version ' "$tmp/run2")" -ne 4 ]; then
  echo "hello.sh: the second run should read back 4 events" >&2
  exit 1
fi
echo "hello.sh: ok"
