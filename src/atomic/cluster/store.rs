//! [`AtomicRedisStore`]: every rule of [`AtomicStore`] on one Redis, each operation one Lua
//! script (so it is atomic across every node of the cluster).

use std::time::Duration;

use ::redis::Script;

use crate::atomic::core::store::{
    AtomicClaim, AtomicCommit, AtomicNodeLease, AtomicReaped, AtomicStore, AtomicStoreError,
    AtomicStoreJoin, AtomicStoreLimits, AtomicStoreLobby, AtomicStoreMatch, AtomicStorePlayer,
    AtomicStoreSeat, AtomicStoreStats, AtomicStoreTicket,
};
use crate::shared::player::PlayerId;
use crate::shared::redis::{RedisLink, RedisLinkError};

const COMMON: &str = include_str!("lua/common.lua");

/// The scripts, each prefixed with the shared helpers.
struct Scripts {
    acquire: Script,
    renew: Script,
    release: Script,
    join: Script,
    leave: Script,
    ready: Script,
    front: Script,
    claim: Script,
    open_lobby: Script,
    commit: Script,
    rollback: Script,
    leave_lobby: Script,
    dead: Script,
    reap: Script,
    read: Script,
    residue: Script,
    stats: Script,
}

fn script(body: &str) -> Script {
    Script::new(&format!("{COMMON}\n{body}"))
}

impl Scripts {
    fn new() -> Self {
        Self {
            acquire: script(include_str!("lua/acquire.lua")),
            renew: script(include_str!("lua/renew.lua")),
            release: script(include_str!("lua/release.lua")),
            join: script(include_str!("lua/join.lua")),
            leave: script(include_str!("lua/leave.lua")),
            ready: script(include_str!("lua/ready.lua")),
            front: script(include_str!("lua/front.lua")),
            claim: script(include_str!("lua/claim.lua")),
            open_lobby: script(include_str!("lua/open_lobby.lua")),
            commit: script(include_str!("lua/commit.lua")),
            rollback: script(include_str!("lua/rollback.lua")),
            leave_lobby: script(include_str!("lua/leave_lobby.lua")),
            dead: script(include_str!("lua/dead.lua")),
            reap: script(include_str!("lua/reap.lua")),
            read: script(include_str!("lua/read.lua")),
            residue: script(include_str!("lua/residue.lua")),
            stats: script(include_str!("lua/stats.lua")),
        }
    }
}

/// The store of a cluster: every node connects its own `AtomicRedisStore` to the same
/// Redis, under the same key prefix.
///
/// Blocking: each call is one round trip (a script, loaded once per connection and re-sent
/// when a restarted Redis forgot it). Call it off the frame, from the bridge thread of
/// `AtomicRedisBridge`. A call that cannot reach Redis returns
/// [`AtomicStoreError::Unavailable`] and the next call reconnects.
///
/// Keys: everything lives under `PREFIX:`, and a category's queue under the hash tag
/// `PREFIX:q:{CATEGORY}`. The scripts also touch the player and match records outside the
/// tag, so they need one Redis (or one Redis Cluster slot for the whole prefix).
pub struct AtomicRedisStore {
    /// The connection; its calls are the scripts run (each one round trip), for the
    /// figures of commands per match.
    link: RedisLink,
    scripts: Scripts,
}

impl std::fmt::Debug for AtomicRedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicRedisStore")
            .field("prefix", &self.link.prefix())
            .field("connected", &self.link.is_connected())
            .field("calls", &self.link.calls())
            .finish_non_exhaustive()
    }
}

/// A failed call as the store's error: only an unreachable Redis is unavailable.
fn store_error(error: RedisLinkError) -> AtomicStoreError {
    match error {
        RedisLinkError::Unavailable(why) => AtomicStoreError::Unavailable(why),
        RedisLinkError::Busy(why) | RedisLinkError::Corrupt(why) => AtomicStoreError::Corrupt(why),
    }
}

fn corrupt(what: &str, reply: &[String]) -> AtomicStoreError {
    AtomicStoreError::Corrupt(format!("{what}: {reply:?}"))
}

