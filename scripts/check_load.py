"""Checks a load-test run: server log + stats JSON against what every bot reported.

A match cancelled for a healthy bot's own answers (no flaw active, the server judged its
latency too high, or it did not answer or acknowledge) is a healthy player lost only when
the bot's own process kept up (`kept_up` in its `match_cancelled` line: no gap over 250 ms
between two of its checks in the 3 s before); one that did not is the bots' lag, counted
apart. Without a link conditioner (whose delay and loss are there to make players late)
such a loss fails the run.
"""
import json
import os
import re
import sys
from collections import defaultdict

# the reasons a cancel gives a player for its own answers (AtomicMatchCancelReason's text)
OWN_ANSWER_REASONS = ("your latency ", "you did not answer", "you did not acknowledge")

out = sys.argv[1]
conditioned = os.path.exists(f"{out}/conditioner.log")
stats = json.load(open(f"{out}/stats.json"))
committed = {}
for line in open(f"{out}/server.log"):
    m = re.match(r"server: match (\d+) committed: lobby (\S+) category \S+ players \[([\d, ]+)\]", line)
    if m:
        committed[int(m.group(1))] = (m.group(2), sorted(int(p) for p in m.group(3).split(",")))

found = defaultdict(list)  # match -> [(player, lobby, players)]
per_player = defaultdict(list)
summary = None
healthy_lost, healthy_own_lag = [], []  # cancels blaming a bot with no flaw active
for line in open(f"{out}/bots.jsonl"):
    e = json.loads(line)
    if e["event"] == "match_found":
        found[e["match"]].append((e["player"], e["lobby"], sorted(e["players"])))
        per_player[e["player"]].append(e["match"])
    elif e["event"] == "match_cancelled" and "flaw" in e and e["flaw"] is None \
            and e["reason"].startswith(OWN_ANSWER_REASONS):
        (healthy_lost if e.get("kept_up", True) else healthy_own_lag).append(e)
    elif e["event"] == "summary":
        summary = e

errors = []
if summary is None:
    errors.append("bots printed no summary")
for match, (lobby, players) in committed.items():
    reports = found.get(match, [])
    reporters = sorted(p for p, _, _ in reports)
    if reporters != players:
        errors.append(f"match {match}: committed for {players}, found by {reporters}")
    for p, l, ps in reports:
        if l != lobby or ps != players:
            errors.append(f"match {match}: player {p} saw lobby {l} players {ps}, server {lobby} {players}")
for match in found:
    if match not in committed:
        errors.append(f"match {match} was found by bots but never committed")
for player, matches in per_player.items():
    if len(matches) != len(set(matches)):
        errors.append(f"player {player} found the same match twice: {matches}")
for key in ("matches_in_flight", "lobbies_open", "players_queued"):
    if stats[key] != 0:
        errors.append(f"{key} is {stats[key]} after every bot left")
# a healthy player (one the commit machine said to re-queue, still on the same connection)
# that was not re-queued breaks the promise; the server counts every one
dropped = stats.get("healthy_players_dropped")
if dropped != 0:
    errors.append(f"healthy_players_dropped is {dropped} (must be 0)")
# a healthy bot whose process kept up, cancelled for its own answers: the server (or the
# transport) lost a healthy player; one whose process lagged is the bots' doing
if healthy_lost and not conditioned:
    for e in healthy_lost[:10]:
        errors.append(f"healthy player {e['player']} (its process kept up) lost match {e['match']}: "
                      f"{e['reason']} ({e['status']})")
if summary and "rounds_per_s_reached" in summary \
        and summary["rounds_per_s_reached"] < 0.9 * summary["rounds_per_s_asked"]:
    errors.append(f"the bots reached only {summary['rounds_per_s_reached']} rounds/s of the "
                  f"{summary['rounds_per_s_asked']} asked: they measured themselves")
if stats["matches_committed"] != len(committed) or not committed:
    errors.append(f"stats say {stats['matches_committed']} commits, log shows {len(committed)}")

print(f"load test: {len(committed)} matches committed, {stats['matches_rolled_back']} rolled back "
      f"{stats['rollbacks_by_status']}, {stats['players_requeued']} players re-queued, "
      f"{stats.get('healthy_players_dropped')} healthy players dropped")
print(f"load test: healthy players cancelled for their own answers: {len(healthy_lost)} while "
      f"their process kept up{' (through the conditioner: not counted)' if conditioned else ''}, "
      f"{len(healthy_own_lag)} while it lagged (the bots' lag, not counted)")
print(f"load test: bots summary {json.dumps(summary)}")
print(f"load test: server time to commit {stats['time_to_commit_ms']}, time in queue {stats['time_in_queue_ms']}")
if errors:
    print("load test FAILED:")
    for e in errors[:50]:
        print("  " + e)
    sys.exit(1)
print("load test: every committed match was found by exactly its players; no player in two matches")
