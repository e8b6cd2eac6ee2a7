#!/usr/bin/env bash
# The install test: `make install` into a temporary prefix, then consumers
# built against that prefix only, and run:
#   1. the installed layout (versioned .so, SONAME and development links,
#      .a, both headers, pkg-config file, CMake package);
#   2. a CMake project using find_package(openfl_transport) with the shared
#      (C++) and the static (C) target; the binaries record the SONAME;
#   3. the same package found from a copy of the prefix (relocatable);
#   4. a C program built with `pkg-config --cflags --libs openfl_transport`;
#   5. examples/cpp built against the installed package and run as a
#      federation (aggregator + 2 collaborators, mTLS);
#   6. when Go is present, the Go binding built with -tags openfl_pkgconfig
#      against the installed package, and examples/go's aggregator with the
#      installed C++ collaborators (a mixed-language federation).
#
#   install_consumer.sh REPO_DIR WORK_DIR CERT_DIR
set -euo pipefail
repo="$1" work="$2" certs="$3"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
step() { echo "== install_consumer: $*"; }
die() { echo "install_consumer: FAILED: $*" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work"
prefix="$work/prefix"
version="$(sed -n 's/^version = "\([^"]*\)"/\1/p' "$repo/Cargo.toml" | head -n1)"
major="${version%%.*}"
# The ABI version of the SONAME (build.rs): the major, or major.minor for 0.x.
if [[ "$major" == 0 ]]; then minor="${version#*.}"; soversion="0.${minor%%.*}"; else soversion="$major"; fi

step "make install PREFIX=$prefix"
make -C "$repo" --no-print-directory install PREFIX="$prefix" DESTDIR= LIBDIR="$prefix/lib" INCLUDEDIR="$prefix/include" PKGCONFIGDIR="$prefix/lib/pkgconfig" CMAKEDIR="$prefix/lib/cmake/openfl_transport"

step "installed layout"
lib="$prefix/lib"
[[ -f "$lib/libopenfl_transport.so.$version" && ! -L "$lib/libopenfl_transport.so.$version" ]] || die "no libopenfl_transport.so.$version"
[[ "$(readlink "$lib/libopenfl_transport.so.$soversion")" == "libopenfl_transport.so.$version" ]] || die "SONAME link"
[[ "$(readlink "$lib/libopenfl_transport.so")" == "libopenfl_transport.so.$soversion" ]] || die "development link"
[[ -f "$lib/libopenfl_transport.a" ]] || die "no static library"
for f in include/openfl_transport.h include/openfl_transport.hpp lib/pkgconfig/openfl_transport.pc \
         lib/cmake/openfl_transport/openfl_transport-config.cmake \
         lib/cmake/openfl_transport/openfl_transport-config-version.cmake; do
  [[ -f "$prefix/$f" ]] || die "missing $f"
done
readelf -d "$lib/libopenfl_transport.so.$version" | grep -q "Library soname: \[libopenfl_transport.so.$soversion\]" \
  || die "SONAME is not libopenfl_transport.so.$soversion"

step "CMake consumer (find_package, shared C++ and static C targets)"
cmake -S "$here/consumer" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/consumer" -j 2
readelf -d "$work/consumer/consumer_cpp" | grep -q "Shared library: \[libopenfl_transport.so.$soversion\]" \
  || die "consumer_cpp does not record the SONAME"
if readelf -d "$work/consumer/consumer_c_static" | grep -q "libopenfl_transport"; then
  die "consumer_c_static links the shared library"
fi
"$work/consumer/consumer_cpp"
"$work/consumer/consumer_c_static"

step "a version that is not there is refused"
mkdir -p "$work/too-new"
cat > "$work/too-new/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(too_new LANGUAGES C)
find_package(openfl_transport 99 QUIET)
if(openfl_transport_FOUND)
  message(FATAL_ERROR "version 99 accepted")
endif()
CMAKE
cmake -S "$work/too-new" -B "$work/too-new/build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null

step "relocated prefix"
cp -a "$prefix" "$work/moved"
cmake -S "$here/consumer" -B "$work/consumer-moved" -DCMAKE_PREFIX_PATH="$work/moved" >/dev/null
grep -q "$work/moved/lib/libopenfl_transport" "$work/consumer-moved/CMakeFiles/consumer_cpp.dir/link.txt" \
  || die "the package does not follow its prefix"

step "pkg-config consumer"
export PKG_CONFIG_PATH="$lib/pkgconfig"
[[ "$(pkg-config --modversion openfl_transport)" == "$version" ]] || die "pkg-config version"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror $(pkg-config --cflags openfl_transport) "$here/consumer/consumer.c" \
   $(pkg-config --libs openfl_transport) -o "$work/consumer_c_pkgconfig"
LD_LIBRARY_PATH="$lib" "$work/consumer_c_pkgconfig"

step "examples/cpp against the installed package"
cmake -S "$repo/examples/cpp" -B "$work/examples-cpp" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/examples-cpp" -j 2
"$here/run_example_federation.sh" "$work/examples-cpp/aggregator" "$work/examples-cpp/collaborator" "$certs" 2

if command -v go >/dev/null; then
  step "Go binding and examples/go with -tags openfl_pkgconfig"
  export GOFLAGS="${GOFLAGS:--mod=mod}" GOPROXY="${GOPROXY:-off}"
  (cd "$repo/bindings/go" && go vet -tags openfl_pkgconfig ./...)
  (cd "$repo/examples/go" && go build -tags openfl_pkgconfig -o "$work/examples-go/" ./...)
  if readelf -d "$work/examples-go/aggregator" | grep -q "RUNPATH\|RPATH"; then
    die "the pkg-config build carries the build tree's rpath"
  fi
  LD_LIBRARY_PATH="$lib" "$here/run_example_federation.sh" \
    "$work/examples-go/aggregator" "$work/examples-cpp/collaborator" "$certs" 2
else
  step "go not found: Go checks skipped"
fi
echo "install_consumer: all checks passed"