fn number(text: &str) -> Result<u64, AtomicStoreError> {
    text.parse()
        .map_err(|_| AtomicStoreError::Corrupt(format!("not a number: {text:?}")))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl AtomicRedisStore {
    /// A store on the Redis at `url` (`redis://host:port/db`), under `prefix`. Connects
    /// lazily: a Redis that is down makes the first call fail, not this one.
    pub fn open(url: &str, prefix: &str) -> Result<Self, AtomicStoreError> {
        Ok(Self {
            link: RedisLink::open(url, prefix).map_err(store_error)?,
            scripts: Scripts::new(),
        })
    }

    /// How long one call may wait for Redis (connect, read and write; default 500 ms).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.link.set_timeout(timeout);
    }

    /// Scripts run so far (each one round trip to Redis).
    pub fn calls(&self) -> u64 {
        self.link.calls()
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.link.prefix()
    }

    /// Runs a script with the prefix as its first argument, then `args`.
    fn run(
        &mut self,
        pick: fn(&Scripts) -> &Script,
        args: &[&str],
    ) -> Result<Vec<String>, AtomicStoreError> {
        let args: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
        self.link
            .run(pick(&self.scripts), &[], &args)
            .map_err(store_error)
    }

    /// Runs a write of `lease`'s node: [`AtomicStoreError::LeaseLost`] if the script says
    /// the lease is not held.
    fn write(
        &mut self,
        pick: fn(&Scripts) -> &Script,
        lease: &AtomicNodeLease,
        args: &[&str],
    ) -> Result<Vec<String>, AtomicStoreError> {
        let epoch = lease.epoch.to_string();
        let mut all = vec![lease.node.as_str(), epoch.as_str()];
        all.extend_from_slice(args);
        let reply = self.run(pick, &all)?;
        if reply.first().map(String::as_str) == Some("lease") {
            return Err(AtomicStoreError::LeaseLost);
        }
        Ok(reply)
    }

    fn yes(reply: &[String], what: &str) -> Result<bool, AtomicStoreError> {
        match reply.first().map(String::as_str) {
            Some("yes") => Ok(true),
            Some("no") => Ok(false),
            _ => Err(corrupt(what, reply)),
        }
    }
}

fn players_of(ids: &[String]) -> Result<Vec<PlayerId>, AtomicStoreError> {
    ids.iter().map(|p| number(p)).collect()
}

fn reaped_of(reply: &[String]) -> Result<AtomicReaped, AtomicStoreError> {
    let [removed, left, rest @ ..] = reply else {
        return Err(corrupt("reap", reply));
    };
    let split = rest
        .iter()
        .position(|x| x == "|")
        .ok_or_else(|| corrupt("reap", reply))?;
    let matches = rest[..split]
        .iter()
        .map(|m| number(m))
        .collect::<Result<_, _>>()?;
    let mut requeued = Vec::new();
    for pair in rest[split + 1..].chunks(2) {
        let [player, node] = pair else {
            return Err(corrupt("reap", reply));
        };
        requeued.push((number(player)?, node.clone()));
    }
    Ok(AtomicReaped {
        tickets_removed: number(removed)? as usize,
        matches_rolled_back: matches,
        requeued,
        left_lobbies: number(left)? as usize,
    })
}

impl AtomicStore for AtomicRedisStore {
    fn acquire_lease(
        &mut self,
        node: &str,
        ttl: Duration,
    ) -> Result<AtomicNodeLease, AtomicStoreError> {
        let ttl = millis(ttl).to_string();
        let reply = self.run(|s| &s.acquire, &[node, &ttl])?;
        match reply.as_slice() {
            [ok, epoch] if ok == "ok" => Ok(AtomicNodeLease {
                node: node.to_owned(),
                epoch: number(epoch)?,
            }),
            [taken] if taken == "taken" => Err(AtomicStoreError::NodeNameTaken(node.to_owned())),
            _ => Err(corrupt("acquire", &reply)),
        }
    }

    fn renew_lease(
        &mut self,
        lease: &AtomicNodeLease,
        ttl: Duration,
    ) -> Result<(), AtomicStoreError> {
        let ttl = millis(ttl).to_string();
        self.write(|s| &s.renew, lease, &[&ttl]).map(drop)
    }

    fn release_lease(&mut self, lease: &AtomicNodeLease) -> Result<(), AtomicStoreError> {
        self.write(|s| &s.release, lease, &[]).map(drop)
    }

