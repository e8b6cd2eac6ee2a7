# openfl-transport: one entry point for building, testing and the demo.
#
#   make            release build: target/release/libopenfl_transport.{so,a}
#   make test       every test: Rust, bench smoke run, C (ctest, also under ASan/UBSan), OpenFL 1.6 interop
#   make bench      ours vs bare tonic (GetTasks) and raw rustls (transfers), separate processes (examples/bench)
#   make bench-smoke  the same in ~10 s (--quick: tiny sizes, short windows; proves the harness works)
#   make demo       C demo: built-in FedAvg + 3 collaborators over mTLS (examples/c)
#   make test-go    Go binding (bindings/go): go vet, go test -race, Go examples
#   make test-cpp   C++ header, C++ examples, `make install` consumers (ctest, tests/cpp)
#   make fuzz       cargo-fuzz targets (tests/fuzz), FUZZ_SECONDS each (default 600)
#   make install    PREFIX=/usr/local: .so (+SONAME links), .a, headers, pkg-config, CMake package
#
# `make test` installs what a fresh Debian machine lacks (cmake, a Python
# venv with openfl==1.6) and builds the library once in release mode.

CARGO ?= cargo
PYTHON_VENV ?= target/interop-venv

.PHONY: all build test test-rust test-c test-interop deps bench bench-smoke header

all: build

# --examples: bench (make bench) and the interop suite's Rust peers
# (tests/interop/peers, [[example]] targets in Cargo.toml).
build:
	$(CARGO) build --release --lib --examples
	@# The SONAME is libopenfl_transport.so.$(OFL_SOVERSION); let consumers of the build tree load it.
	ln -sf libopenfl_transport.so target/release/libopenfl_transport.so.$(OFL_SOVERSION)

deps:
	./tests/deps.sh

test: deps build test-rust bench-smoke test-c test-demo test-interop test-go test-cpp test-fuzz
	@echo "make test: all suites passed"

test-rust:
	$(CARGO) test --release

test-c:
	./tests/c/run.sh

test-interop:
	./tests/interop/setup_venv.sh $(PYTHON_VENV)
	$(PYTHON_VENV)/bin/python -m pytest tests/interop -v -rA

bench: build
	./target/release/examples/bench

bench-smoke: build
	./target/release/examples/bench --quick

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

# ---- Go, C++ and packaging ---------------------------------------------------

# The library alone (no examples), with the SONAME link the build tree's
# consumers (the Go binding's rpath, tests/cpp) load.
OFL_VERSION := $(shell sed -n 's/^version = "\([^"]*\)"/\1/p' Cargo.toml | head -n1)
OFL_MAJOR := $(word 1,$(subst ., ,$(OFL_VERSION)))
OFL_MINOR := $(word 2,$(subst ., ,$(OFL_VERSION)))
# The ABI version in the SONAME (build.rs): the major, or major.minor for 0.x.
OFL_SOVERSION := $(if $(filter 0,$(OFL_MAJOR)),$(OFL_MAJOR).$(OFL_MINOR),$(OFL_MAJOR))
OFL_SO := target/release/libopenfl_transport.so

.PHONY: lib test-go test-cpp install uninstall
lib:
	$(CARGO) build --release --lib
	ln -sf libopenfl_transport.so target/release/libopenfl_transport.so.$(OFL_SOVERSION)

# Go 1.19 (Debian golang-go). Caches stay under target/ (also when HOME is
# unset, as in CI); the module has no dependencies, so nothing is fetched.
GO ?= go
GO_TARGET := $(CURDIR)/target/go
export GOCACHE ?= $(GO_TARGET)/cache
export GOPATH ?= $(GO_TARGET)/path
export GOFLAGS ?= -mod=mod
export GOPROXY ?= off

test-go: lib
	cd bindings/go && $(GO) vet ./... && $(GO) test -race -count=1 -timeout 600s ./...
	cd examples/go && $(GO) vet ./... && $(GO) build -o $(GO_TARGET)/examples/ ./...
	./tests/certs/make_certs.sh $(GO_TARGET)/certs
	./tests/cpp/run_example_federation.sh $(GO_TARGET)/examples/aggregator $(GO_TARGET)/examples/collaborator $(GO_TARGET)/certs 3
	@echo "make test-go: passed"

test-cpp: lib
	./tests/cpp/run.sh

# make install [PREFIX=/usr/local] [LIBDIR=...] [INCLUDEDIR=...] [DESTDIR=...]
# Installs libopenfl_transport.so.$(OFL_VERSION) with the SONAME link .so.$(OFL_SOVERSION)
# and the development link .so, the static .a, both headers, a pkg-config
# file (openfl_transport.pc) and a CMake package (find_package(openfl_transport)).
# Builds the library first only when target/release has none (run `make` to refresh).
PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
CMAKEDIR ?= $(LIBDIR)/cmake/openfl_transport
OFL_ABS_PREFIX = $(abspath $(PREFIX))
OFL_ABS_LIBDIR = $(abspath $(LIBDIR))
OFL_ABS_INCLUDEDIR = $(abspath $(INCLUDEDIR))
OFL_ABS_CMAKEDIR = $(abspath $(CMAKEDIR))

