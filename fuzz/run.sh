#!/usr/bin/env bash
# Runs every cargo-fuzz target in turn for SECONDS each (default 60), or until
# FUZZ_RUNS executions when that is set (whichever comes first), and prints the
# executions per target. Needs the nightly toolchain and `cargo install cargo-fuzz`.
#
#   fuzz/run.sh [SECONDS]            all targets
#   FUZZ_TARGETS="patch frames" fuzz/run.sh 30
#
# Seeds come from fuzz/seeds/<target>/ and fuzz/regressions/<target>/ (both
# committed); what libFuzzer learns goes to fuzz/corpus/<target>/ (ignored by
# git), crashes to fuzz/artifacts/<target>/. A finding gets fixed in strait and
# its input copied to fuzz/regressions/<target>/, where the stable test
# `protocol-tests/fuzz_regressions.rs` replays it.
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
runs=${FUZZ_RUNS:-}
targets=${FUZZ_TARGETS:-"response frames batches patch reencode upconvert config"}
cargo +nightly fuzz build || exit 1
summary=()
failed=0
for t in $targets; do
  mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t" "fuzz/regressions/$t" "fuzz/artifacts/$t"
  log="fuzz/artifacts/$t/last-run.log"
  started=$SECONDS
  cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" "fuzz/regressions/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 ${runs:+-runs=$runs} -print_final_stats=1 \
    >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  line="$t: ${execs:-?} executions in $((SECONDS - started)) s"
  if ((rc != 0)); then
    failed=1
    line="$line, FAILED (exit $rc; see $log and fuzz/artifacts/$t/)"
  fi
  echo "$line"
  summary+=("$line")
done
echo "--- summary"
printf '%s\n' "${summary[@]}"
exit $failed
