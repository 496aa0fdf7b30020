"""Checks a negotiated relay cluster test run (scripts/negotiated_cluster_test.sh): what
every client reported, the relays' final counters, and what is left in Redis.

usage: check_negotiated_cluster.py OUT_DIR kill|redis-restart|steady CLIENTS_EXIT_CODE

A match found in the last END_WINDOW_MS of the run may be one-sided in the log only
because the run ended before the other side heard of it; every other match must be mutual.
"""
import json
import os
import re
import statistics
import sys
from collections import Counter, defaultdict

END_WINDOW_MS = 3000
# of the killed relay's clients, at least this share must be matched again before the end;
# negotiated pairing is random bidding with no fairness bound (time to match has a long
# tail under contention), so the rest must only be shown to go on: welcomed by another
# relay and still searching at the end
MATCHED_AGAIN_SHARE = 0.9
SEARCHING = ("Looking", "Requesting", "Bidding", "Resting", "Matched")
# the killed relay's clients notice after the token timeout (3 s), then connect elsewhere
FAILOVER_WINDOW_MS = 8000

out, mode, clients_rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
fault_ms_abs = int(open(f"{out}/fault_ms").read())
relays = open(f"{out}/relays").read().split()
killed = open(f"{out}/killed").read().strip() if os.path.exists(f"{out}/killed") else None
errors = []
# exit 1: some client never matched (judged below, with the summary); anything else failed
if clients_rc not in (0, 1):
    errors.append(f"the clients exited with code {clients_rc}")

matches = defaultdict(list)  # (request, bid, accept) -> events
per_search = Counter()  # (client, search) -> matches
first_relay = {}
failovers = []
connected = defaultdict(list)  # client -> [(t_ms, relay)]
final = {}
summary = None
events = [json.loads(line) for line in open(f"{out}/clients.jsonl") if line.startswith("{")]
for e in events:
    kind = e["event"]
    if kind == "matched":
        matches[(e["request"], e["bid"], e["accept"])].append(e)
        per_search[(e["client"], e["search"])] += 1
        first_relay.setdefault(e["client"], e["relay"])
    elif kind == "failover":
        failovers.append(e)
    elif kind == "connected":
        connected[e["client"]].append((e["t_ms"], e["relay"]))
    elif kind == "final":
        final[e["client"]] = e["state"]
    elif kind == "summary":
        summary = e
if summary is None:
    errors.append("the clients printed no summary")
elif summary["never_matched"] > 0.01 * summary["clients"]:
    errors.append(f"{summary['never_matched']} of {summary['clients']} clients never matched")
end_ms = max((e.get("t_ms", 0) for e in events), default=0)
# the clients' t_ms counts from their start; the script wrote both on the wall clock
fault_ms = fault_ms_abs - int(open(f"{out}/clients_start_ms").read())

# every match is mutual
one_sided = []
for key, seen in matches.items():
    if len(seen) == 2:
        a, b = seen
        if (a["client"], a["other"]) != (b["other"], b["client"]) or a["role"] == b["role"] \
                or a["category"] != b["category"]:
            errors.append(f"match {key} seen differently: {seen}")
    elif len(seen) == 1:
        if seen[0]["t_ms"] < end_ms - END_WINDOW_MS:
            one_sided.append(seen[0])
    else:
        errors.append(f"match {key} seen {len(seen)} times: {seen}")
for e in one_sided[:10]:
    errors.append(f"one-sided match: client {e['client']} found {e['other']} "
                  f"(accept {e['accept']}) at {e['t_ms']} ms; the other side never did")
if len(one_sided) > 10:
    errors.append(f"... {len(one_sided)} one-sided matches in all")

# nobody matched twice in one search
twice = [k for k, n in per_search.items() if n > 1]
for client, search in twice[:10]:
    errors.append(f"client {client} matched twice in search {search}")

# the clients of the killed relay went on and were matched
moved = set()
if mode == "kill":
    moved = {f["client"] for f in failovers if f["from"] == killed}
    if not moved:
        errors.append(f"no client failed over from the killed relay {killed}")
    after = defaultdict(list)
    for f in failovers:
        if f["from"] == killed:
            after[f["client"]].append(f["t_ms"])
    went_on = {c for c, ts in after.items()
               if any(t > min(ts) and relay != killed for t, relay in connected.get(c, []))}
    not_back = sorted(set(after) - went_on)
    if not_back:
        errors.append(f"{len(not_back)} clients of the killed relay were never welcomed by "
                      f"another relay: {not_back[:10]}")
    due = {c for c, ts in after.items() if min(ts) < end_ms - FAILOVER_WINDOW_MS}
    again = {c for c in due if any(e["client"] == c and e["t_ms"] > min(after[c])
                                   for seen in matches.values() for e in seen)}
    if due and len(again) < MATCHED_AGAIN_SHARE * len(due):
        errors.append(f"only {len(again)} of the killed relay's {len(due)} clients were matched "
                      f"again (at least {MATCHED_AGAIN_SHARE:.0%} must be)")
    stuck = sorted(c for c in due - again if final.get(c) not in SEARCHING)
    if stuck:
        errors.append(f"{len(stuck)} clients of the killed relay stopped searching after the "
                      f"failover: {[(c, final.get(c)) for c in stuck[:10]]}")
    print(f"negotiated cluster test: of the killed relay's clients, {len(went_on)} of "
          f"{len(after)} were welcomed by another relay, {len(again)} of {len(due)} matched "
          f"again ({len(due - again)} still searching at the end)")
