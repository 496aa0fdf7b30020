"""Checks a cluster-test run (scripts/cluster_test.sh): the nodes' logs and stats, what
every bot reported, and what is left in Redis.

A player the fault cut off (a bot of the killed node, or any bot while Redis restarted) may
miss a match committed within FAULT_WINDOW_MS of the fault: its node or the store's lobby
is gone, so it counts as disconnected. Everything else must hold exactly.

usage: check_cluster.py OUT_DIR kill|redis-restart
"""
import json
import os
import re
import sys
from collections import defaultdict

FAULT_WINDOW_MS = 6000
# a bot stays in a lobby at least this long before it leaves and queues again
MIN_LOBBY_MS = 300
OWN_ANSWER_REASONS = ("your latency ", "you did not answer", "you did not acknowledge")
# records that may outlive every node: the counters seeded from Redis's clock
COUNTERS = ("epoch", "mseq", "stamp")

out, mode = sys.argv[1], sys.argv[2]
fault_ms = int(open(f"{out}/fault_ms").read())
killed = open(f"{out}/killed").read().strip() if os.path.exists(f"{out}/killed") else None
nodes = ["a", "b", "c"]
errors = []

committed = {}  # match -> (lobby, players, at_ms, node)
rolled_back = defaultdict(int)
pattern = re.compile(r"server: match (\d+) committed: lobby (\S+) category \S+ players \[([\d, ]*)\] at_ms (\d+)")
for node in nodes:
    for line in open(f"{out}/{node}.log"):
        m = pattern.search(line)
        if m:
            match = int(m.group(1))
            if match in committed:
                errors.append(f"match {match} committed twice ({committed[match][3]} and {node})")
            players = sorted(int(p) for p in m.group(3).split(",") if p.strip())
            committed[match] = (m.group(2), players, int(m.group(4)), node)
        elif "rolled back (" in line:
            rolled_back[line.split("rolled back (")[1].split(")")[0]] += 1

start, summary = None, None
found = defaultdict(list)  # match -> [(player, lobby, players, at_ms)]
per_player = defaultdict(list)  # player -> [(at_ms, match)]
cancelled = defaultdict(list)  # player -> [(at_ms, requeued)]
reconnected = {}  # player -> first reconnect at_ms after the fault
bot_of = {}
lost = []
end_ms = 0
for line in open(f"{out}/bots.jsonl"):
    e = json.loads(line)
    kind = e["event"]
    end_ms = max(end_ms, e.get("at_ms", 0))
    if "bot" in e and "player" in e:
        bot_of[e["player"]] = e["bot"]
    if kind == "start":
        start = e
    elif kind == "summary":
        summary = e
    elif kind == "match_found":
        found[e["match"]].append((e["player"], e["lobby"], sorted(e["players"]), e["at_ms"]))
        per_player[e["player"]].append((e["at_ms"], e["match"]))
    elif kind == "match_cancelled":
        cancelled[e["player"]].append((e["at_ms"], e["requeued"]))
        if not e["requeued"] and e.get("kept_up", True) and e["reason"].startswith(OWN_ANSWER_REASONS) \
                and abs(e["at_ms"] - fault_ms) > FAULT_WINDOW_MS:
            lost.append(e)
    elif kind == "reconnect" and e["at_ms"] >= fault_ms and e["player"] not in reconnected:
        reconnected[e["player"]] = e["at_ms"]

if start is None or summary is None:
    errors.append("the bots printed no start or no summary line")
servers = len(start["servers"]) if start else 3


def cut_off(player, at_ms):
    """Whether the fault may have kept `player` from a match decided at `at_ms`."""
    if abs(at_ms - fault_ms) > FAULT_WINDOW_MS:
        return False
    if mode == "redis-restart":
        return True
    return bot_of.get(player, -1) % servers == nodes.index(killed)


# every committed match was seen by exactly its players
for match, (lobby, players, at_ms, node) in committed.items():
    reports = found.get(match, [])
    reporters = sorted(p for p, _, _, _ in reports)
    missing = [p for p in players if p not in reporters and not cut_off(p, at_ms)]
    extra = [p for p in reporters if p not in players]
    if missing or extra:
        errors.append(f"match {match} ({node}): committed for {players}, seen by {reporters}")
    for p, seen_lobby, seen_players, _ in reports:
        if seen_lobby != lobby or seen_players != players:
            errors.append(f"match {match}: player {p} saw {seen_lobby} {seen_players}, node {lobby} {players}")
for match, reports in found.items():
    first = min(t for _, _, _, t in reports)
    # a node killed right after a commit point never logged it
    if match not in committed and abs(first - fault_ms) > FAULT_WINDOW_MS:
        errors.append(f"match {match} was seen by bots but no node committed it")
    if len({(lobby, tuple(players)) for _, lobby, players, _ in reports}) > 1:
        errors.append(f"match {match} was seen with different lobbies or players: {reports}")

# nobody in two matches: no match seen twice, and a player's matches at least a lobby apart
in_match = defaultdict(list)
for match, (_, players, at_ms, _) in committed.items():
    for p in players:
        in_match[p].append((at_ms, match))
