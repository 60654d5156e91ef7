#!/usr/bin/env bash
# Runs one libFuzzer target for a while: scripts/fuzz.sh NAME SECONDS [extra libFuzzer flags]
# Starts from the committed corpus fuzz/corpus/NAME (read-only), keeps new
# inputs and any crash artifacts in fuzz/findings/NAME (ignored by git).
set -euo pipefail
name=${1:?usage: scripts/fuzz.sh NAME SECONDS}
secs=${2:-60}
shift 2 || true
cd "$(dirname "$0")/.."
make -s fuzz >/dev/null
out=fuzz/findings/$name
mkdir -p "$out/corpus"
exec build-fuzz/fuzz_"$name" "$out/corpus" "fuzz/corpus/$name" \
  -max_total_time="$secs" -artifact_prefix="$out/" -print_final_stats=1 "$@"
