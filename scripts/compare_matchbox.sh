#!/usr/bin/env bash
# Side by side, in one command (issue #16): the same burst of COUNT players against this
# crate's `server` example and against matchbox_server 0.15, and the ratio of their costs.
#
#   bash scripts/compare_matchbox.sh [--count 1000] [--runs 3]
#
# The figure: whole-process server CPU per committed pair, as `top` sees it: user + system
# time of every thread of the server process (the scheduler's nanoseconds per thread from
# /proc/PID/task/*/schedstat; /proc/PID/stat's clock ticks as a check), read at the start
# and at the end of the burst window, divided by the pairs committed in it.
#
# - This crate: `server --addr 127.0.0.1:PORT --key-file KEY --create-key` (its defaults:
#   quiet transport, 60 Hz fixed loop, logs at info; plus --stats-json for the commit count)
#   and `bots --count COUNT --no-rematch --duration 10` (one process, one Bevy app per
#   bot). The window starts at the bots' `start` line (printed once the bots' apps are
#   built, just before they connect; older bots print it before building them) and ends at
#   the first of: the last bot's `leave` line (with --no-rematch each bot closes its
#   connection once matched), the bots' `summary` line, the bots' exit. A committed pair is
#   a match the server committed (its final stats' `matches_committed`).
# - matchbox_server 0.15 (installed with `cargo install` under target/matchbox, once), its
#   default topology: scripts/matchbox_burst.py opens COUNT WebSockets at once to
#   ws://127.0.0.1:PORT/burst?next=2 (asyncio, one process). A pair is committed when both
#   sides were told of each other: the waiting peer got NewPeer(newcomer), the newcomer got
#   the waiting peer's first Signal relayed by the server. The window runs from just
#   before the first connection until every client has paired and closed its WebSocket.
#
# Each run starts a fresh process of each server, on a free loopback port (this crate's
# first in odd runs, matchbox's first in even ones) and measures it idle for 2 s first.
# stdout: one JSON line per server per run, then a summary line (the medians, the ratio
# this_crate / matchbox; issue #16's target is <= 0.8); a readable recap goes to stderr.
# The client processes' CPU over the same window is reported too, for context.
# Everything lands in target/compare-matchbox/ (runs.jsonl, summary.json, and one
# directory per server per run: logs, the clients' lines, window.json).
#
# Reading the figures: `server_idle_cores` (the server alone, before the burst) times
# `window_s` is what the window would have cost with nobody connected
# (`server_idle_cpu_ms_over_window`): a 60 Hz loop pays it, an async server does not, so a
# slower client (a longer window) costs this crate more than matchbox. Both clients are
# one thread and use about a whole core during their bursts (`client_cores`), so the times
# to pair are the clients' as much as the servers'. `other_cores` says how busy the rest
# of the machine was; compare figures from one invocation.
#
# A benchmark, not a test: it exits 0 whatever the figures, and 1 only when something
# broke: a server did not start or died, fewer pairs than COUNT / 2, a client failed or
# reported that it could not keep up (the bots exit 3 then; matchbox_burst.py exits 3 when
# its event loop's lag p99 is over 100 ms). The other runs still run.
#
# Environment: SERVER_RUST_LOG and MATCHBOX_RUST_LOG set each server's RUST_LOG (unset by
# default, so each logs as it does out of the box: this crate's at info, a summary every
# 5 s; matchbox_server's "matchbox_server=info,tower_http=debug", several lines a
# connection, to stdout, here a file). MATCHBOX_SERVER=PATH uses that binary instead of
# installing one. Needs python3 (with `websockets` >= 13: installed with pip if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

count=1000
runs=3
while [ $# -gt 0 ]; do
    case "$1" in
        --count) count=${2:?--count needs a number}; shift 2 ;;
        --runs) runs=${2:?--runs needs a number}; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "compare_matchbox: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$count$runs" in *[!0-9]*) echo "compare_matchbox: --count and --runs take numbers" >&2; exit 2 ;; esac
if [ "$count" -lt 2 ] || [ "$runs" -lt 1 ]; then
    echo "compare_matchbox: --count must be at least 2, --runs at least 1" >&2
    exit 2
fi

out=target/compare-matchbox
rm -rf "$out" && mkdir -p "$out"
say() { echo "compare_matchbox: $*" >&2; }
# one descriptor per connection on both sides of each burst
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# --- the tools ---------------------------------------------------------------------------
if ! python3 -c 'import websockets.asyncio.client' 2>/dev/null; then
    say "installing the websockets package (pip)"
    python3 -m pip install --quiet websockets
fi
mbx=${MATCHBOX_SERVER:-target/matchbox/bin/matchbox_server}
if [ ! -x "$mbx" ]; then
    say "installing matchbox_server 0.15 under target/matchbox (a few minutes, once)"
    cargo install matchbox_server --version '~0.15' --locked --root target/matchbox
