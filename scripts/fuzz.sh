#!/usr/bin/env bash
# Fuzzes the parsers that read hostile input with cargo-fuzz (libFuzzer), for a bounded time per target:
#   scripts/fuzz.sh [SECONDS per target, default 20] [TARGET...]
# Targets: stripe_signature, webhook_event, usage_batch (fuzz/fuzz_targets/, bodies in src/fuzzing.rs).
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and nightly compiler flags: the stable compiler with
# RUSTC_BOOTSTRAP=1 by default, or FUZZ_TOOLCHAIN=nightly to use a nightly toolchain instead.
# The corpus grows in fuzz/corpus/ (not committed; fuzz/seeds/ starts it). A crash fails the script and
# its input is kept in fuzz/artifacts/TARGET/ (reproduce: cargo fuzz run TARGET that-file).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-20}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(stripe_signature webhook_event usage_batch)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
  exit 1
fi
toolchain=()
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
  toolchain=("+$FUZZ_TOOLCHAIN")
else
  export RUSTC_BOOTSTRAP=1
fi

log() { printf '== %s\n' "$*"; }

log "building the fuzz targets"
cargo "${toolchain[@]}" fuzz build -O
summary=()
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  log "fuzzing $target for ${seconds}s"
  out=$(mktemp)
  if ! cargo "${toolchain[@]}" fuzz run -O "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 >"$out" 2>&1; then
    tail -60 "$out" >&2
    echo "fuzzing $target found a crash; the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out" | tail -1)
  corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
  rm -f "$out"
  summary+=("$target: ${runs:-?} inputs in ${seconds}s (${rate:-?}/s), no crash; corpus $corpus")
done
log "fuzzing passed"
printf '   %s\n' "${summary[@]}"
