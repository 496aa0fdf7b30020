#!/usr/bin/env python3
"""Whole-process CPU of a server over a client's burst; the helper of scripts/compare_matchbox.sh.

    python3 scripts/burst_cpu.py window --server-pid PID --out RUN.json --lines LINES.jsonl \\
        [--expect-leaves N] [--idle-seconds 2] -- CLIENT_COMMAND [ARGS...]
    python3 scripts/burst_cpu.py summary RUNS.jsonl

`window` runs CLIENT_COMMAND, which prints JSON lines on stdout (the crate's `bots`, or
`scripts/matchbox_burst.py`), copies them to LINES.jsonl, and measures the server process
PID (and the client process) over the burst window:

- the window starts at the client's first `{"event":"start",...}` line (the bots print it
  once their apps are built, just before they connect; matchbox_burst.py just before its
  first connection);
- it ends at whichever comes first: the client's `{"event":"summary",...}` line, the
  client's exit (its stdout closing), or, with `--expect-leaves N`, the Nth
  `{"event":"leave",...}` line (with `--no-rematch` each bot prints one when it closes its
  connection after its match: the last one is when every bot has left);
- CPU is what `top` counts: user + system time of every thread of the process. Each side
  of the window reads `/proc/PID/task/*/schedstat` (the scheduler's run time per thread,
  in nanoseconds) and `/proc/PID/stat` (utime + stime of the whole process, in clock
  ticks, 10 ms each, dead threads included); the figure is the nanosecond sum, or the
  ticks if a thread that ran at the start was gone at the end (its time would be lost);
- the client's CPU over the same window is read the same way at the start, and at the
  end either the same way or (if it already exited) from its rusage (`wait4`);
- before the client starts, the server is measured for `--idle-seconds` with nobody
  connected (its idle cost, to set against the window's length), and the whole machine's
  busy time over the window (`/proc/stat`) gives `other_cores`: the cores the rest of the
  machine used (other builds, other benchmarks) while the window ran.

RUN.json gets one object: `window_s`, `window_end` (summary | leaves | exit),
`server_cpu_ms` (+ `_ticks`, `_source`), `server_threads`, `server_idle_cores`,
`client_cpu_ms`, `other_cores`, `client_exit_code`, the client's `start` and `summary`
lines, and from the lines: events counted by name, distinct matches seen in
`match_found` lines, and `found_after_start_ms` (p50/p99 of each `match_found`'s `at_ms`
after the window's start; the bots' comparable of matchbox_burst.py's `time_to_pair_ms`).

`summary` reads the per-run lines compare_matchbox.sh wrote (one JSON object each, with
`server` = "this_crate" or "matchbox" and `server_cpu_ms_per_pair`) and prints one JSON
object: the runs' figures per server, their medians and the ratio this_crate / matchbox.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_snapshot(pid):
    """The process's CPU: per-thread scheduler run time (ns) and utime+stime (ticks)."""
    threads = {}
    task_dir = f"/proc/{pid}/task"
    for tid in os.listdir(task_dir):
        try:
            with open(f"{task_dir}/{tid}/schedstat") as f:
                threads[tid] = int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # the thread exited between listdir and open
    with open(f"/proc/{pid}/stat") as f:
        # the command name (field 2) may hold spaces: split after its closing parenthesis
        fields = f.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return {"threads_ns": threads, "ticks": utime + stime, "t": time.monotonic()}


def cpu_delta_ms(start, end):
    """CPU between two snapshots, in ms: the nanosecond sum unless a thread was lost."""
    ticks_ms = (end["ticks"] - start["ticks"]) * 1000.0 / CLK_TCK
    lost = [tid for tid in start["threads_ns"] if tid not in end["threads_ns"]]
    if lost:
        return ticks_ms, ticks_ms, "stat_ticks (a thread exited during the window)"
    ns = sum(v - start["threads_ns"].get(tid, 0) for tid, v in end["threads_ns"].items())
    return ns / 1e6, ticks_ms, "schedstat_ns"


