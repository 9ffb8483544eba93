#!/bin/sh
# Compiles every public header on its own, as C11 and (when a C++ compiler
# is installed) as C++, with evstore's warnings as errors: each header must
# include what it uses and stay usable from C++.
# Usage: check.sh <include dir> <C compiler>
set -eu

incdir=$1
cc=$2
cxx=${CXX:-c++}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/evs-headers.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

warn="-Wall -Wextra -Wpedantic -Wshadow -Werror"
have_cxx=0
if command -v "$cxx" >/dev/null 2>&1; then
  have_cxx=1
else
  echo "check.sh: no C++ compiler ($cxx), checking C only"
fi

n=0
# $warn is split into words on purpose.
# shellcheck disable=SC2086
for h in "$incdir"/evstore/*.h; do
  name=evstore/$(basename "$h")
  printf '#include <%s>\n#include <%s>\n' "$name" "$name" >"$tmp/t.c"
  "$cc" -std=c11 $warn -Wstrict-prototypes -I"$incdir" -c "$tmp/t.c" \
    -o "$tmp/t.o"
  if [ "$have_cxx" = 1 ]; then
    cp "$tmp/t.c" "$tmp/t.cpp"
    "$cxx" -std=c++11 $warn -I"$incdir" -c "$tmp/t.cpp" -o "$tmp/t.o"
  fi
  n=$((n + 1))
done
echo "check.sh: $n headers compile standalone"