    fn join(
        &mut self,
        lease: &AtomicNodeLease,
        player: PlayerId,
        category: &str,
        limits: AtomicStoreLimits,
        seniority: Option<u64>,
    ) -> Result<AtomicStoreJoin, AtomicStoreError> {
        let capacity = limits.capacity.min(u32::MAX as usize).to_string();
        let max = limits.max_categories.min(u32::MAX as usize).to_string();
        let seniority = seniority.map(|s| s.to_string()).unwrap_or_default();
        let player = player.to_string();
        let args = [player.as_str(), category, &capacity, &max, &seniority];
        let reply = self.write(|s| &s.join, lease, &args)?;
        Ok(match reply.as_slice() {
            [tag, at] if tag == "queued" => AtomicStoreJoin::Queued {
                enqueued_at_us: number(at)?,
            },
            [tag] if tag == "already" => AtomicStoreJoin::AlreadyQueued,
            [tag, node] if tag == "held" => {
                AtomicStoreJoin::HeldByAnotherNode { node: node.clone() }
            }
            [tag] if tag == "full" => AtomicStoreJoin::Full {
                capacity: limits.capacity,
            },
            [tag] if tag == "categories" => AtomicStoreJoin::TooManyCategories {
                max: limits.max_categories,
            },
            _ => return Err(corrupt("join", &reply)),
        })
    }

    fn leave(
        &mut self,
        lease: &AtomicNodeLease,
        player: PlayerId,
    ) -> Result<bool, AtomicStoreError> {
        let reply = self.write(|s| &s.leave, lease, &[&player.to_string()])?;
        Self::yes(&reply, "leave")
    }

    fn ready_categories(&mut self, group_size: usize) -> Result<Vec<String>, AtomicStoreError> {
        self.run(|s| &s.ready, &[&group_size.max(1).to_string()])
    }

    fn front(
        &mut self,
        category: &str,
        count: usize,
    ) -> Result<Vec<AtomicStoreTicket>, AtomicStoreError> {
        let count = count.clamp(1, 1 << 20).to_string();
        let reply = self.run(|s| &s.front, &[category, &count])?;
        reply
            .chunks(3)
            .map(|t| match t {
                [player, at, node] => Ok(AtomicStoreTicket {
                    player: number(player)?,
                    enqueued_at_us: number(at)?,
                    node: node.clone(),
                }),
                _ => Err(corrupt("front", &reply)),
            })
            .collect()
    }

    fn claim(
        &mut self,
        lease: &AtomicNodeLease,
        category: &str,
        players: &[PlayerId],
    ) -> Result<AtomicClaim, AtomicStoreError> {
        let ids: Vec<String> = players.iter().map(u64::to_string).collect();
        let mut args = vec![category];
        args.extend(ids.iter().map(String::as_str));
        let reply = self.write(|s| &s.claim, lease, &args)?;
        match reply.as_slice() {
            [tag, m] if tag == "claimed" => Ok(AtomicClaim::Claimed {
                match_id: number(m)?,
            }),
            [tag, p] if tag == "stale" => Ok(AtomicClaim::Stale { player: number(p)? }),
            _ => Err(corrupt("claim", &reply)),
        }
    }

    fn open_lobby(
        &mut self,
        lease: &AtomicNodeLease,
        match_id: u64,
        lobby_id: u64,
        code: &str,
    ) -> Result<bool, AtomicStoreError> {
        let (m, l) = (match_id.to_string(), lobby_id.to_string());
        let reply = self.write(|s| &s.open_lobby, lease, &[&m, &l, code])?;
        Self::yes(&reply, "open_lobby")
    }

    fn commit(
        &mut self,
        lease: &AtomicNodeLease,
        match_id: u64,
    ) -> Result<AtomicCommit, AtomicStoreError> {
        let reply = self.write(|s| &s.commit, lease, &[&match_id.to_string()])?;
        Ok(match reply.as_slice() {
            [tag] if tag == "committed" => AtomicCommit::Committed,
            [tag] if tag == "not_forming" => AtomicCommit::NotForming,
            [tag] if tag == "no_lobby" => AtomicCommit::NoLobby,
            [tag, p] if tag == "gone" => AtomicCommit::PlayerNodeGone { player: number(p)? },
            _ => return Err(corrupt("commit", &reply)),
        })
    }

    fn rollback(
        &mut self,
        lease: &AtomicNodeLease,
        match_id: u64,
        requeue: &[PlayerId],
    ) -> Result<Vec<PlayerId>, AtomicStoreError> {
        let m = match_id.to_string();
        let ids: Vec<String> = requeue.iter().map(u64::to_string).collect();
        let mut args = vec![m.as_str()];
        args.extend(ids.iter().map(String::as_str));
        let reply = self.write(|s| &s.rollback, lease, &args)?;
        match reply.split_first() {
            Some((ok, requeued)) if ok == "ok" => players_of(requeued),
            _ => Err(corrupt("rollback", &reply)),
        }
    }

    fn leave_lobby(
        &mut self,
        lease: &AtomicNodeLease,
        lobby_id: u64,
        player: PlayerId,
    ) -> Result<bool, AtomicStoreError> {
        let (l, p) = (lobby_id.to_string(), player.to_string());
        let reply = self.write(|s| &s.leave_lobby, lease, &[&l, &p])?;
        Self::yes(&reply, "leave_lobby")
    }