def machine_busy_ticks():
    """All CPUs' busy time (everything but idle and iowait), in ticks, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is inside user)
    return sum(values[:8]) - values[3] - values[4]


def percentile(values, q):
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q * len(ordered) + 0.5)))
    return ordered[rank - 1]


def window(args):
    client_cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not client_cmd:
        sys.exit("burst_cpu: no client command given (after --)")
    # the server alone, nobody connected
    idle0 = cpu_snapshot(args.server_pid)
    time.sleep(args.idle_seconds)
    idle1 = cpu_snapshot(args.server_pid)
    idle_ms, _, _ = cpu_delta_ms(idle0, idle1)
    idle_cores = idle_ms / 1000.0 / (idle1["t"] - idle0["t"])

    stderr = open(args.stderr, "w") if args.stderr else subprocess.DEVNULL
    client = subprocess.Popen(client_cmd, stdout=subprocess.PIPE, stderr=stderr, text=True,
                              bufsize=1)
    start = end = None  # (server snapshot, client snapshot, machine ticks, wall time)
    start_line = summary_line = None
    window_end = None
    counts, leaves, matches, found_at_ms = {}, 0, set(), []
    start_unix_ms = None

    def snap():
        try:
            c = cpu_snapshot(client.pid)
        except (FileNotFoundError, ProcessLookupError):
            c = None
        return (cpu_snapshot(args.server_pid), c, machine_busy_ticks(), time.time())

    with open(args.lines, "w") as out:
        for raw in client.stdout:
            out.write(raw)
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(line, dict):
                continue
            event = line.get("event")
            counts[event] = counts.get(event, 0) + 1
            if event == "start" and start is None:
                start = snap()
                start_line = line
                start_unix_ms = start[3] * 1000.0
            elif start is None:
                continue
            elif event == "match_found":
                matches.add((line.get("match"), line.get("lobby")))
                if "at_ms" in line:
                    found_at_ms.append(line["at_ms"] - start_unix_ms)
            elif event == "leave":
                leaves += 1
                if end is None and args.expect_leaves and leaves >= args.expect_leaves:
                    end, window_end = snap(), "leaves"
            elif event == "summary":
                summary_line = line
                if end is None:
                    end, window_end = snap(), "summary"
        # stdout closed: the client is exiting
        if start is not None and end is None:
            end, window_end = (cpu_snapshot(args.server_pid), None, machine_busy_ticks(),
                               time.time()), "exit"
    _, status, rusage = os.wait4(client.pid, 0)
    client.returncode = os.waitstatus_to_exitcode(status)
    if start is None:
        result = {"error": "the client printed no start line", "client_exit_code":
                  client.returncode, "events": counts}
        json.dump(result, open(args.out, "w"))
        print(json.dumps(result))
        sys.exit(1)

    (s_srv, s_cli, s_busy, s_t), (e_srv, e_cli, e_busy, e_t) = start, end
    window_s = e_t - s_t
    server_ms, server_ticks_ms, source = cpu_delta_ms(s_srv, e_srv)
    if e_cli is not None and s_cli is not None:
        client_ms, _, _ = cpu_delta_ms(s_cli, e_cli)
    elif s_cli is not None:
        # exited: rusage counts its whole life; take away what it had used at the start
        # (what it had used at the start: its live threads' run time, or its ticks if
        # more, as those count threads that had already exited)
        used_ms = max(sum(s_cli["threads_ns"].values()) / 1e6,
                      s_cli["ticks"] * 1000.0 / CLK_TCK)
        client_ms = (rusage.ru_utime + rusage.ru_stime) * 1000.0 - used_ms
    else:
        client_ms = None
    busy_s = (e_busy - s_busy) / CLK_TCK
    other_cores = (busy_s - server_ms / 1000.0 - (client_ms or 0) / 1000.0) / window_s
    result = {
        "window_s": round(window_s, 4), "window_end": window_end,
        "server_cpu_ms": round(server_ms, 3), "server_cpu_ms_ticks": round(server_ticks_ms, 1),
        "server_cpu_source": source, "server_threads": len(e_srv["threads_ns"]),
        "server_idle_cores": round(idle_cores, 5),
        "server_idle_cpu_ms_over_window": round(idle_cores * window_s * 1000.0, 3),
        "client_cpu_ms": None if client_ms is None else round(client_ms, 3),
        "client_cores": None if client_ms is None else round(client_ms / 1000.0 / window_s, 3),
        "other_cores": round(max(other_cores, 0.0), 3),
        "client_exit_code": client.returncode,
        "events": counts, "leaves": leaves, "matches_seen": len(matches),
        "found_after_start_ms": {"p50": percentile(found_at_ms, 0.5),
                                 "p99": percentile(found_at_ms, 0.99)},
        "start": start_line, "summary": summary_line,
    }
    with open(args.out, "w") as f:
        json.dump(result, f)
    print(json.dumps(result))


def summary(args):
    runs = [json.loads(line) for line in open(args.runs) if line.strip()]
    by_server = {}
    for run in runs:
        by_server.setdefault(run["server"], []).append(run)

    def median(server, key):
        values = [r[key] for r in by_server.get(server, []) if r.get(key) is not None]
        return round(statistics.median(values), 4) if values else None

    out = {"event": "compare_summary", "runs": len({r["run"] for r in runs}),
           "figure": "whole-process server CPU (utime+stime, all threads) per committed "
                     "pair, over the burst window"}
    keys = ["server_cpu_ms_per_pair", "pairs", "window_s", "server_cpu_ms",
            "client_cpu_ms", "client_cpu_ms_per_pair", "server_idle_cores", "other_cores",
            "time_to_pair_ms_p50", "time_to_pair_ms_p99"]
    for server in ("this_crate", "matchbox"):
        rs = by_server.get(server, [])
        out[server] = {"per_run_server_cpu_ms_per_pair": [r["server_cpu_ms_per_pair"] for r in rs],
                       **{f"median_{k}": median(server, k) for k in keys}}
    crate = out["this_crate"]["median_server_cpu_ms_per_pair"]
    mbx = out["matchbox"]["median_server_cpu_ms_per_pair"]
    ratio = round(crate / mbx, 3) if crate is not None and mbx else None
    out["ratio_this_crate_over_matchbox"] = ratio
    out["target_ratio"] = 0.8
    out["target_met"] = None if ratio is None else ratio <= 0.8
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("window", help="run a client and measure the server over its burst")
    w.add_argument("--server-pid", type=int, required=True)
    w.add_argument("--out", required=True, help="the run's JSON object goes here")
    w.add_argument("--lines", required=True, help="the client's stdout is copied here")
    w.add_argument("--stderr", help="the client's stderr goes here (default: discarded)")
    w.add_argument("--expect-leaves", type=int, default=0,
                   help="end the window at this many `leave` lines (0: never)")
    w.add_argument("--idle-seconds", type=float, default=2.0,
                   help="measure the idle server this long first")
    w.add_argument("command", nargs=argparse.REMAINDER)
    s = sub.add_parser("summary", help="medians and the ratio of compare_matchbox.sh's runs")
    s.add_argument("runs")
    args = p.parse_args()
    window(args) if args.cmd == "window" else summary(args)


if __name__ == "__main__":
    main()
