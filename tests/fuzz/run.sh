#!/usr/bin/env bash
# Builds the cargo-fuzz targets (nightly, AddressSanitizer) and runs each for
# a set time on its committed corpus (tests/fuzz/corpus/<target>, seeded from
# real OpenFL 1.6 traffic). Installs cargo-fuzz when missing.
#
#   tests/fuzz/run.sh [TARGET...]        FUZZ_SECONDS per target (default 600)
#
# FUZZ_PROFILE=dev builds without optimizations or ASan into
# target/fuzz-smoke: a fraction of the build time, for the short smoke run of
# `make test`.
#
# New inputs go to target/fuzz/corpus/<target> (not committed); a failure
# leaves its input in target/fuzz/artifacts/<target>/ and stops the script.
# Reproduce one with: cargo +nightly fuzz run --fuzz-dir tests/fuzz \
#   --target-dir target/fuzz <target> <artifact file>
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo_root"
seconds="${FUZZ_SECONDS:-600}"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
cargo_fuzz_version="0.13.2"
all_targets=(stream_task_results tensor_codec header_checks director_archive_names ffi_arguments)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")

if ! rustup toolchain list | grep -q "^$toolchain"; then
  echo "installing the $toolchain toolchain"
  rustup toolchain install "$toolchain" --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz $cargo_fuzz_version"
  # --debug: a third of the build time; the tool's own speed does not matter.
  cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked --debug
fi

fuzz=(cargo "+$toolchain" fuzz)
if [ "${FUZZ_PROFILE:-release}" = dev ]; then
  # The smoke: no optimizations, no AddressSanitizer (the longest build
  # steps); coverage-guided all the same. `make fuzz` keeps ASan.
  out=target/fuzz-smoke
  dirs=(--dev --sanitizer none --fuzz-dir tests/fuzz --target-dir "$out")
else
  out=target/fuzz
  dirs=(--fuzz-dir tests/fuzz --target-dir "$out")
fi
"${fuzz[@]}" build "${dirs[@]}"

for t in "${targets[@]}"; do
  work="$out/corpus/$t"
  artifacts="$out/artifacts/$t/"
  mkdir -p "$work" "$artifacts"
  echo "== fuzzing $t for ${seconds}s"
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a leak or a
  # blow-up. The first corpus directory receives new inputs.
  "${fuzz[@]}" run "${dirs[@]}" "$t" "$work" "tests/fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts" -print_final_stats=1 2>&1 |
    grep -av '^#[0-9]*[[:space:]]*\(NEW\|REDUCE\|pulse\)\|# Uses: ' || {
      echo "fuzz target $t FAILED: input in $artifacts" >&2
      exit 1
    }
done
echo "fuzzing passed: ${targets[*]} (${seconds}s each)"