    fn dead_nodes(&mut self) -> Result<Vec<String>, AtomicStoreError> {
        self.run(|s| &s.dead, &[])
    }

    fn reap(
        &mut self,
        lease: &AtomicNodeLease,
        dead: &str,
    ) -> Result<AtomicReaped, AtomicStoreError> {
        let reply = self.write(|s| &s.reap, lease, &[dead])?;
        match reply.split_first() {
            Some((tag, _)) if tag == "alive" => Ok(AtomicReaped::default()),
            Some((tag, rest)) if tag == "ok" => reaped_of(rest),
            _ => Err(corrupt("reap", &reply)),
        }
    }

    fn player(&mut self, player: PlayerId) -> Result<Option<AtomicStorePlayer>, AtomicStoreError> {
        let reply = self.run(|s| &s.read, &["player", &player.to_string()])?;
        let [node, seat, place, at] = reply.as_slice() else {
            return if reply.is_empty() {
                Ok(None)
            } else {
                Err(corrupt("player", &reply))
            };
        };
        let seat = match seat.as_str() {
            "q" => AtomicStoreSeat::Queued {
                category: place.clone(),
            },
            "m" => AtomicStoreSeat::Matching {
                match_id: number(place)?,
            },
            "l" => AtomicStoreSeat::InLobby {
                lobby_id: number(place)?,
            },
            _ => return Err(corrupt("player", &reply)),
        };
        Ok(Some(AtomicStorePlayer {
            node: node.clone(),
            seat,
            enqueued_at_us: number(at)?,
        }))
    }

    fn match_record(
        &mut self,
        match_id: u64,
    ) -> Result<Option<AtomicStoreMatch>, AtomicStoreError> {
        let reply = self.run(|s| &s.read, &["match", &match_id.to_string()])?;
        let [coordinator, category, lobby, code, players @ ..] = reply.as_slice() else {
            return if reply.is_empty() {
                Ok(None)
            } else {
                Err(corrupt("match", &reply))
            };
        };
        let lobby = match lobby.as_str() {
            "" => None,
            id => Some((number(id)?, code.clone())),
        };
        Ok(Some(AtomicStoreMatch {
            coordinator: coordinator.clone(),
            category: category.clone(),
            players: players_of(players)?,
            lobby,
        }))
    }

    fn lobby(&mut self, lobby_id: u64) -> Result<Option<AtomicStoreLobby>, AtomicStoreError> {
        let reply = self.run(|s| &s.read, &["lobby", &lobby_id.to_string()])?;
        match reply.split_first() {
            None => Ok(None),
            Some((code, members)) => Ok(Some(AtomicStoreLobby {
                code: code.clone(),
                members: players_of(members)?,
            })),
        }
    }

    fn round_trips(&self) -> u64 {
        self.link.calls()
    }

    fn coordinated_by(&mut self, node: &str) -> Result<Vec<u64>, AtomicStoreError> {
        let reply = self.run(|s| &s.read, &["coordinated", node])?;
        let mut ids = reply
            .iter()
            .map(|id| number(id))
            .collect::<Result<Vec<_>, _>>()?;
        ids.sort_unstable();
        Ok(ids)
    }

    fn stats(&mut self) -> Result<AtomicStoreStats, AtomicStoreError> {
        let reply = self.run(|s| &s.stats, &[])?;
        let [live, forming, categories @ ..] = reply.as_slice() else {
            return Err(corrupt("stats", &reply));
        };
        let mut queued_by_category = std::collections::BTreeMap::new();
        for pair in categories.chunks(2) {
            let [category, tickets] = pair else {
                return Err(corrupt("stats", &reply));
            };
            queued_by_category.insert(category.clone(), number(tickets)? as usize);
        }
        Ok(AtomicStoreStats {
            live_nodes: number(live)? as usize,
            matches_forming: number(forming)? as usize,
            queued_by_category,
        })
    }

    fn match_floor(&mut self) -> Result<u64, AtomicStoreError> {
        let reply = self.run(|s| &s.read, &["floor", "0"])?;
        match reply.as_slice() {
            [n] => number(n),
            _ => Err(corrupt("floor", &reply)),
        }
    }

    fn residue(&mut self) -> Result<usize, AtomicStoreError> {
        let reply = self.run(|s| &s.residue, &[])?;
        match reply.as_slice() {
            [n] => Ok(number(n)? as usize),
            _ => Err(corrupt("residue", &reply)),
        }
    }
}