matched_after = {e["client"] for seen in matches.values() for e in seen
                 if e["t_ms"] > fault_ms + FAILOVER_WINDOW_MS}
every = {e["client"] for seen in matches.values() for e in seen}
if mode == "redis-restart":
    stranded = every - matched_after
    if len(matched_after) < MATCHED_AGAIN_SHARE * len(every):
        errors.append(f"only {len(matched_after)} of {len(every)} clients matched again after "
                      f"Redis restarted (at least {MATCHED_AGAIN_SHARE:.0%} must be)")
    stuck = sorted(c for c in stranded if final.get(c) not in SEARCHING)
    if stuck:
        errors.append(f"{len(stuck)} clients stopped searching after Redis restarted: "
                      f"{[(c, final.get(c)) for c in stuck[:10]]}")
    print(f"negotiated cluster test: {len(matched_after)} of {len(every)} clients matched again "
          f"after Redis restarted ({len(stranded)} still searching at the end)")

# no fact key outlived its frames; a player's latest connection is remembered a little
# longer (NEGOTIATED_CONNECTION_KEPT_FRAMES, 8 frames after its last write), and expires
CONNECTION_KEPT_FRAMES = 8
frame_ms = 1000 * float(open(f"{out}/frame").read())
keys = [line.split() for line in open(f"{out}/redis_keys.txt") if line.strip()]
# (a pttl of -2: the key expired between the scan and the pttl)
left = [(k, int(ttl)) for k, ttl in keys if "negotiated" in k and int(ttl) != -2
        and not (":conn:" in k and 0 <= int(ttl) <= CONNECTION_KEPT_FRAMES * frame_ms)]
if left:
    errors.append(f"{len(left)} keys left in Redis after the frames expired (key, pttl): {left[:10]}")

# figures
finals = {}
for relay in "abcde":
    path = f"{out}/{relay}.log"
    if os.path.exists(path):
        for line in open(path):
            if line.startswith("relay: final "):
                finals[relay] = json.loads(line[len("relay: final "):])
pairs = sum(1 for seen in matches.values() if len(seen) == 2)
waits = sorted(e["wait_ms"] for seen in matches.values() for e in seen if "wait_ms" in e)
stored = sum(f["facts_stored"] for f in finals.values())
trips = sum(f["store_round_trips"] for f in finals.values())
ran_s = max((f["ran_s"] for f in finals.values()), default=1.0)
cpu_s = sum(f.get("cpu_s", 0.0) for f in finals.values())
commands, scripts = 0, 0
for line in open(f"{out}/redis_commandstats.txt"):
    m = re.match(r"cmdstat_(\w+):calls=(\d+)", line)
    if m and m.group(1) not in ("ping", "info", "scan", "pttl", "command", "hello", "client"):
        commands += int(m.group(2))
        if m.group(1) in ("evalsha", "eval"):
            scripts += int(m.group(2))
p50 = statistics.median(waits) if waits else None
p99 = waits[int(len(waits) * 0.99)] if waits else None
print(f"negotiated cluster test: {pairs} mutual pairs ({len(matches)} matches seen), "
      f"{len(failovers)} failovers ({len(moved)} clients off the killed relay), "
      f"{sum(1 for s in matches.values() if len(s) == 2 and s[0]['relay'] != s[1]['relay'])} "
      f"pairs across relays")
print(f"negotiated cluster test: {len(relays)} relays: facts stored {stored} "
      f"({stored / ran_s:.0f}/s over {ran_s:.0f} s, relays that lived to the end), "
      f"time to match p50 {p50} ms p99 {p99} ms, "
      f"store round trips per pair {trips / max(pairs, 1):.1f}, "
      f"scripts per pair {scripts / max(pairs, 1):.1f}, Redis commands executed per pair "
      f"{commands / max(pairs, 1):.1f} (the scripts' own calls included; since Redis last started), "
      f"relay process CPU per pair {1000 * cpu_s / max(pairs, 1):.2f} ms")
lags = {r: (f.get("replication_lag_ms_p50"), f.get("replication_lag_ms_p99"),
             f.get("verdict_lag_ms_p50"), f.get("verdict_lag_ms_p99")) for r, f in finals.items()}
print("negotiated cluster test: facts posted elsewhere reached each relay within (p50, p99 "
      "bucket bounds, ms), and own posts had their verdicts within: "
      + ", ".join(f"{r}: {a}/{b} and {c}/{d}" for r, (a, b, c, d) in lags.items()))
print(f"negotiated cluster test: relays {finals}")
print(f"negotiated cluster test: clients {json.dumps(summary)}")
if errors:
    print(f"negotiated cluster test ({mode}) FAILED:")
    for e in errors[:50]:
        print("  " + e)
    sys.exit(1)
print(f"negotiated cluster test ({mode}): every match was mutual, nobody matched twice in one "
      f"search, no fact key outlived its frames"
      + (", the killed relay's clients failed over, were welcomed elsewhere and went on "
         "(matched again, or still searching)" if mode == "kill" else "")
      + (", the clients matched again after Redis restarted (or were still searching)"
         if mode == "redis-restart" else ""))
