#!/usr/bin/env bash
# Identity end to end over UDP: a secure `server` (its own key file) and
#   - `bots` minting tokens from the same key file: they commit matches;
#   - `bots` minting tokens from another key file: none commits, each prints a clear
#     "refused" error, and `bots` exits non-zero.
#   bash scripts/identity_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/identity-check
rm -rf "$out" && mkdir -p "$out"
cargo build --release --example server --example bots
bin="${CARGO_TARGET_DIR:-target}/release/examples"
port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin/server" --addr "127.0.0.1:$port" --key-file "$out/server.key" --create-key --run-for 40 \
    --stats-json "$out/stats.json" --stats-every 100 > "$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
sleep 1
# the same key: matches commit
"$bin/bots" --server "127.0.0.1:$port" --key-file "$out/server.key" --count 10 --duration 5 \
    > "$out/same-key.jsonl" 2> "$out/same-key.err"
same=$(grep -c '"event":"match_found"' "$out/same-key.jsonl" || true)
# another key: netcode never answers; the bots give up after the token's 15 s timeout
status=0
"$bin/bots" --server "127.0.0.1:$port" --key-file "$out/other.key" --count 5 --duration 17 \
    > "$out/other-key.jsonl" 2> "$out/other-key.err" || status=$?
found=$(grep -c '"event":"match_found"' "$out/other-key.jsonl" || true)
refused=$(grep '"event":"error"' "$out/other-key.jsonl" | grep -c 'refused' || true)
echo "identity: same key: $same match_found lines; other key: $found match_found, $refused bots refused with a clear error, bots exit $status"
grep -m1 '"event":"error"' "$out/other-key.jsonl" || true
if [ "$same" -eq 0 ] || [ "$found" -ne 0 ] || [ "$refused" -ne 5 ] || [ "$status" -eq 0 ]; then
    echo "identity: FAILED"
    exit 1
fi
echo "identity: ok"
