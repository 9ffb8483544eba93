#!/bin/sh
# Installs the Debian packages evstore needs to build, test and benchmark,
# if any is missing. Quiet and quick when everything is present; otherwise
# runs apt-get update and apt-get install (through sudo when not root).
# libjansson-dev is not for the library (which does not use jansson) but
# for evstore-cli, the orders example, and the tests and fuzzers that
# compare against jansson.
set -eu

packages="
  build-essential
  cmake
  ninja-build
  pkg-config
  liblmdb-dev
  lmdb-utils
  libmsgpack-dev
  libzstd-dev
  libxxhash-dev
  libuv1-dev
  libjansson-dev
  libmicrohttpd-dev
  uuid-dev
  libcriterion-dev
  clang
  libclang-rt-14-dev
  gnuplot-nox
"

missing=""
for p in $packages; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  if [ "$status" != "installed" ]; then
    missing="$missing $p"
  fi
done

if [ -z "$missing" ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "deps.sh: missing packages:$missing" >&2
  echo "deps.sh: no apt-get here; install their equivalents by hand" >&2
  exit 1
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "deps.sh: missing packages:$missing" >&2
    echo "deps.sh: run as root, or install sudo, to install them" >&2
    exit 1
  fi
  sudo="sudo"
fi

echo "deps.sh: installing:$missing"
log=$(mktemp "${TMPDIR:-/tmp}/evs-deps.XXXXXX")
trap 'rm -f "$log"' EXIT INT TERM
# apt's progress output goes to a log, shown only when something fails.
# shellcheck disable=SC2086
if ! { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    --no-install-recommends $missing; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "deps.sh: apt-get failed" >&2
  exit 1
fi
echo "deps.sh: done"
