#!/usr/bin/env python3
"""A burst of WebSocket clients against matchbox_server 0.15, pairing two by two.

    python3 scripts/matchbox_burst.py --url ws://127.0.0.1:3536 [--room burst] [--count 1000]
        [--timeout 60] [--max-lag-ms 100] [--answer]

The client side of `scripts/compare_matchbox.sh` (issue #16): COUNT connections open at once
(one asyncio task each, one process, one thread) to `ws://HOST:PORT/ROOM?next=2`, the room
of matchbox_server's default topology (`MatchmakingDemoTopology`) that groups its peers two
by two, in the order they arrive. What the server does (matchbox_server-0.15.0 src/topology.rs,
matchbox_signaling-0.15.0 src/signaling_server/handlers.rs):

- on every upgrade it sends `{"IdAssigned": "<uuid>"}` to the new peer;
- when a peer completes a group of `next` peers, it sends `{"NewPeer": "<newcomer>"}` to the
  peer already waiting, and nothing to the newcomer: in matchbox the waiting peer then
  starts the WebRTC handshake by signalling the newcomer through the server
  (`{"Signal": {"receiver": ..., "data": ...}}` in, `{"Signal": {"sender": ..., "data": ...}}`
  out);
- when a matched peer leaves, its partner gets `{"PeerLeft": ...}`.

So a pair is committed here, "both sides were told of each other", when the waiting peer
got `NewPeer(newcomer)` and the newcomer got one `Signal` from the waiting peer (which the
waiting peer sends as soon as it is told): one server push and one relayed message per pair,
the least a matchbox client needs before it can start a WebRTC connection. `--answer` adds
the newcomer's answer, relayed back (a pair then also needs the waiting peer to receive it),
as the offer/answer exchange of a real WebRTC connection would (ICE candidates not counted).
Each client closes its WebSocket (a close handshake) as soon as it knows its peer (with
`--answer`, the newcomer once it has sent its answer).

Prints JSON lines on stdout: `{"event":"start",...}` just before the first connection
opens (a measuring harness starts its CPU window there), then `{"event":"summary",...}` once
every client has paired and closed (or `--timeout`): `pairs` (both sides agree on each
other), `clients_paired`, `errors`, time from the burst's start to the pair being known to
both sides (`time_to_pair_ms`, p50/p99/max), to the WebSocket being open (`connect_ms`), and
this process's own event loop lag (a 5 ms timer's lateness: `loop_lag_ms`) and CPU.
`kept_up` is false when the loop's lag p99 was above `--max-lag-ms`: the client, not the
server, set the pace, and its times are not the server's.

Exit codes: 0 all paired and kept up; 1 fewer pairs than COUNT // 2, or errors; 2 bad
usage or `websockets` missing; 3 every pair formed but the client could not keep up.
"""

import argparse
import asyncio
import json
import resource
import sys
import time

try:
    from websockets.asyncio.client import connect
except ImportError:  # websockets < 13 or not installed
    print("matchbox_burst: needs the `websockets` package, version 13 or later "
          "(python3 -m pip install websockets)", file=sys.stderr)
    sys.exit(2)


