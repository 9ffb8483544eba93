# A thin wrapper over CMake presets (CMakePresets.json) and ctest.
#
#   make build    install missing Debian packages, configure, build (build/)
#   make test     build, then run every test with ctest
#   make run      build, then start evstored on 127.0.0.1 (data: ./var/evstore)
#   make asan     build and test under ASan+UBSan (build-asan/)
#   make tsan     build and test under TSan (build-tsan/)
#   make install  install to $(PREFIX) (default /usr/local)
#   make clean    remove build directories

PREFIX ?= /usr/local

.PHONY: all deps build test run asan tsan install clean

all: build

deps:
	@sh scripts/deps.sh

build: deps
	cmake --preset default
	cmake --build --preset default

test: build
	ctest --preset default -j2

run: build
	mkdir -p var
	./build/src/server/evstored --data ./var/evstore

asan: deps
	cmake --preset asan
	cmake --build --preset asan
	ctest --preset asan -j2

tsan: deps
	cmake --preset tsan
	cmake --build --preset tsan
	ctest --preset tsan -j2

install: build
	cmake --install build --prefix "$(PREFIX)"
	@if [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then ldconfig; fi

# Every build tree this Makefile creates: the presets' (build/,
# build-debug/, build-asan/, build-tsan/), make fuzz's (build-fuzz/, and
# build-fuzz-msan/ of scripts/fuzz.sh --msan) and make lint's (build-lint/).
clean:
	rm -rf build build-debug build-asan build-tsan build-fuzz build-fuzz-msan \
	  build-lint

# Benchmarks (docs/performance.md): `make bench` runs every scenario and
# writes charts to bench-results/; `make bench-quick` is the under-a-minute
# smoke run. Pass options with BENCH_ARGS, e.g. BENCH_ARGS="--peers".
BENCH_ARGS ?=

.PHONY: bench bench-quick

bench: build
	./build/bench/evstore-bench $(BENCH_ARGS)

bench-quick: build
	./build/bench/evstore-bench --quick $(BENCH_ARGS)

# Fuzzing and static analysis (docs/reliability.md). `make fuzz` builds the
# libFuzzer targets with clang (build-fuzz/) and runs each one for
# EVS_FUZZ_SECONDS seconds (default 30); `make lint` runs cppcheck and
# clang-tidy over src/ (build-lint/).
EVS_FUZZ_SECONDS ?=

.PHONY: fuzz lint

fuzz: deps
	sh scripts/fuzz.sh $(EVS_FUZZ_SECONDS)

lint:
	sh scripts/lint.sh
