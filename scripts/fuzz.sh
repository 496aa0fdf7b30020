#!/usr/bin/env bash
# Fuzzing that keeps running: builds examples/fuzz in the dev profile (arithmetic overflow
# and debug assertions panic there) and runs it for SECONDS over every target: the
# decoders (raw and mutated bytes), the pure cores (queue, commit machine, relay core,
# client machine) and the atomic server and negotiated relay in process. Prints the cases
# and panics per target and exits non-zero if any case panicked. Failing cases are saved
# under target/fuzz/ with the command that replays each.
#   bash scripts/fuzz.sh [SECONDS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
seed=${2:-$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')}
out=target/fuzz
rm -rf "$out" && mkdir -p "$out"

cargo build --example fuzz
bin="${CARGO_TARGET_DIR:-target}/debug/examples/fuzz"
status=0
"$bin" --seconds "$seconds" --seed "$seed" --out "$out" > "$out/summary.json" || status=$?
cat "$out/summary.json"
python3 - "$out/summary.json" <<'PY'
import json, sys
s = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print(f"fuzz: {s['cases']} cases, {s['panics']} panics in {s['seconds']} s (seed {s['seed']})")
for name, cases in s["cases_by_target"].items():
    print(f"  {name:<16} {cases:>9} cases  {s['panics_by_target'][name]:>4} panics")
PY
if [ "$status" -ne 0 ]; then
    echo "fuzz: FAILED (exit $status); failing cases in $out/"
    ls "$out"
fi
exit "$status"
