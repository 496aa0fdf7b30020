"""Checks an ops run (scripts/ops_check.sh): a server drained by SIGTERM mid-run, then
restarted on the same port, against what every bot printed.

    python3 scripts/check_ops.py DIR BOTS DRAIN_TIMEOUT_S

DIR holds bots*.jsonl (the bots' lines, each stamped with `at_ms`), stats1.json and
stats2.json (the two servers' final stats) and times.json: the Unix milliseconds of the
SIGTERM (`term_ms`), of the first server's exit (`exit_ms`), of the restart (`restart_ms`,
at least a second later: a line stamped before `exit_ms` + 0.5 s is the first server's),
and the exit codes of both servers (`rc1`, `rc2`) and of every bots process (`bots_rc`).
Prints one line per check and exits 1 if any failed.
"""
import glob
import json
import sys

out, bots, drain_timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
times = json.load(open(f"{out}/times.json"))


def stats(name):
    try:
        return json.load(open(f"{out}/{name}"))
    except (OSError, ValueError) as e:
        return {"error": str(e)}


stats1, stats2 = stats("stats1.json"), stats("stats2.json")
term, exited, restart = times["term_ms"], times["exit_ms"], times["restart_ms"]

players = set()
closing = set()  # players told the first server is closing
found1, found2 = set(), set()  # (match, lobby) seen from each server
matched2 = set()  # players matched by the second server
back = {}  # player -> ms from the restart to its first reconnect after it
summaries = []
for path in sorted(glob.glob(f"{out}/bots*.jsonl")):
    for line in open(path):
        e = json.loads(line)
        kind = e["event"]
        if kind == "summary":
            summaries.append(e)
            continue
        if "player" in e:
            players.add(e["player"])
        at = e.get("at_ms", 0)
        first = at < exited + 500  # else at >= restart: the script waits 1 s in between
        if kind == "server_closing" and term <= at and first:
            closing.add(e["player"])
        elif kind == "match_found":
            key = (e["match"], e["lobby"])
            if first:
                found1.add(key)
            else:
                found2.add(key)
                matched2.add(e["player"])
        elif kind == "reconnect" and at >= restart:
            back.setdefault(e["player"], at - restart)

results = []


def check(ok, text):
    results.append(ok)
    print(f"  {'ok  ' if ok else 'FAIL'} {text}")


def pct(n):
    return f"{n}/{bots} bots ({100.0 * n / bots:.1f} %)"


print(f"ops check: {bots} bots, {len(players)} distinct player ids, "
      f"SIGTERM {(term - times['start_ms']) / 1000:.1f} s after the bots started")
check(len(players) == bots, f"every bot has its own player id: {len(players)} ids for {bots} bots")
check(len(closing) >= 0.95 * bots,
      f"told the server is closing (server_closing): {pct(len(closing))}, need >= 95 %")
committed1 = stats1.get("matches_committed")
check(committed1 == len(found1) and len(found1) > 0,
      f"first server: final matches_committed {committed1}, "
      f"distinct matches the bots saw from it {len(found1)}")
took = (exited - term) / 1000
check(times["rc1"] == 0 and took <= drain_timeout + 2,
      f"first server: exit code {times['rc1']} {took:.2f} s after SIGTERM, "
      f"need 0 within {drain_timeout + 2:g} s")
waits = sorted(back.values())
median = f", median {waits[len(waits) // 2] / 1000:.1f} s, last {waits[-1] / 1000:.1f} s " \
         "after the restart" if waits else ""
check(len(back) >= 0.95 * bots, f"came back to the restarted server (reconnect): "
      f"{pct(len(back))}{median}, need >= 95 %")
check(len(matched2) >= 0.95 * bots,
      f"matched again on the restarted server: {pct(len(matched2))} in {len(found2)} matches, "
      "need >= 95 %")
committed2 = stats2.get("matches_committed")
check(committed2 == len(found2),
      f"restarted server: final matches_committed {committed2}, "
      f"distinct matches the bots saw from it {len(found2)}")
check(times["rc2"] == 0, f"restarted server: exit code {times['rc2']}")
inconsistent = sum(s.get("inconsistent_matches", 0) for s in summaries)
check(all(rc == 0 for rc in times["bots_rc"]) and len(summaries) == len(times["bots_rc"])
      and inconsistent == 0,
      f"bots processes: exit codes {times['bots_rc']}, {len(summaries)} summaries, "
      f"{inconsistent} inconsistent matches")
notices = sum(s.get("server_closing", 0) for s in summaries)
reconnects = sum(s.get("reconnects", 0) for s in summaries)
print(f"ops check: bots' summaries: {notices} server_closing notices, {reconnects} reconnects, "
      f"{sum(s.get('errors', 0) for s in summaries)} errors")
if not all(results):
    print(f"ops check FAILED: {results.count(False)} of {len(results)} checks")
    sys.exit(1)
print(f"ops check: ok ({len(results)} checks)")
