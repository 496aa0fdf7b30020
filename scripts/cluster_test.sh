#!/usr/bin/env bash
# Cluster test: its own redis-server on a free port, three `server --redis URL --node-id
# NAME` nodes and BOTS bots spread across them (more than one node can hold), over UDP on
# loopback. Mid-run, a fault:
#   kill           kill -9 one node (its bots reconnect to the next node)
#   redis-restart  kill -9 Redis and start it again, empty, on the same port
# Passes only when (scripts/check_cluster.py): every committed match was seen by exactly its
# players, across nodes (but for players the fault cut off); nobody was in two matches;
# no healthy player was dropped outside the fault; the killed node's opponents were
# re-queued and matched again (kill), every bot matched again after the restart
# (redis-restart); and nothing is left in Redis at the end (no lobby, match, ticket,
# player, lease or inbox key).
#   bash scripts/cluster_test.sh [kill|redis-restart] [BOTS] [SECONDS]
# BOTS_FLAGS go to the bots (default --rate 15: 1,500 bots, three nodes and Redis share
# two cores).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-kill}
count=${2:-1500}
duration=${3:-40}
case "$mode" in kill | redis-restart) ;; *) echo "cluster test: mode kill or redis-restart" >&2; exit 2 ;; esac
out="target/cluster-test-$mode"
rm -rf "$out" && mkdir -p "$out"
say() { echo "cluster test ($mode): $*"; }

# shellcheck source=scripts/redis_common.sh
. scripts/redis_common.sh
install_redis
cargo build --release --example server --example bots
bin="${CARGO_TARGET_DIR:-target}/release/examples"
pids=()
redis_pid=
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    [ -n "$redis_pid" ] && kill -9 "$redis_pid" 2>/dev/null || true
}
trap cleanup EXIT
rport=$(free_port SOCK_STREAM)
start_redis() {
    redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no \
        >>"$out/redis.log" 2>&1 &
    redis_pid=$!
    for _ in $(seq 100); do
        redis-cli -p "$rport" ping 2>/dev/null | grep -q PONG && return 0
        sleep 0.05
    done
    say "redis-server did not start (see $out/redis.log)"
    exit 1
}
start_redis
say "redis on $rport"
key="$out/matchmaking.key"
addrs=()
declare -A node_pid
for name in a b c; do
    port=$(free_port SOCK_DGRAM)
    addrs+=("127.0.0.1:$port")
    RUST_LOG=info,server=debug "$bin"/server --redis "redis://127.0.0.1:$rport" --node-id "$name" \
        --addr "127.0.0.1:$port" --key-file "$key" --create-key --log-format plain \
        --stats-every 5 --stats-json "$out/$name.json" --run-for $((duration + 40)) \
        >"$out/$name.log" 2>&1 &
    node_pid[$name]=$!
    pids+=("$!")
    # the first node creates the key the others and the bots use
    for _ in $(seq 100); do [ -s "$key" ] && break; sleep 0.05; done
done
sleep 1
servers=$(IFS=,; echo "${addrs[*]}")
say "nodes a b c on $servers; $count bots for $duration s"
# shellcheck disable=SC2086
"$bin"/bots --server "$servers" --count "$count" --key-file "$key" --duration "$duration" \
    --seed 7 ${BOTS_FLAGS:---rate 15} >"$out/bots.jsonl" 2>"$out/bots.err" &
bots=$!
pids+=("$bots")
# a third in: the killed node's bots notice after netcode's timeout (about 15 s) and
# connect to the next node with time left to match again
sleep $((duration / 3))
python3 -c 'import time; print(int(time.time() * 1000))' >"$out/fault_ms"
if [ "$mode" = kill ]; then
    say "kill -9 node b"
    kill -9 "${node_pid[b]}"
    echo b >"$out/killed"
else
    say "kill -9 redis, then start it again empty"
    kill -9 "$redis_pid"
    wait "$redis_pid" 2>/dev/null || true
    sleep 1
    start_redis
fi
rc=0
wait "$bots" || rc=$?
# exit 1: a match some of whose bots never saw it; the fault may do that to the players it
# cuts off, and check_cluster.py tells those from a real disagreement
if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ]; then
    say "the bots exited with code $rc (3: they could not keep up); stderr:"
    tail -20 "$out/bots.err" >&2
    exit "$rc"
fi
# stop the surviving nodes: each gives its lease up, so its records go with it
for name in a b c; do
    pid=${node_pid[$name]}
    kill -TERM "$pid" 2>/dev/null || true
done
for name in a b c; do
    wait "${node_pid[$name]}" 2>/dev/null || true
done
# every key left, with its time to live (-1: none)
redis-cli -p "$rport" --scan --pattern '*' | while read -r k; do
    echo "$k $(redis-cli -p "$rport" ttl "$k")"
done >"$out/redis_keys.txt"
python3 scripts/check_cluster.py "$out" "$mode"