def percentile(values, q):
    """Nearest rank, as the crate's stats do; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q * len(ordered) + 0.5)))
    return round(ordered[rank - 1], 3)


def spread(values):
    return {"p50": percentile(values, 0.5), "p99": percentile(values, 0.99),
            "max": round(max(values), 3) if values else None}


class Burst:
    def __init__(self, args):
        self.args = args
        self.url = f"{args.url.rstrip('/')}/{args.room}?next=2"
        self.results = [dict() for _ in range(args.count)]
        self.expected_paired = 2 * (args.count // 2)
        self.paired = 0
        self.all_paired = asyncio.Event()
        self.t0 = 0.0

    def ms(self):
        return (time.perf_counter() - self.t0) * 1000.0

    def told(self, r, peer):
        """This client now knows its peer."""
        r["peer"] = peer
        r["told_ms"] = self.ms()

    def done(self, r):
        r["done"] = True
        self.paired += 1
        if self.paired >= self.expected_paired:
            self.all_paired.set()

    async def client(self, i):
        r = self.results[i]
        try:
            async with connect(self.url, compression=None, proxy=None, ping_interval=None,
                               open_timeout=self.args.timeout,
                               close_timeout=self.args.timeout) as ws:
                r["connect_ms"] = self.ms()
                async for raw in ws:
                    ev = json.loads(raw)
                    if not isinstance(ev, dict):
                        continue
                    if "IdAssigned" in ev:
                        r["me"] = ev["IdAssigned"]
                    elif "NewPeer" in ev and "peer" not in r:
                        # we were waiting: we are told of the newcomer, and tell it of us
                        r["role"] = "waiting"
                        self.told(r, ev["NewPeer"])
                        await ws.send(json.dumps(
                            {"Signal": {"receiver": r["peer"], "data": {"offer": r.get("me")}}}))
                        if not self.args.answer:
                            break
                    elif "Signal" in ev:
                        sender = ev["Signal"].get("sender")
                        if r.get("role") == "waiting":
                            if sender == r["peer"]:  # its answer (--answer)
                                r["answer_ms"] = self.ms()
                                break
                        elif "peer" not in r:
                            r["role"] = "newcomer"
                            self.told(r, sender)
                            if self.args.answer:
                                await ws.send(json.dumps(
                                    {"Signal": {"receiver": sender,
                                                "data": {"answer": r.get("me")}}}))
                            break
                    elif "PeerLeft" in ev and ev["PeerLeft"] == r.get("peer"):
                        r["peer_left_early"] = True
                        break
                if "peer" in r:
                    self.done(r)
            # leaving the `async with` closed the WebSocket (close handshake)
            r["closed_ms"] = self.ms()
        except asyncio.CancelledError:
            r["cancelled"] = True
        except Exception as e:  # refused, reset, timed out: reported, counted
            r["error"] = f"{type(e).__name__}: {e}"

    async def lag_monitor(self, lags, stop):
        loop = asyncio.get_running_loop()
        period = 0.005
        while not stop.is_set():
            t = loop.time()
            await asyncio.sleep(period)
            lags.append((loop.time() - t - period) * 1000.0)

    async def run(self):
        lags, stop = [], asyncio.Event()
        monitor = asyncio.create_task(self.lag_monitor(lags, stop))
        await asyncio.sleep(0.05)  # the monitor's first ticks, before the burst
        cpu0 = time.process_time()
        print(json.dumps({"event": "start", "clients": self.args.count, "url": self.url,
                          "answer": self.args.answer, "at_ms": int(time.time() * 1000)}),
              flush=True)
        self.t0 = time.perf_counter()
        tasks = []
        for i in range(self.args.count):
            tasks.append(asyncio.create_task(self.client(i)))
            if i % 50 == 49:
                # all at once, but 50 connections to a loop iteration: 1,000 first steps
                # in one iteration would stall the loop (and its lag figure) for ~150 ms
                await asyncio.sleep(0)
        everyone = asyncio.ensure_future(asyncio.gather(*tasks, return_exceptions=True))
        paired = asyncio.create_task(self.all_paired.wait())
        # done when every client finished, or when all who can pair did (an odd COUNT
        # leaves one waiting forever), or at --timeout
        await asyncio.wait({everyone, paired}, timeout=self.args.timeout,
                           return_when=asyncio.FIRST_COMPLETED)
        for i, t in enumerate(tasks):
            # the unpaired are cancelled (their sockets close); the paired finish closing,
            # unless the timeout is up
            if not t.done() and ("peer" not in self.results[i] or not paired.done()):
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        paired.cancel()
        window_ms = self.ms()
        cpu_ms = (time.process_time() - cpu0) * 1000.0
        stop.set()
        await monitor
        return self.summary(lags, window_ms, cpu_ms)

    def summary(self, lags, window_ms, cpu_ms):
        rs = self.results
        by_id = {r["me"]: r for r in rs if "me" in r}
        pair_ms, pairs = [], 0
        for r in rs:
            if r.get("role") != "waiting":
                continue
            other = by_id.get(r["peer"])
            if other is None or other.get("peer") != r.get("me") or not other.get("done"):
                continue
            if self.args.answer and "answer_ms" not in r:
                continue
            pairs += 1
            pair_ms.append(max(r["told_ms"], other["told_ms"], r.get("answer_ms", 0.0)))
        errors = [r["error"] for r in rs if "error" in r]
        lag = spread(lags)
        kept_up = lag["p99"] is not None and lag["p99"] <= self.args.max_lag_ms
        return {
            "event": "summary", "clients": self.args.count, "pairs": pairs,
            "pairs_expected": self.args.count // 2,
            "clients_paired": sum(1 for r in rs if r.get("done")),
            "clients_closed": sum(1 for r in rs if "closed_ms" in r),
            "cancelled": sum(1 for r in rs if r.get("cancelled")),
            "peer_left_early": sum(1 for r in rs if r.get("peer_left_early")),
            "errors": len(errors), "first_errors": errors[:3],
            "time_to_pair_ms": spread(pair_ms),
            "connect_ms": spread([r["connect_ms"] for r in rs if "connect_ms" in r]),
            "burst_ms": round(window_ms, 1),
            "loop_lag_ms": lag, "max_lag_ms": self.args.max_lag_ms, "kept_up": kept_up,
            "client_cpu_ms": round(cpu_ms, 1),
            "at_ms": int(time.time() * 1000),
        }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="ws://HOST:PORT of matchbox_server")
    p.add_argument("--room", default="burst", help="the room (the URL's path)")
    p.add_argument("--count", type=int, default=1000, help="clients, all at once")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds for the whole burst")
    p.add_argument("--max-lag-ms", type=float, default=100.0,
                   help="the event loop lag p99 above which the client did not keep up")
    p.add_argument("--answer", action="store_true",
                   help="the newcomer answers the offer (relayed back) before a pair counts")
    args = p.parse_args()
    if args.count < 2:
        p.error("--count must be at least 2")
    # one socket per client: lift the open-files limit to its hard limit
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    summary = asyncio.run(Burst(args).run())
    print(json.dumps(summary), flush=True)
    if summary["pairs"] < summary["pairs_expected"] or summary["errors"]:
        sys.exit(1)
    sys.exit(0 if summary["kept_up"] else 3)


if __name__ == "__main__":
    main()
