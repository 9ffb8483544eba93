#!/bin/sh
# Runs the orders example on a fresh store and checks what its queries
# print. Usage: run.sh <path to evstore-orders>
set -eu

orders=$1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/evs-orders.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

"$orders" "$tmp/store" >"$tmp/out"
cat "$tmp/out"

cat >"$tmp/want" <<'WANT'
orders of alice:
  1 1500
  3 999
  4 10000
revenue from 2024-05-01 to 2024-05-02:
  2024-05-01 5500
  2024-05-02 10999
WANT
head -n 7 "$tmp/out" >"$tmp/got"
if ! cmp -s "$tmp/want" "$tmp/got"; then
  echo "run.sh: unexpected query results; wanted:" >&2
  cat "$tmp/want" >&2
  exit 1
fi
grep -q '^projection orders: checkpoint [0-9]*, 0 behind$' "$tmp/out" || {
  echo "run.sh: the projection should be at the head" >&2
  exit 1
}
test -d "$tmp/store/views" || {
  echo "run.sh: views should live in the store's views/ directory" >&2
  exit 1
}
echo "run.sh: ok"
