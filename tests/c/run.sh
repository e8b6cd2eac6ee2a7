#!/usr/bin/env bash
# Builds and runs the C tests of openfl-transport with CMake/ctest, twice: a
# normal build and one with AddressSanitizer + UndefinedBehaviorSanitizer.
#
#   cargo build --release && tests/c/run.sh
#
# Environment: OFL_C_BUILD_DIR (default <repo>/target/c-tests), OFL_LIB_DIR
# (default <repo>/target/release), OFL_C_SANITIZE=0 to skip the sanitized
# build, CTEST_ARGS (extra ctest arguments, e.g. "-R federation").
# Exits non-zero when a build or a test fails.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build_root="${OFL_C_BUILD_DIR:-$repo/target/c-tests}"
lib_dir="${OFL_LIB_DIR:-$repo/target/release}"
jobs="${OFL_C_JOBS:-2}"

if [[ ! -f "$lib_dir/libopenfl_transport.so" ]]; then
  echo "run.sh: $lib_dir/libopenfl_transport.so not found; run \`cargo build --release\` first" >&2
  exit 2
fi
for tool in cmake ctest openssl; do
  if ! command -v "$tool" >/dev/null; then
    echo "run.sh: $tool not found (apt-get install -y cmake openssl)" >&2
    exit 2
  fi
done

declare -a summary=()
status=0

# run_suite NAME SANITIZE
run_suite() {
  local name="$1" sanitize="$2" dir="$build_root/$1" rc=0
  echo "=== $name: configure + build ($dir)"
  if ! cmake -S "$here" -B "$dir" -DOFL_SANITIZE="$sanitize" \
       -DOFL_LIB_DIR="$lib_dir" -DOFL_INCLUDE_DIR="$repo/include"; then
    summary+=("$name: configure FAILED")
    status=1
    return
  fi
  if ! cmake --build "$dir" -j "$jobs"; then
    summary+=("$name: build FAILED")
    status=1
    return
  fi
  echo "=== $name: ctest"
  # Tests run one at a time: they move tens of MiB and the machine is shared.
  (cd "$dir" && ctest --output-on-failure ${CTEST_ARGS:-}) || rc=$?
  if [[ $rc -ne 0 ]]; then
    summary+=("$name: ctest FAILED (exit $rc)")
    status=1
  else
    summary+=("$name: all tests passed")
  fi
}

mkdir -p "$build_root"
run_suite normal OFF
if [[ "${OFL_C_SANITIZE:-1}" != 0 ]]; then
  run_suite asan-ubsan ON
fi

echo "=== summary"
printf '  %s\n' "${summary[@]}"
exit $status
