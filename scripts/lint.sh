#!/bin/sh
# Static analysis of evstore's C sources: cppcheck and clang-tidy (with the
# clang static analyzer), both driven by a compile_commands.json.
#
#   scripts/lint.sh [--cppcheck-only | --tidy-only] [DIR...]
#
# DIRs default to src/, all of it: the library (store, projections), the
# protocol codec, the server and the client.
# The compile database comes from $EVS_LINT_BUILD_DIR (default build-lint/):
# a configure-only CMake tree (clang, Debug so that assert() informs the
# analyzer, CMAKE_EXPORT_COMPILE_COMMANDS=ON); nothing is compiled.
#
# clang-tidy reads its checks from .clang-tidy; cppcheck runs with warning,
# style, performance and portability checks and the reasoned suppressions
# in scripts/cppcheck.supp. A false positive in code is silenced where it
# happens: /* NOLINT(check): why */ or // cppcheck-suppress id.
#
# Prints each finding once and exits 1 when there is any, 0 when clean, 2
# on a usage error or a missing tool. Two to four minutes for everything on
# two cores (clang-tidy is the slow part), which is why it is `make lint`
# rather than a test in `make test`.
set -eu

cd "$(dirname "$0")/.."
root=$(pwd)

run_cppcheck=1
run_tidy=1
dirs=""
for arg in "$@"; do
  case "$arg" in
  --cppcheck-only) run_tidy=0 ;;
  --tidy-only) run_cppcheck=0 ;;
  -h | --help)
    sed -n '2,/^set -eu/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
    ;;
  -*)
    echo "lint.sh: unknown option '$arg'" >&2
    exit 2
    ;;
  *)
    d=${arg%/}
    if [ ! -d "$d" ]; then
      echo "lint.sh: no directory '$d'" >&2
      exit 2
    fi
    dirs="$dirs $d"
    ;;
  esac
done
[ -n "$dirs" ] || dirs="src"

find_tool() {
  for t in "$@"; do
    if command -v "$t" >/dev/null 2>&1; then
      echo "$t"
      return 0
    fi
  done
  return 1
}

cc=$(find_tool clang clang-14) || cc=""
tidy=""
if [ "$run_tidy" = 1 ]; then
  tidy=$(find_tool clang-tidy-14 clang-tidy) || {
    echo "lint.sh: clang-tidy not found (Debian: apt-get install clang-tidy)" >&2
    exit 2
  }
fi
if [ "$run_cppcheck" = 1 ]; then
  command -v cppcheck >/dev/null 2>&1 || {
    echo "lint.sh: cppcheck not found (Debian: apt-get install cppcheck)" >&2
    exit 2
  }
fi

build=${EVS_LINT_BUILD_DIR:-$root/build-lint}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/evs-lint.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

# Configure every time (a few seconds) so that new sources are listed.
generator=""
if command -v ninja >/dev/null 2>&1; then
  generator="-G Ninja"
fi
# shellcheck disable=SC2086
if ! ${cc:+env CC=$cc} cmake -S "$root" -B "$build" $generator \
  -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
  -DEVS_BUILD_EXAMPLES=OFF >"$tmp/cmake.log" 2>&1; then
  cat "$tmp/cmake.log" >&2
  echo "lint.sh: configuring $build failed" >&2
  exit 2
fi
db=$build/compile_commands.json

# The translation units under the chosen directories.
sed -n 's/^ *"file": "\(.*\)",\{0,1\}$/\1/p' "$db" | sort -u >"$tmp/all"
: >"$tmp/files"
for d in $dirs; do
  grep -F "$root/$d/" "$tmp/all" | grep '\.c$' >>"$tmp/files" || true
done
nfiles=$(wc -l <"$tmp/files")
if [ "$nfiles" -eq 0 ]; then
  echo "lint.sh: no sources under:$dirs" >&2
  exit 2
fi
jobs=$(nproc 2>/dev/null || echo 2)
: >"$tmp/findings"

if [ "$run_cppcheck" = 1 ]; then
  echo "lint.sh: cppcheck on $nfiles files ($(cppcheck --version))"
  filters=""
  for d in $dirs; do
    filters="$filters --file-filter=$d/*"
  done
  # cppcheck matches --file-filter against the names it derives from the
  # project path: give it a path relative to the source root.
  rel_db=$(realpath --relative-to="$root" "$db")
  # shellcheck disable=SC2086
  cppcheck --project="$rel_db" $filters -j "$jobs" -q \
    --enable=warning,style,performance,portability \
    --inline-suppr --suppress=missingIncludeSystem \
    --suppressions-list="$root/scripts/cppcheck.supp" \
    --template='{file}:{line}:{column}: {severity}: {message} [cppcheck-{id}]' \
    >"$tmp/cppcheck.log" 2>&1 || true
  grep -E '^[^ ]+:[0-9]+:[0-9]+: ' "$tmp/cppcheck.log" |
    sed "s|^$root/||" | sort -u >>"$tmp/findings" || true
  if grep -q '^cppcheck: error' "$tmp/cppcheck.log"; then
    cat "$tmp/cppcheck.log" >&2
    exit 2
  fi
fi

if [ "$run_tidy" = 1 ]; then
  echo "lint.sh: $tidy on $nfiles files ($jobs at a time)"
  mkdir -p "$tmp/tidy"
  # One log per file, so that parallel runs do not interleave.
  # shellcheck disable=SC2016
  xargs -P "$jobs" -n 1 sh -c \
    '"$0" -p "$1" --quiet "$3" >"$2/$(echo "$3" | tr / _).log" 2>&1 || true' \
    "$tidy" "$build" "$tmp/tidy" <"$tmp/files"
  cat "$tmp/tidy"/*.log 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g' |
    grep -E '^[^ ]+:[0-9]+:[0-9]+: (warning|error): ' |
    sed "s|^$root/||" | sort -u >>"$tmp/findings" || true
fi

n=$(wc -l <"$tmp/findings")
if [ "$n" -gt 0 ]; then
  cat "$tmp/findings"
  echo "lint.sh: $n findings"
  exit 1
fi
echo "lint.sh: clean ($nfiles files:$dirs)"
