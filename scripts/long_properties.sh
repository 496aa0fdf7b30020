#!/usr/bin/env bash
# Runs the property tests of both modes with many cases in a release build:
#   atomic      tests/atomic/invariants.rs     (server invariants, with and without faults)
#   negotiated  tests/negotiated/properties.rs (the machine, crowds, matches under faults)
#   cluster     tests/atomic/cluster.rs        (nodes on one store under faults, seeds 0..CASES)
#
# Usage: scripts/long_properties.sh [CASES]    (default 2000 cases per property test)
#        PROPTEST_RNG_SEED_LONG=N scripts/long_properties.sh [CASES]   (replay a run's seed)
#
# Prints the cases run per test and, for a failure, the minimal failing input and the
# seed proptest saved (the `cc ...` line it appended to the regressions file beside the
# test). Exits non-zero if any property failed.
set -uo pipefail

cases="${1:-2000}"
# a fresh seed each run unless given (`cargo test` alone uses the fixed one in
# .cargo/config.toml); printed so that a failure can be replayed
seed="${PROPTEST_RNG_SEED_LONG:-$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')}"
echo "seed: PROPTEST_RNG_SEED_LONG=$seed"
cd "$(dirname "$0")/.."
log_dir="$(mktemp -d)"
regressions=(tests/atomic/invariants.proptest-regressions tests/negotiated/properties.proptest-regressions tests/negotiated/faults.proptest-regressions tests/negotiated/mutual.proptest-regressions)
for f in "${regressions[@]}"; do
    cp "$f" "$log_dir/$(basename "$f").before" 2>/dev/null || : >"$log_dir/$(basename "$f").before"
done

echo "building the test binaries (release)..."
cargo test --release --no-run --test atomic --test negotiated >"$log_dir/build.log" 2>&1 || {
    tail -n 30 "$log_dir/build.log"
    exit 2
}

status=0
run() {
    local binary="$1" filter="$2"
    local log="$log_dir/$binary.log"
    local started=$SECONDS
    echo "== $binary: $filter ($cases cases per property test)"
    PROPTEST_RNG_SEED="$seed" PROPTEST_CASES="$cases" CLUSTER_SEEDS="$cases" cargo test --release --test "$binary" -- "$filter" >"$log" 2>&1
    local code=$?
    grep -E '^test .* \.\.\. ' "$log" | sed 's/^/   /'
    local passed
    passed=$(grep -cE '^test .* \.\.\. ok$' "$log")
    echo "   $passed passed, $((SECONDS - started)) s"
    if [ $code -ne 0 ]; then
        status=1
        grep -E 'minimal failing input|Test failed|panicked at' "$log" | sed 's/^/   /' | head -n 20
    fi
}
run atomic invariants::
run atomic cluster::
run negotiated properties::
run negotiated faults::
run negotiated mutual::

for f in "${regressions[@]}"; do
    new=$(diff "$log_dir/$(basename "$f").before" "$f" | grep '^> cc ' | sed 's/^> //')
    if [ -n "$new" ]; then
        echo "new failing seeds saved in $f:"
        echo "$new" | sed 's/^/   /'
    fi
done
echo "logs: $log_dir"
exit $status