fi
cargo build --release --example server --example bots
bin="${CARGO_TARGET_DIR:-target}/release/examples"

free_port() { # $1: tcp or udp
    python3 -c 'import socket, sys
kind = socket.SOCK_STREAM if sys.argv[1] == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' "$1"
}
# wait_until SECONDS PID COMMAND...: until COMMAND succeeds; fails if PID dies or time is up
wait_until() {
    local deadline=$((SECONDS + $1)) pid=$2
    shift 2
    until "$@" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || return 1
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}
http_ok() {
    python3 -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=1).read()' "$1"
}

server_pid=
trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; true' EXIT
broken=()
# record RUN SERVER DIR: print the run's JSON line (and append it to runs.jsonl); a run
# that broke says why, in `broken`
record() {
    local line
    if ! line=$(python3 - "$@" "$count" <<'EOF'
import json, os, sys
run, server, d, count = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
w = json.load(open(f"{d}/window.json"))
summary = w.get("summary") or {}
broken = []
line = {"event": "run", "run": run, "server": server, "players": count,
        "pairs_expected": count // 2}
if "error" in w:
    broken.append(w["error"])
if server == "this_crate":
    stats = json.load(open(f"{d}/stats.json")) if os.path.exists(f"{d}/stats.json") else {}
    if not stats:
        broken.append("no final stats from the server")
    pairs = stats.get("matches_committed", 0)
    commit = stats.get("time_to_commit_ms") or {}
    line.update(pairs=pairs, matches_rolled_back=stats.get("matches_rolled_back"),
                rollbacks_by_status=stats.get("rollbacks_by_status"),
                healthy_players_dropped=stats.get("healthy_players_dropped"),
                time_to_commit_ms_p50=commit.get("p50"), time_to_commit_ms_p99=commit.get("p99"),
                bots_matches_seen=w.get("matches_seen"), bots_leaves=w.get("leaves"),
                bots_wait_ms_p50=summary.get("wait_ms_p50"),
                bots_wait_ms_p99=summary.get("wait_ms_p99"),
                bots_cancelled=summary.get("cancelled"))
    # the bots' own view of their pace, when they report it
    for key in ("rounds_per_s_asked", "rounds_per_s_reached", "cancelled_kept_up",
                "cancelled_own_lag"):
        if key in summary:
            line[f"bots_{key}"] = summary[key]
    found = w.get("found_after_start_ms") or {}
    line.update(time_to_pair_ms_p50=found.get("p50"), time_to_pair_ms_p99=found.get("p99"))
    code = w.get("client_exit_code")
    if code == 3:
        broken.append("the bots could not keep up (exit code 3)")
    elif code:
        broken.append(f"the bots exited with code {code}")
    if (stats.get("healthy_players_dropped") or 0) > 0:
        broken.append("healthy players dropped")
else:
    pairs = summary.get("pairs", 0)
    line.update(pairs=pairs, clients_paired=summary.get("clients_paired"),
                client_errors=summary.get("errors"), first_errors=summary.get("first_errors"),
                time_to_pair_ms_p50=(summary.get("time_to_pair_ms") or {}).get("p50"),
                time_to_pair_ms_p99=(summary.get("time_to_pair_ms") or {}).get("p99"),
                connect_ms_p50=(summary.get("connect_ms") or {}).get("p50"),
                client_loop_lag_ms=summary.get("loop_lag_ms"),
                client_kept_up=summary.get("kept_up"))
    code = w.get("client_exit_code")
    if code == 3 or summary.get("kept_up") is False:
        broken.append("matchbox_burst.py could not keep up (event loop lag)")
    elif code:
        broken.append(f"matchbox_burst.py exited with code {code}")
if not summary:
    broken.append("the client printed no summary")
if pairs < count // 2:
    broken.append(f"{pairs} pairs committed, expected {count // 2}")
for key in ("window_s", "window_end", "server_cpu_ms", "server_cpu_ms_ticks",
            "server_cpu_source", "server_threads", "server_idle_cores",
            "server_idle_cpu_ms_over_window", "client_cpu_ms", "client_cores", "other_cores"):
    line[key] = w.get(key)
if pairs and w.get("server_cpu_ms") is not None:
    line["server_cpu_ms_per_pair"] = round(w["server_cpu_ms"] / pairs, 4)
    if w.get("client_cpu_ms") is not None:
        line["client_cpu_ms_per_pair"] = round(w["client_cpu_ms"] / pairs, 4)
else:
    line["server_cpu_ms_per_pair"] = None
line["broken"] = broken
print(json.dumps(line))
EOF
    ); then
        broken+=("run $1 $2: its report could not be read")
        return
    fi
    echo "$line"
    echo "$line" >> "$out/runs.jsonl"
    case "$line" in
        *'"broken": []'*) ;;
        *) broken+=("run $1 $2: $(python3 -c 'import json,sys; print("; ".join(json.loads(sys.argv[1])["broken"]))' "$line")") ;;
    esac
}

