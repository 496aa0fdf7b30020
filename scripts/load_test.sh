#!/usr/bin/env bash
# Load test: a dedicated `server` and 200 `bots` (20% flaky) against each other on loopback.
# Passes only when every committed match was reported by exactly its players, no player
# was in two matches at once, and nothing was left in flight or open at the end.
#   bash scripts/load_test.sh [COUNT] [DURATION_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-200}
duration=${2:-30}
out=target/load-test
rm -rf "$out" && mkdir -p "$out"

cargo build --release --example server --example bots
port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# the bots drain for up to 12 s after --duration; the server outlives that by 20 s, more
# than netcode's 15 s connection timeout, so even a client whose disconnect packet was
# lost must be gone, and its lobby with it, by the end
./target/release/examples/server --addr "127.0.0.1:$port" --run-for $((duration + 32)) \
    --stats-every 5 --stats-json "$out/stats.json" > "$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
sleep 1
./target/release/examples/bots --server "127.0.0.1:$port" --count "$count" --flaky 0.2 \
    --duration "$duration" --seed 7 > "$out/bots.jsonl" 2> "$out/bots.err"
wait $server
trap - EXIT
python3 scripts/check_load.py "$out"
