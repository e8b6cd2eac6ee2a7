# openfl-transport: one entry point for building, testing and the demo.
#
#   make            release build: target/release/libopenfl_transport.{so,a}
#   make test       every test: Rust, C (ctest, also under ASan/UBSan), OpenFL 1.6 interop
#   make bench      throughput table (ours vs ours; see tests/interop for ours vs OpenFL)
#
# `make test` installs what a fresh Debian machine lacks (cmake, a Python
# venv with openfl==1.6) and builds the library once in release mode.

CARGO ?= cargo
PYTHON_VENV ?= target/interop-venv

.PHONY: all build test test-rust test-c test-interop deps bench header

all: build

build:
	$(CARGO) build --release --examples

deps:
	./tests/deps.sh

test: deps build test-rust test-c test-interop
	@echo "make test: all suites passed"

test-rust:
	$(CARGO) test --release

test-c:
	./tests/c/run.sh

test-interop:
	./tests/interop/setup_venv.sh $(PYTHON_VENV)
	$(PYTHON_VENV)/bin/python -m pytest tests/interop -v -rA

bench: build
	./target/release/examples/bench_transfer

# Refresh the committed header after changing src/ffi.
header:
	OFL_UPDATE_HEADER=1 $(CARGO) build --release
