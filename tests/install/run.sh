#!/bin/sh
# Installs the build into a temporary prefix and builds a small consumer
# against it twice: with CMake's find_package(evstore), linking both
# evstore::evstore and evstore::evstore_static, and with pkg-config.
# Usage: run.sh <build dir> <cmake> <C compiler> [<sanitizer flags>]
set -eu

build=$1
cmake=$2
cc=$3
flags=${4:-}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/evs-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
prefix=$tmp/prefix

echo "== cmake --install into a temporary prefix"
"$cmake" --install "$build" --prefix "$prefix" >"$tmp/install.log" || {
  cat "$tmp/install.log"
  exit 1
}

echo "== find_package(evstore)"
"$cmake" -S "$here/consumer" -B "$tmp/consumer" \
  -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_C_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="$flags" >"$tmp/configure.log" || {
  cat "$tmp/configure.log"
  exit 1
}
"$cmake" --build "$tmp/consumer" >"$tmp/build.log" || {
  cat "$tmp/build.log"
  exit 1
}
"$tmp/consumer/consumer" "$tmp/store-shared"
"$tmp/consumer/consumer_static" "$tmp/store-static"

echo "== pkg-config evstore"
pc=$(find "$prefix" -name evstore.pc | head -n 1)
if [ -z "$pc" ]; then
  echo "run.sh: evstore.pc was not installed" >&2
  exit 1
fi
PKG_CONFIG_PATH=$(dirname "$pc")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export PKG_CONFIG_PATH
pkg-config --exists --print-errors evstore
libdir=$(pkg-config --variable=libdir evstore)
# shellcheck disable=SC2046,SC2086
"$cc" -std=c11 -Wall -Wextra -Werror $flags -o "$tmp/consumer_pc" \
  "$here/consumer/main.c" $(pkg-config --cflags --libs evstore) \
  -Wl,-rpath,"$libdir"
"$tmp/consumer_pc" "$tmp/store-pc"

echo "run.sh: ok"
