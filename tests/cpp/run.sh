#!/usr/bin/env bash
# Builds and runs the C++ tests (tests/cpp) with CMake/ctest: the C++ API
# test (also under ASan/UBSan), the C++ examples, and the install consumers.
#
#   make lib && tests/cpp/run.sh
#
# Environment: OFL_CPP_BUILD_DIR (default <repo>/target/cpp-tests),
# OFL_LIB_DIR (default <repo>/target/release), CTEST_ARGS.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="${OFL_CPP_BUILD_DIR:-$repo/target/cpp-tests}"
lib_dir="${OFL_LIB_DIR:-$repo/target/release}"
if [[ ! -f "$lib_dir/libopenfl_transport.so" ]]; then
  echo "run.sh: $lib_dir/libopenfl_transport.so not found; run \`make lib\` first" >&2
  exit 2
fi
for tool in cmake ctest c++ openssl pkg-config readelf; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool not found (tests/deps.sh installs it)" >&2; exit 2; }
done
cmake -S "$here" -B "$build" -DOFL_LIB_DIR="$lib_dir" -DOFL_INCLUDE_DIR="$repo/include" || exit 1
cmake --build "$build" -j "${OFL_CPP_JOBS:-2}" || exit 1
cd "$build" && ctest --output-on-failure ${CTEST_ARGS:-}
