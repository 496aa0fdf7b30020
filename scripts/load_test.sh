#!/usr/bin/env bash
# Load test: a dedicated `server` and COUNT `bots` (20% flaky) against each other on loopback,
# optionally through the UDP link conditioner (any flags after the first two are the
# conditioner's: --loss FRACTION --delay-ms MS --jitter-ms MS --duplicate FRACTION).
# Passes only when every committed match was reported by exactly its players, no player
# was in two matches at once, no healthy player was dropped, and nothing was left in flight
# or open at the end.
#   bash scripts/load_test.sh [COUNT] [DURATION_SECONDS] [CONDITIONER FLAGS...]
#   bash scripts/load_test.sh 200 30 --loss 0.05 --delay-ms 50 --jitter-ms 20
# TRANSPORT_FLAGS (e.g. --netcode) go to both the server and the bots.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-200}
duration=${2:-30}
shift $(( $# < 2 ? $# : 2 ))
conditioned=$#
out=target/load-test
[ "$conditioned" -gt 0 ] && out="target/load-test-conditioned"
rm -rf "$out" && mkdir -p "$out"

cargo build --release --example server --example bots --example conditioner
bin="${CARGO_TARGET_DIR:-target}/release/examples"
free_port() {
    python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
port=$(free_port)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
# secure connect tokens: the bots mint theirs from the key the server checks them with
# (a fresh key per run, created by the server)
key="$out/matchmaking.key"
target="127.0.0.1:$port"
public=()
if [ "$conditioned" -gt 0 ]; then
    # the bots' tokens name the conditioner, which the server must accept as its address
    cport=$(free_port)
    target="127.0.0.1:$cport"
    public=(--public-addr "$target")
fi
# the bots drain for up to 12 s after --duration; the server outlives that by 20 s, more
# than netcode's 15 s connection timeout, so even a client whose disconnect packet was
# lost must be gone, and its lobby with it, by the end
# the server logs each commit at debug, as `server: match N committed: ...` in the plain
# format (scripts/check_load.py reads them)
# shellcheck disable=SC2086
RUST_LOG=info,server=debug "$bin"/server --addr "127.0.0.1:$port" --run-for $((duration + 32)) \
    --key-file "$key" --create-key ${TRANSPORT_FLAGS:-} "${public[@]}" --log-format plain \
    --stats-every 5 --stats-json "$out/stats.json" > "$out/server.log" 2>&1 &
server=$!
pids+=("$server")
if [ "$conditioned" -gt 0 ]; then
    "$bin"/conditioner --listen "127.0.0.1:$cport" --upstream "127.0.0.1:$port" \
        --run-for $((duration + 40)) "$@" > "$out/conditioner.log" 2>&1 &
    pids+=("$!")
    echo "load test: through the conditioner ($*)"
fi
sleep 1
# shellcheck disable=SC2086
"$bin"/bots --server "$target" --count "$count" --flaky 0.2 --key-file "$key" ${TRANSPORT_FLAGS:-} \
    --duration "$duration" --seed 7 > "$out/bots.jsonl" 2> "$out/bots.err" || {
    rc=$?
    echo "load test: the bots exited with code $rc (3: they could not keep up); their stderr:" >&2
    tail -20 "$out/bots.err" >&2
    exit "$rc"
}
wait "$server"
python3 scripts/check_load.py "$out"
[ "$conditioned" -gt 0 ] && tail -1 "$out/conditioner.log"
exit 0
