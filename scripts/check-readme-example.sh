#!/bin/sh
# Extracts the first ```c block of README.md, compiles it as C11 with
# evstore's warnings as errors, links it with the built libevstore and runs
# it on a fresh store, so that the README's example cannot rot.
# Usage: check-readme-example.sh <README.md> <C compiler> <include dir>
#                                <path to libevstore.so> [<extra flags>]
set -eu

readme=$1
cc=$2
incdir=$3
lib=$4
flags=${5:-}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/evs-readme.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

awk '
  /^```c[[:space:]]*$/ && !done { inblock = 1; next }
  /^```/ && inblock { inblock = 0; done = 1; next }
  inblock { print }
' "$readme" >"$tmp/example.c"
if [ ! -s "$tmp/example.c" ]; then
  echo "check-readme-example.sh: no \`\`\`c block in $readme" >&2
  exit 1
fi

libdir=$(cd "$(dirname "$lib")" && pwd)
# shellcheck disable=SC2086
"$cc" -std=c11 -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes \
  -Werror $flags -I"$incdir" -o "$tmp/example" "$tmp/example.c" \
  "$lib" -Wl,-rpath,"$libdir"
"$tmp/example" "$tmp/store"
echo "check-readme-example.sh: ok"
