#!/usr/bin/env bash
# Ops check (issue #23): a rolling update as an operator does it, on loopback.
#   1. a release `server` and BOTS `bots` (4 processes, each with its own random seed and
#      so its own player ids);
#   2. SIGTERM to the server mid-run: it drains (tells every client it is closing, lets what
#      is in flight commit or roll back), writes its final stats and exits;
#   3. a new server on the same port right away: the bots reconnect on their own, with
#      backoff, and match again; at the end it gets SIGTERM too.
# Passes (scripts/check_ops.py) when at least 95 % of the bots printed `server_closing`, the
# first server's final `matches_committed` equals the distinct matches the bots saw from it,
# it exited 0 within the drain timeout + 2 s, at least 95 % of the bots reconnected to the
# new server and matched on it, and the new server's count equals the bots' view of it too.
#   bash scripts/ops_check.sh [BOTS] [DURATION_SECONDS]
# DRAIN_TIMEOUT (seconds, default 10) goes to the server's --drain-timeout, TRANSPORT_FLAGS
# (e.g. --netcode) to the server and the bots, BOTS_FLAGS (e.g. --flaky 0.05) to the bots.
set -euo pipefail
cd "$(dirname "$0")/.."
bots=${1:-200}
duration=${2:-40}
procs=4
term_after=8
drain=${DRAIN_TIMEOUT:-10}
if [ $((bots % procs)) -ne 0 ]; then
    echo "ops check: BOTS must be a multiple of $procs"
    exit 2
fi

cargo build --release --example server --example bots
bin="${CARGO_TARGET_DIR:-target}/release/examples"
dir=$(mktemp -d "${TMPDIR:-/tmp}/ops-check.XXXXXX")
pids=()
cleanup() {
    local status=$?
    for pid in "${pids[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [ "$status" -ne 0 ]; then
        rm -rf target/ops-check-failed
        cp -r "$dir" target/ops-check-failed 2>/dev/null &&
            echo "ops check: logs kept in target/ops-check-failed"
    fi
    rm -rf "$dir"
}
trap cleanup EXIT
now_ms() { date +%s%3N; }
port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
addr="127.0.0.1:$port"
key="$dir/server.key"

# the flags the server has: a drain timeout, and (when a missing key file is an error)
# --create-key for the first start
help=$("$bin/server" --help)
# shellcheck disable=SC2206
transport=(${TRANSPORT_FLAGS:-})
# shellcheck disable=SC2206
bots_flags=(${BOTS_FLAGS:-})
server_flags=(--addr "$addr" --key-file "$key" --stats-every 1 "${transport[@]}")
if grep -q -- '--drain-timeout' <<<"$help"; then
    server_flags+=(--drain-timeout "$drain")
else
    echo "ops check: WARNING: this server has no --drain-timeout (its drain cannot be checked)"
fi
create=()
grep -q -- '--create-key' <<<"$help" && create=(--create-key)

server_pid=
start_server() { # N: stats file N, log N
    "$bin/server" "${server_flags[@]}" "$@" --stats-json "$dir/stats$n.json" \
        > "$dir/server$n.log" 2>&1 &
    server_pid=$!
    pids+=("$server_pid")
}
stop_server() { # sets rc: SIGTERM, then the exit code
    kill -TERM "$server_pid"
    rc=0
    wait "$server_pid" || rc=$?
}

n=1
start_server "${create[@]}"
for _ in $(seq 50); do
    [ -s "$key" ] && break
    sleep 0.1
done
if [ ! -s "$key" ]; then
    echo "ops check: the server did not start:"
    cat "$dir/server1.log"
    exit 1
fi
sleep 0.5
echo "ops check: server on $addr (drain timeout $drain s); $bots bots in $procs processes for $duration s; SIGTERM after $term_after s"
start_ms=$(now_ms)
bot_pids=()
for i in $(seq "$procs"); do
    "$bin/bots" --server "$addr" --key-file "$key" --count $((bots / procs)) \
        --duration "$duration" "${transport[@]}" "${bots_flags[@]}" \
        > "$dir/bots$i.jsonl" 2> "$dir/bots$i.err" &
    bot_pids+=("$!")
    pids+=("$!")
done
sleep "$term_after"
term_ms=$(now_ms)
stop_server
rc1=$rc
exit_ms=$(now_ms)
# what was in flight when the drain began, as the server logged it (information only)
grep -m1 'draining:' "$dir/server1.log" | sed 's/.*draining: /ops check: at SIGTERM: /' || true
echo "ops check: first server exited $rc1 after $(( exit_ms - term_ms )) ms; restarting it on $addr in 1 s"
# a second between the two servers, so that each bot line is known to be of one or the
# other by its time alone: lines stamped before exit + 0.5 s are the first server's (its
# last messages reach the bots within a few frames), lines from the restart on the second's
sleep 1
restart_ms=$(now_ms)
n=2
start_server
bots_rc=()
for pid in "${bot_pids[@]}"; do
    code=0
    wait "$pid" || code=$?
    bots_rc+=("$code")
done
echo "ops check: bots done $(( ($(now_ms) - start_ms) / 1000 )) s after they started; SIGTERM to the restarted server"
stop_server
rc2=$rc
cat > "$dir/times.json" <<EOF
{"start_ms": $start_ms, "term_ms": $term_ms, "exit_ms": $exit_ms, "restart_ms": $restart_ms,
 "rc1": $rc1, "rc2": $rc2, "bots_rc": [$(IFS=,; echo "${bots_rc[*]}")]}
EOF
python3 scripts/check_ops.py "$dir" "$bots" "$drain"
