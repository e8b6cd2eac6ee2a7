# openfl-transport: one entry point for building, testing and the demo.
#
#   make            release build: target/release/libopenfl_transport.{so,a}
#   make test       every test: Rust, C (ctest, also under ASan/UBSan), OpenFL 1.6 interop
#   make bench      throughput table (ours vs ours; see tests/interop for ours vs OpenFL)
#   make demo       C demo: built-in FedAvg + 3 collaborators over mTLS (examples/c)
#
# `make test` installs what a fresh Debian machine lacks (cmake, a Python
# venv with openfl==1.6) and builds the library once in release mode.

CARGO ?= cargo
PYTHON_VENV ?= target/interop-venv

.PHONY: all build test test-rust test-c test-interop deps bench header

all: build

build:
	$(CARGO) build --release --lib --examples
	@# The SONAME is libopenfl_transport.so.<major>; let consumers of the build tree load it.
	ln -sf libopenfl_transport.so target/release/libopenfl_transport.so.0

deps:
	./tests/deps.sh

test: deps build test-rust test-c test-demo test-interop
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

# The C demo federation (examples/c): builds the library and the demo with
# CMake, generates fresh certificates (CA, server, col1..col3) and runs it.
DEMO_BUILD ?= build/examples-c

.PHONY: demo test-demo
demo: deps build
	cmake -S examples/c -B $(DEMO_BUILD) -DOFL_LIB_DIR=$(CURDIR)/target/release -DOFL_INCLUDE_DIR=$(CURDIR)/include
	cmake --build $(DEMO_BUILD)
	./tests/certs/make_certs.sh $(DEMO_BUILD)/certs
	$(DEMO_BUILD)/demo_federation $(DEMO_BUILD)/certs

# The demo is also a test: it fails unless the federated model beats every
# collaborator's local-only model on the union of the data.
test-demo: demo
