#!/usr/bin/env bash
# Negotiated relay cluster test: its own redis-server on a free port (persisting every
# write: appendonly, fsync always), RELAYS `negotiated --relay-only --redis URL` relays
# sharing one fact store, and CLIENTS clients (`negotiated --client A,B,C --clients N`)
# searching in four categories, spread across the relays, over UDP on loopback. Mid-run:
#   kill           kill -9 relay b (its clients fail over to the next relay)
#   redis-restart  kill -9 Redis and start it again on the same port and data
#   steady         no fault (the figures of one, two and three relays)
# Passes only when (scripts/check_negotiated_cluster.py): every match is mutual (both sides
# saw the same request, bid and accept, in the other role); nobody was matched twice in one
# search; the clients of the killed relay failed over and were matched again; every client
# matched again after the Redis restart; and no fact key outlived its frames (Redis holds
# nothing under the prefix once they expired).
#   bash scripts/negotiated_cluster_test.sh [kill|redis-restart|steady] [CLIENTS] [SECONDS] [RELAYS]
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-kill}
count=${2:-300}
duration=${3:-30}
relays=${4:-3}
case "$mode" in kill | redis-restart | steady) ;; *) echo "negotiated cluster test: mode kill, redis-restart or steady" >&2; exit 2 ;; esac
[ "$mode" = kill ] && [ "$relays" -lt 2 ] && { echo "kill needs 2 relays or more" >&2; exit 2; }
# a client that fails over is away for the token timeout (3 s) and a connect; an accept of
# its bid stays readable for at least a frame minus the bid timeout (1 s) after it was
# stored: the frame must be longer than both (see the README, "Failover rules")
frame=6
out="target/negotiated-cluster-test-$mode-$relays"
rm -rf "$out" && mkdir -p "$out/redis"
echo "$frame" >"$out/frame"
say() { echo "negotiated cluster test ($mode, $relays relays): $*"; }

# shellcheck source=scripts/redis_common.sh
. scripts/redis_common.sh
install_redis
cargo build --release --example negotiated
bin="${CARGO_TARGET_DIR:-target}/release/examples/negotiated"
pids=()
redis_pid=
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    [ -n "$redis_pid" ] && kill -9 "$redis_pid" 2>/dev/null || true
}
trap cleanup EXIT
rport=$(free_port SOCK_STREAM)
start_redis() {
    redis-server --port "$rport" --bind 127.0.0.1 --dir "$PWD/$out/redis" --save "" \
        --appendonly yes --appendfsync always >>"$out/redis.log" 2>&1 &
    redis_pid=$!
    for _ in $(seq 200); do
        redis-cli -p "$rport" ping 2>/dev/null | grep -q PONG && return 0
        sleep 0.05
    done
    say "redis-server did not start (see $out/redis.log)"
    exit 1
}
start_redis
say "redis on $rport"
key="$out/matchmaking.key"
names=(a b c d e)
addrs=()
declare -A relay_pid
for name in "${names[@]:0:$relays}"; do
    port=$(free_port SOCK_DGRAM)
    addrs+=("127.0.0.1:$port")
    "$bin" --relay-only --redis "redis://127.0.0.1:$rport" --relay-name "$name" \
        --addr "127.0.0.1:$port" --key-file "$key" --frame "$frame" --rate-limit 60 --rate-burst 120 \
        --run-for $((duration + 60)) --drain-timeout 1 >"$out/$name.log" 2>&1 &
    relay_pid[$name]=$!
    pids+=("$!")
    # the first relay creates the key the others and the clients use
    for _ in $(seq 100); do [ -s "$key" ] && break; sleep 0.05; done
done
echo "${addrs[*]}" >"$out/relays"
sleep 1
list=$(IFS=,; echo "${addrs[*]}")
say "relays on $list; $count clients for $duration s"
python3 -c 'import time; print(int(time.time() * 1000))' >"$out/clients_start_ms"
"$bin" --client "$list" --clients "$count" --categories duel,team,ranked,casual \
    --run-for "$duration" --token-timeout 3 --key-file "$key" --json \
    >"$out/clients.jsonl" 2>"$out/clients.err" &
clients=$!
pids+=("$clients")
sleep $((duration / 3))
python3 -c 'import time; print(int(time.time() * 1000))' >"$out/fault_ms"
case "$mode" in
kill)
    say "kill -9 relay b"
    kill -9 "${relay_pid[b]}"
    echo "${addrs[1]}" >"$out/killed"
    ;;
redis-restart)
    say "kill -9 redis, then start it again on its data"
    kill -9 "$redis_pid"
    wait "$redis_pid" 2>/dev/null || true
    sleep 1
    start_redis
    ;;
esac
rc=0
wait "$clients" || rc=$?
if [ "$rc" -ne 0 ]; then
    say "the clients exited with code $rc; stderr:"
    tail -20 "$out/clients.err" >&2
fi
for name in "${names[@]:0:$relays}"; do
    kill -TERM "${relay_pid[$name]}" 2>/dev/null || true
done
for name in "${names[@]:0:$relays}"; do
    wait "${relay_pid[$name]}" 2>/dev/null || true
done
# every key left under the prefix once the frames expired (a frame lives two frames after
# it, the log four frame durations, its key five): poll up to six frames, then record what
# is left, with TTLs
for _ in $(seq $((frame * 12))); do
    [ -z "$(redis-cli -p "$rport" --scan --pattern '*negotiated*' | grep -v ':conn:' | head -1)" ] && break
    sleep 0.5
done
redis-cli -p "$rport" --scan --pattern '*' | while read -r k; do
    echo "$k $(redis-cli -p "$rport" pttl "$k")"
done >"$out/redis_keys.txt"
redis-cli -p "$rport" info commandstats >"$out/redis_commandstats.txt"
python3 scripts/check_negotiated_cluster.py "$out" "$mode" "$rc"