$(OFL_SO):
	$(CARGO) build --release --lib

install: $(OFL_SO)
	install -d $(DESTDIR)$(OFL_ABS_LIBDIR) $(DESTDIR)$(OFL_ABS_INCLUDEDIR) $(DESTDIR)$(abspath $(PKGCONFIGDIR)) $(DESTDIR)$(OFL_ABS_CMAKEDIR)
	install -m 0755 $(OFL_SO) $(DESTDIR)$(OFL_ABS_LIBDIR)/libopenfl_transport.so.$(OFL_VERSION)
	ln -sfn libopenfl_transport.so.$(OFL_VERSION) $(DESTDIR)$(OFL_ABS_LIBDIR)/libopenfl_transport.so.$(OFL_SOVERSION)
	ln -sfn libopenfl_transport.so.$(OFL_SOVERSION) $(DESTDIR)$(OFL_ABS_LIBDIR)/libopenfl_transport.so
	install -m 0644 target/release/libopenfl_transport.a $(DESTDIR)$(OFL_ABS_LIBDIR)/libopenfl_transport.a
	install -m 0644 include/openfl_transport.h include/openfl_transport.hpp $(DESTDIR)$(OFL_ABS_INCLUDEDIR)/
	sed -e 's|@PREFIX@|$(OFL_ABS_PREFIX)|' -e 's|@LIBDIR@|$(OFL_ABS_LIBDIR)|' \
	    -e 's|@INCLUDEDIR@|$(OFL_ABS_INCLUDEDIR)|' -e 's|@VERSION@|$(OFL_VERSION)|' \
	    cmake/openfl_transport.pc.in > $(DESTDIR)$(abspath $(PKGCONFIGDIR))/openfl_transport.pc
	sed -e "s|@CMAKEDIR_TO_PREFIX@|$$(realpath -m --relative-to=$(OFL_ABS_CMAKEDIR) $(OFL_ABS_PREFIX))|" \
	    -e "s|@PREFIX_TO_LIBDIR@|$$(realpath -m --relative-to=$(OFL_ABS_PREFIX) $(OFL_ABS_LIBDIR))|" \
	    -e "s|@PREFIX_TO_INCLUDEDIR@|$$(realpath -m --relative-to=$(OFL_ABS_PREFIX) $(OFL_ABS_INCLUDEDIR))|" \
	    -e 's|@VERSION@|$(OFL_VERSION)|g' -e 's|@SOVERSION@|$(OFL_SOVERSION)|g' \
	    cmake/openfl_transport-config.cmake.in > $(DESTDIR)$(OFL_ABS_CMAKEDIR)/openfl_transport-config.cmake
	sed -e 's|@VERSION@|$(OFL_VERSION)|g' -e 's|@MAJOR@|$(OFL_MAJOR)|g' -e 's|@MINOR@|$(OFL_MINOR)|g' \
	    cmake/openfl_transport-config-version.cmake.in > $(DESTDIR)$(OFL_ABS_CMAKEDIR)/openfl_transport-config-version.cmake
	@echo "installed openfl_transport $(OFL_VERSION) into $(DESTDIR)$(OFL_ABS_PREFIX)"

uninstall:
	rm -f $(addprefix $(DESTDIR)$(OFL_ABS_LIBDIR)/,libopenfl_transport.so.$(OFL_VERSION) libopenfl_transport.so.$(OFL_SOVERSION) libopenfl_transport.so libopenfl_transport.a)
	rm -f $(addprefix $(DESTDIR)$(OFL_ABS_INCLUDEDIR)/,openfl_transport.h openfl_transport.hpp)
	rm -f $(DESTDIR)$(abspath $(PKGCONFIGDIR))/openfl_transport.pc
	rm -rf $(DESTDIR)$(OFL_ABS_CMAKEDIR)

# ---- Fuzzing (tests/fuzz) ----------------------------------------------------

# cargo-fuzz on nightly, built into target/fuzz; tests/fuzz/run.sh installs
# cargo-fuzz when missing. `make fuzz` runs every target FUZZ_SECONDS (600 by
# default); `make test` runs a smoke of FUZZ_SMOKE_SECONDS each.
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 15

.PHONY: fuzz test-fuzz
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) ./tests/fuzz/run.sh

test-fuzz:
	FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS) FUZZ_PROFILE=dev ./tests/fuzz/run.sh