# stop_server DIR: SIGTERM (the crate's server drains and writes its final stats), then wait
stop_server() {
    kill -TERM "$server_pid" 2>/dev/null || true
    local code=0
    wait "$server_pid" || code=$?
    echo "$code" > "$1/server.exit"
    server_pid=
}

run_this_crate() { # $1: the run
    local d="$out/run$1-this_crate" port
    mkdir -p "$d"
    port=$(free_port udp)
    say "run $1: this crate's server on 127.0.0.1:$port, $count bots"
    local log=(-u RUST_LOG)
    [ -z "${SERVER_RUST_LOG:-}" ] || log+=("RUST_LOG=$SERVER_RUST_LOG")
    env "${log[@]}" "$bin"/server --addr "127.0.0.1:$port" --key-file "$d/key" --create-key \
        --stats-json "$d/stats.json" > "$d/server.out" 2> "$d/server.log" &
    server_pid=$!
    if ! wait_until 20 "$server_pid" grep -q 'listening on' "$d/server.out"; then
        broken+=("run $1 this_crate: the server did not start (see $d/server.log)")
        stop_server "$d"
        return
    fi
    python3 scripts/burst_cpu.py window --server-pid "$server_pid" --out "$d/window.json" \
        --lines "$d/bots.jsonl" --stderr "$d/bots.err" --expect-leaves $((count / 2 * 2)) -- \
        "$bin"/bots --server "127.0.0.1:$port" --key-file "$d/key" --count "$count" \
        --no-rematch --duration 10 > "$d/window.line" || true
    if ! kill -0 "$server_pid" 2>/dev/null; then
        broken+=("run $1 this_crate: the server died during the burst (see $d/server.log)")
    fi
    stop_server "$d"
    record "$1" this_crate "$d"
}

run_matchbox() { # $1: the run
    local d="$out/run$1-matchbox" port
    mkdir -p "$d"
    port=$(free_port tcp)
    say "run $1: matchbox_server on 127.0.0.1:$port, $count WebSocket clients"
    local log=(-u RUST_LOG)
    [ -z "${MATCHBOX_RUST_LOG:-}" ] || log+=("RUST_LOG=$MATCHBOX_RUST_LOG")
    env "${log[@]}" "$mbx" "127.0.0.1:$port" > "$d/server.log" 2>&1 &
    server_pid=$!
    if ! wait_until 20 "$server_pid" http_ok "http://127.0.0.1:$port/health"; then
        broken+=("run $1 matchbox: the server did not start (see $d/server.log)")
        stop_server "$d"
        return
    fi
    python3 scripts/burst_cpu.py window --server-pid "$server_pid" --out "$d/window.json" \
        --lines "$d/clients.jsonl" --stderr "$d/clients.err" -- \
        python3 scripts/matchbox_burst.py --url "ws://127.0.0.1:$port" --count "$count" \
        > "$d/window.line" || true
    if ! kill -0 "$server_pid" 2>/dev/null; then
        broken+=("run $1 matchbox: the server died during the burst (see $d/server.log)")
    fi
    stop_server "$d"
    record "$1" matchbox "$d"
}

for run in $(seq 1 "$runs"); do
    if [ $((run % 2)) -eq 1 ]; then
        run_this_crate "$run"; run_matchbox "$run"
    else
        run_matchbox "$run"; run_this_crate "$run"
    fi
done

if [ -s "$out/runs.jsonl" ]; then
    python3 scripts/burst_cpu.py summary "$out/runs.jsonl" | tee "$out/summary.json"
    python3 - "$out/summary.json" >&2 <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
def fmt(v, unit=""):
    return "-" if v is None else f"{v:g}{unit}"
print("compare_matchbox: server CPU per committed pair (median of runs):")
for name in ("this_crate", "matchbox"):
    m = s[name]
    print(f"  {name:10} {fmt(m['median_server_cpu_ms_per_pair'], ' ms')}"
          f"  (runs: {', '.join(fmt(v) for v in m['per_run_server_cpu_ms_per_pair'])};"
          f" window {fmt(m['median_window_s'], ' s')}, client CPU per pair"
          f" {fmt(m['median_client_cpu_ms_per_pair'], ' ms')},"
          f" time to pair p50 {fmt(m['median_time_to_pair_ms_p50'], ' ms')})")
print(f"  ratio this_crate / matchbox: {fmt(s['ratio_this_crate_over_matchbox'])}"
      f" (target <= {s['target_ratio']})")
EOF
fi
if [ ${#broken[@]} -gt 0 ]; then
    say "something broke:"
    printf '  %s\n' "${broken[@]}" >&2
    exit 1
fi