for player, matches in in_match.items():
    matches.sort()
    for (t1, m1), (t2, m2) in zip(matches, matches[1:]):
        if t2 - t1 < MIN_LOBBY_MS:
            errors.append(f"player {player} in matches {m1} and {m2} {t2 - t1} ms apart")
for player, seen in per_player.items():
    ids = [m for _, m in seen]
    if len(ids) != len(set(ids)):
        errors.append(f"player {player} was told of one match twice")

for e in lost[:10]:
    errors.append(f"healthy player {e['player']} (its process kept up) dropped from match {e['match']} "
                  f"outside the fault: {e['reason']} ({e['status']})")

matched_after = {p for p, seen in per_player.items() if any(t > fault_ms + FAULT_WINDOW_MS for t, _ in seen)}
if mode == "kill":
    own = {p for p, b in bot_of.items() if b % servers == nodes.index(killed)}
    # opponents on the other nodes told their match was off, back in the queue
    requeued = {p for p, cs in cancelled.items() if p not in own
                and any(fault_ms <= t <= fault_ms + FAULT_WINDOW_MS and r for t, r in cs)}
    if not requeued:
        errors.append("no opponent of the killed node's players was re-queued")
    not_again = sorted(p for p in requeued if not any(t > fault_ms for t, _ in per_player.get(p, [])))
    if not_again:
        errors.append(f"{len(not_again)} re-queued opponents never matched again: {not_again[:10]}")
    # the killed node's bots notice when netcode times their connection out, then connect to
    # the next node: each that was back well before the end matched again
    back = {p: t for p, t in reconnected.items() if p in own}
    if len(back) < len(own) // 2:
        errors.append(f"only {len(back)} of the killed node's {len(own)} bots reconnected")
    stranded = sorted(p for p, t in back.items() if t < end_ms - 8000
                      and not any(at > t for at, _ in per_player.get(p, [])))
    if stranded:
        errors.append(f"{len(stranded)} bots of the killed node reconnected but never matched again: "
                      f"{stranded[:10]}")
    print(f"cluster test: {len(requeued)} opponents re-queued after the kill, all matched again; "
          f"{len(back)} of the killed node's {len(own)} bots reconnected to another node, "
          f"{len(own & matched_after)} matched again")
else:
    every = set(bot_of)
    stranded = sorted(p for p in every if p not in matched_after)
    if stranded:
        errors.append(f"{len(stranded)} bots never matched again after the restart: {stranded[:10]}")
    print(f"cluster test: {len(every & matched_after)} of {len(every)} bots matched again after the restart")

# nothing left in Redis but the counters, and a dead node's inbox on its way out (posted to
# after a survivor closed it, it expires a minute after the last post)
keys = [line.split() for line in open(f"{out}/redis_keys.txt") if line.strip()]
left = [(k, int(ttl)) for k, ttl in keys if k.split(":", 1)[-1] not in COUNTERS
        and not (":inbox:" in k and 0 < int(ttl) <= 60)]
if left:
    errors.append(f"{len(left)} keys left in Redis (key, ttl): {left[:10]}")

stats = {}
for node in nodes:
    if os.path.exists(f"{out}/{node}.json"):
        try:
            stats[node] = json.load(open(f"{out}/{node}.json"))
        except json.JSONDecodeError:
            stats[node] = {}
if mode == "redis-restart" and not any(s.get("leases_lost", 0) for s in stats.values()):
    errors.append("no node saw its lease lost when Redis restarted empty")
# the bots' own count of matches some of their players did not report includes the ones the
# fault cut off: the checks above tell those apart
if summary and summary["rounds_per_s_reached"] < 0.9 * summary["rounds_per_s_asked"]:
    errors.append(f"the bots reached only {summary['rounds_per_s_reached']} rounds/s of the "
                  f"{summary['rounds_per_s_asked']} asked: they measured themselves")
if len(committed) == 0:
    errors.append("no match committed")

per_node = {n: sum(1 for c in committed.values() if c[3] == n) for n in nodes}
# Redis round trips per committed match, over the nodes that lived to the end (their last
# stats are final); joins, claims, commit points, reconciliation and the inboxes included
alive = [n for n in nodes if n != killed and n in stats]
trips = sum(stats[n].get("store_round_trips", 0) + stats[n].get("inbox_round_trips", 0) for n in alive)
done = sum(stats[n].get("matches_committed", 0) for n in alive)
if done:
    store_trips = sum(stats[n].get("store_round_trips", 0) for n in alive)
    print(f"cluster test: Redis round trips per committed match: {trips / done:.1f} "
          f"({store_trips / done:.1f} store scripts, {(trips - store_trips) / done:.1f} inbox)")
print(f"cluster test: {len(committed)} matches committed {per_node}, rolled back {dict(rolled_back)}")
print(f"cluster test: node stats { {n: {k: s.get(k) for k in ('matches_committed', 'leases_lost', 'nodes_reaped')} for n, s in stats.items()} }")
print(f"cluster test: bots summary {json.dumps(summary)}")
print(f"cluster test: Redis keys at the end: {keys}")
if errors:
    print(f"cluster test ({mode}) FAILED:")
    for e in errors[:50]:
        print("  " + e)
    sys.exit(1)
print(f"cluster test ({mode}): every committed match was seen by exactly its players; nobody in "
      "two matches; nothing left in Redis")
