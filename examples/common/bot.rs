//! A load-generating bot: one headless Bevy client app with its own UDP connection.
//! Shared by the `bots`, `demo`, `flood` and `bench` examples (each also includes
//! `identity.rs`, as `crate::identity`).
//!
//! A bot with [`Bot::reconnect`] set (the `bots` example) comes back on its own: on the
//! server's closing notice, or a lost connection, it reconnects with backoff to the next
//! server of its list and queues again ([`reconnect_if_due`] opens the connection).
//! A load tool checks each bot once a round with [`tick`] (which updates its app only when
//! it has something to do, and notes whether the bot's own process kept up: `kept_up`).

// each example that includes this module uses a different part of it
#![allow(dead_code)]

use std::io::ErrorKind::WouldBlock;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bevy::app::{MainScheduleOrder, RunFixedMainLoop, TaskPoolOptions, TaskPoolPlugin};
use bevy::diagnostic::FrameCountPlugin;
use bevy::ecs::schedule::{ScheduleLabel, SingleThreadedExecutor};
use bevy::prelude::*;
use bevy::state::app::StatesPlugin;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::shared::clock::unix_now;
use bevy_atomic_matchmaking::testing::atomic::AtomicClientFaults;
use bevy_atomic_matchmaking::transport::{
    DEFAULT_TOKEN_VALIDITY, MatchmakingAckPolicy, MatchmakingQuietClientTransport,
    insert_insecure_netcode_client, insert_quiet_secure_client, insert_secure_netcode_client,
};
use bevy_renet::RenetClient;
use bevy_renet::netcode::{ClientAuthentication, NetcodeClientTransport, NetcodeDisconnectReason};
use serde_json::{Value, json};

use crate::identity::{ClientTransport, Identity};

/// How a flaky bot misbehaves once its time comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// Drops its connection when a match is proposed to it.
    DisconnectWhenProposed,
    /// Never acknowledges proposals.
    NeverAcknowledge,
    /// Answers health pings 800 ms late (above the 500 ms limit).
    SlowPongs,
}

impl Flaw {
    pub fn random(rng: &mut fastrand::Rng) -> Self {
        match rng.u8(0..3) {
            0 => Flaw::DisconnectWhenProposed,
            1 => Flaw::NeverAcknowledge,
            _ => Flaw::SlowPongs,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Flaw::DisconnectWhenProposed => "disconnect_when_proposed",
            Flaw::NeverAcknowledge => "never_acknowledge",
            Flaw::SlowPongs => "slow_pongs",
        }
    }
}

/// A bot's plan and what it saw.
#[derive(Resource, Debug, Default)]
pub struct Bot {
    pub index: usize,
    pub player: u64,
    pub category: String,
    pub flaw: Option<(Flaw, Duration)>,
    /// Whether the bot keeps re-queueing after each match until the run ends; without it
    /// the bot closes its connection as soon as it is matched once.
    pub rematch: bool,
    /// Set at the end of a run: stop queueing, leave the queue, finish what is in flight.
    pub stopping: bool,
    last_leave: Option<Duration>,
    pub lines: Vec<String>,
    pub matched: u64,
    pub cancelled: u64,
    pub errors: u64,
    pub waits: Vec<Duration>,
    /// Matches this bot was found in, as (match id, lobby code, sorted players): match ids
    /// start again on a restarted server, lobby codes tell its matches apart.
    pub matches: Vec<(u64, String, Vec<u64>)>,
    joined_at: Option<Duration>,
    leave_lobby_at: Option<Duration>,
    rejoin_at: Option<Duration>,
    flaw_active: bool,
    pub gone: bool,
    /// The connection opened at least once.
    pub connected_once: bool,
    /// The servers and identity it connects with (set by [`bot_app`]), to explain a refusal
    /// and to reconnect.
    link: Option<Link>,
    /// A connection that never opened was reported.
    refusal_reported: bool,
    /// Reconnect (with backoff, to the next server) after the server's closing notice or a
    /// lost connection, until [`Bot::stopping`]. Off unless set (the `bots` example).
    pub reconnect: bool,
    /// Closing notices received (`server_closing` lines).
    pub server_closing: u64,
    /// Connections that opened again after a notice or a loss (`reconnect` lines).
    pub reconnects: u64,
    /// Cancelled matches (`match_cancelled` lines) while the bot's own checks kept up
    /// (`kept_up`), and while they did not: its own process was too slow to answer.
    pub cancelled_kept_up: u64,
    pub cancelled_own_lag: u64,
    /// Where the bot stands with its connection.
    conn: Conn,
    /// When its app needs an update, and how far apart its checks were.
    pacing: Pacing,
    /// It wrote a request (or opened a connection) the plugin carries out in the next update.
    asked: bool,
    rng: fastrand::Rng,
}

/// Checks ([`tick`]) further apart than this: half the server's 500 ms round-trip limit.
pub const OWN_LAG_LIMIT: Duration = Duration::from_millis(250);
/// How far back a cancelled match looks for such a gap (then the bot did not keep up).
pub const OWN_LAG_WINDOW: Duration = Duration::from_secs(3);
/// How often a stopping bot leaves the queue at most (again after a rollback re-queued it).
const LEAVE_EVERY: Duration = Duration::from_millis(500);
/// Updates in the rounds after one that left something to do (the plugin sends what the
/// bot wrote in the next update; a state change applies in the next one).
const FOLLOW_UPS: u8 = 1;

/// When a bot's app needs an update ([`tick`]), and the gaps between its checks.
#[derive(Debug, Default)]
struct Pacing {
    /// The connection's socket (a handle on it), peeked, never read; none when insecure.
    socket: Option<UdpSocket>,
    last_update: Option<Instant>,
    last_check: Option<Instant>,
    follow_ups: u8,
    /// When the last gap over [`OWN_LAG_LIMIT`] between two checks ended.
    lagged_at: Option<Instant>,
}

/// The servers a bot may connect to, the one it uses, and how it proves who it is.
#[derive(Debug)]
struct Link {
    servers: Vec<SocketAddr>,
    current: usize,
    identity: Identity,
}

impl Link {
    fn server(&self) -> SocketAddr {
        self.servers[self.current]
    }

    /// The servers in the order a new token lists them: the current one first, then the
    /// ones after it (netcode tries a token's addresses in order).
    fn in_order(&self) -> Vec<SocketAddr> {
        let (before, from) = self.servers.split_at(self.current);
        from.iter().chain(before).copied().collect()
    }
}

/// A bot's connection, as far as reconnecting goes.
#[derive(Debug, Default)]
struct Conn {
    /// The current connection has opened (and was not closed since).
    open: bool,
    /// The bot closed the current connection itself, after a closing notice: the
    /// plugin's "connection lost" error that follows is not news.
    closed_by_us: bool,
    /// A new connection is being opened after a notice or a loss.
    reconnecting: bool,
    /// When to open the next connection (real time of the app), while reconnecting.
    due: Option<Duration>,
    /// When the last connection closed, while reconnecting.
    lost_at: Option<Duration>,
    /// Connections tried since the last one closed.
    tries: u32,
    /// The backoff's exponent: failed or closed connections since the bot last queued.
    backoff: u32,
}

impl Bot {
    pub fn new(
        index: usize,
        player: u64,
        category: String,
        flaw: Option<(Flaw, Duration)>,
        rematch: bool,
        seed: u64,
    ) -> Self {
        Self {
            index,
            player,
            category,
            flaw,
            rematch,
            rejoin_at: Some(Duration::ZERO),
            rng: fastrand::Rng::with_seed(seed),
            ..Default::default()
        }
    }
}

/// A client app for one bot, connected over UDP to `server` as its player (with a connect
/// token minted for it, unless `identity` is insecure).
pub fn bot_app(server: SocketAddr, bot: Bot, identity: &Identity) -> std::io::Result<App> {
    bot_app_to(&[server], bot, identity)
}

/// [`bot_app`] with a list of servers: the token lists them all (netcode tries them in
/// order), and a reconnecting bot moves on to the next one.
pub fn bot_app_to(
    servers: &[SocketAddr],
    mut bot: Bot,
    identity: &Identity,
) -> std::io::Result<App> {
    let channel = AtomicChannel::default();
    let mut app = App::new();
    // lean: no task-pool ticking in Last (a bot spawns no task; the process's pools are
    // made here), no frame count, no fixed-timestep schedules (a bot has nothing there)
    TaskPoolOptions::default().create_default_pools();
    let plugins = MinimalPlugins.build().disable::<TaskPoolPlugin>();
    app.add_plugins(plugins.disable::<FrameCountPlugin>())
        .add_plugins(StatesPlugin);
    let fixed = RunFixedMainLoop.intern();
    let mut order = app.world_mut().resource_mut::<MainScheduleOrder>();
    order.labels.retain(|label| *label != fixed);
    let config = channel.dedicated_connection_config();
    bot.pacing.socket = connect(&mut app, identity, servers, bot.player, config)?;
    bot.link = Some(Link {
        servers: servers.to_vec(),
        current: 0,
        identity: identity.clone(),
    });
    app.add_plugins(AtomicClientPlugin { channel })
        .insert_resource(bot)
        .add_systems(
            Update,
            (follow_link, brain)
                .chain()
                .after(AtomicClientSystems::Send),
        );
    // the bots' loop drives the app by update(): finish the plugins' set-up as run() would,
    // and build the schedules now, not in the first update (a millisecond per bot)
    app.finish();
    app.cleanup();
    let world = app.world_mut();
    let schedules = world.resource::<Schedules>().iter();
    for label in schedules.map(|s| s.1.label()).collect::<Vec<_>>() {
        world.schedule_scope(label, |world, s| {
            s.set_executor(SingleThreadedExecutor::new());
            s.initialize(world).map_err(std::io::Error::other)
        })?;
    }
    Ok(app)
}

/// Connects `app` to `servers` (the first one first) as `player`, replacing the connection
/// it had: a token listing every server when secure (what a game's backend does when it
/// hands out a token for several servers), else an insecure connection to the first.
/// Returns a handle on the secure connection's socket, for [`tick`] to peek at.
fn connect(
    app: &mut App,
    identity: &Identity,
    servers: &[SocketAddr],
    player: u64,
    config: bevy_renet::renet::ConnectionConfig,
) -> std::io::Result<Option<UdpSocket>> {
    let (Identity::Tokens(issuer) | Identity::QuietTokens(issuer)) = identity else {
        insert_insecure_netcode_client(app, servers[0], player, config)?;
        return Ok(None);
    };
    let token = issuer
        .issue(player, DEFAULT_TOKEN_VALIDITY, servers, &[])
        .map_err(std::io::Error::other)?;
    let quiet = matches!(identity, Identity::QuietTokens(_));
    match quiet {
        true => insert_quiet_secure_client(app, token.clone(), config)?,
        false => insert_secure_netcode_client(app, token.clone(), config)?,
    }
    // the crate's helpers bind their socket out of reach: put the same transport, over a
    // socket the bot keeps a handle on, in place of theirs (which never sent anything)
    let wildcard = ["0.0.0.0:0", "[::]:0"][usize::from(servers[0].is_ipv6())];
    let socket = UdpSocket::bind(wildcard)?;
    let handle = socket.try_clone()?;
    let connect_token = token;
    let (auth, now) = (ClientAuthentication::Secure { connect_token }, unix_now());
    let policy = app.world().get_resource::<MatchmakingAckPolicy>();
    let policy = policy.copied().unwrap_or_default();
    let other = std::io::Error::other;
    if quiet {
        let transport = MatchmakingQuietClientTransport::new(now, auth, socket, policy);
        app.insert_resource(transport.map_err(other)?);
    } else {
        app.insert_resource(NetcodeClientTransport::new(now, auth, socket).map_err(other)?);
    }
    handle.set_nonblocking(true)?; // (shared with the transport's on unix; said again)
    Ok(Some(handle))
}

/// Opens a reconnecting bot's next connection once its backoff is over (it needs the whole
/// app, so the frame loop calls it after each update). Never after [`Bot::stopping`].
pub fn reconnect_if_due(app: &mut App) {
    let now = app.world().resource::<Time<Real>>().elapsed();
    let mut bot = app.world_mut().resource_mut::<Bot>();
    let Some(due) = bot.conn.due else {
        return;
    };
    if bot.stopping || bot.gone {
        bot.conn.due = None;
        return;
    }
    if now < due {
        return;
    }
    bot.conn.due = None;
    bot.conn.tries += 1;
    let player = bot.player;
    let Some((servers, identity)) = bot
        .link
        .as_ref()
        .map(|l| (l.in_order(), l.identity.clone()))
    else {
        return;
    };
    let config = app
        .world()
        .resource::<AtomicChannel>()
        .dedicated_connection_config();
    let connected = connect(app, &identity, &servers, player, config);
    let mut bot = app.world_mut().resource_mut::<Bot>();
    match connected {
        Ok(socket) => (bot.pacing.socket, bot.asked) = (socket, true),
        Err(e) => {
            let (index, server) = (bot.index, servers[0]);
            bot.say(json!({"event": "error", "bot": index, "player": player, "kind": "Reconnect", "message": format!("cannot reconnect to {server}: {e}")}));
            bot.errors += 1;
            bot.schedule_reconnect(now);
        }
    }
}

/// Checks a bot once, in a round of a load tool's loop, and updates its app (then runs
/// [`reconnect_if_due`]) if it needs it: the first time; when a datagram waits on its
/// socket or a timer of its own is due; in the [`FOLLOW_UPS`] rounds after an update that
/// left something to do (a request written, a state change pending, a line); else once
/// `every` passed (the connection's and the plugin's own timers: keep-alives, resends,
/// delayed pongs). `every` zero: every round. A gone bot is not updated again. Returns
/// whether it updated.
pub fn tick(app: &mut App, every: Duration) -> bool {
    let now = Instant::now();
    let first = app.world().resource::<Time<Real>>().first_update();
    let queued = *app.world().resource::<State<AtomicClientState>>() == AtomicClientState::Queued;
    let mut bot = app.world_mut().resource_mut::<Bot>();
    if !bot.needs_update(now, first, queued, every) {
        return false;
    }
    let lines = bot.lines.len();
    app.update();
    reconnect_if_due(app);
    let next = app.world().resource::<NextState<AtomicClientState>>();
    let pending = !matches!(next, NextState::Unchanged);
    let mut bot = app.world_mut().resource_mut::<Bot>();
    bot.pacing.last_update = Some(now);
    if std::mem::take(&mut bot.asked) || pending || bot.lines.len() != lines {
        bot.pacing.follow_ups = FOLLOW_UPS;
    }
    true
}

/// Follows the connection of a bot: the server's closing notices (a `server_closing` line
/// each), a connection that opened again (a `reconnect` line), one that was lost or never
/// opened; a reconnecting bot schedules its next attempt.
fn follow_link(
    time: Res<Time<Real>>,
    mut bot: ResMut<Bot>,
    client: Res<RenetClient>,
    mut transport: ClientTransport,
    state: Res<State<AtomicClientState>>,
    mut closing: MessageReader<AtomicServerClosing>,
) {
    let now = time.elapsed();
    let bot = &mut *bot;
    if bot.gone {
        closing.clear();
        return;
    }
    let connected = client.is_connected();
    if connected && !bot.conn.open && bot.conn.due.is_none() {
        bot.conn.open = true;
        if bot.conn.reconnecting {
            bot.reopened(now);
        }
    }
    if *state.get() == AtomicClientState::Queued {
        bot.conn.backoff = 0;
    }
    for notice in closing.read() {
        let server = bot.link.as_ref().map(|l| l.server().to_string());
        let (index, player) = (bot.index, bot.player);
        bot.say(json!({"event": "server_closing", "bot": index, "player": player, "server": server, "retry_elsewhere": notice.retry_elsewhere}));
        bot.server_closing += 1;
        if bot.reconnect && !bot.stopping && bot.conn.open {
            // nothing of ours is left there: go now, and come back elsewhere
            transport.disconnect();
            bot.conn.closed_by_us = true;
            bot.schedule_reconnect(now);
        }
    }
    if !bot.reconnect || bot.stopping || bot.conn.due.is_some() {
        return;
    }
    let lost = bot.conn.open && !connected;
    // an attempt that netcode or the plugin gave up on (no server there yet): a bot that
    // was never connected tries each of its servers once, then reports the refusal
    let servers = bot.link.as_ref().map_or(0, |l| l.servers.len());
    let untried = servers > bot.conn.tries as usize + 1;
    let failed = !bot.conn.open
        && if bot.connected_once {
            bot.conn.reconnecting
        } else {
            untried
        }
        && transport.disconnect_reason().is_some();
    if lost || failed {
        bot.schedule_reconnect(now);
    }
}

fn brain(
    time: Res<Time<Real>>,
    mut bot: ResMut<Bot>,
    mut faults: ResMut<AtomicClientFaults>,
    client: Res<RenetClient>,
    mut transport: ClientTransport,
    state: Res<State<AtomicClientState>>,
    mut found: MessageReader<AtomicMatchFound>,
    mut proposed: MessageReader<AtomicMatchProposed>,
    mut cancelled: MessageReader<AtomicMatchCancelled>,
    mut errors: MessageReader<AtomicClientError>,
    mut join: MessageWriter<AtomicJoinQueue>,
    mut leave_queue: MessageWriter<AtomicLeaveQueue>,
    mut leave_lobby: MessageWriter<AtomicLeaveLobby>,
) {
    let now = time.elapsed();
    let bot = &mut *bot;
    if bot.gone {
        return;
    }
    bot.connected_once |= client.is_connected();
    if !bot.connected_once && bot.conn.due.is_none() {
        // the plugin's own report of a connection that never opened: that is the refusal
        if let Some(e) = errors
            .read()
            .find(|e| e.kind == AtomicErrorKind::ConnectFailed)
        {
            bot.report_refused_with(e.message.clone());
            return;
        }
        if let Some(reason) = transport.disconnect_reason() {
            // netcode gave up: the server never answered our connect token
            bot.report_refused(Some(reason));
            return;
        }
    }
    bot.activate_flaw(now, &mut faults);
    for p in proposed.read() {
        if bot.flaw_active && bot.flaw.map(|f| f.0) == Some(Flaw::DisconnectWhenProposed) {
            bot.say(
                json!({"event": "disconnect", "bot": bot.index, "player": bot.player, "match": p.match_id, "flaw": Flaw::DisconnectWhenProposed.name()}),
            );
            transport.disconnect();
            bot.gone = true;
            return;
        }
    }
    found.read().for_each(|f| bot.record_found(f, now));
    if !bot.rematch && bot.matched > 0 {
        // one match is all it came for: close the connection now (the server sees the
        // disconnect, ends the bot's lobby membership and stops paying for the connection)
        bot.say(
            json!({"event": "leave", "bot": bot.index, "player": bot.player, "after_matches": bot.matched}),
        );
        transport.disconnect();
        bot.gone = true;
        return;
    }
    cancelled.read().for_each(|c| bot.record_cancelled(c, now));
    errors.read().for_each(|e| bot.record_error(e, now));
    let state = *state.get();
    if state == AtomicClientState::Idle && bot.leave_lobby_at.take().is_some() && bot.rematch {
        // the server took us out of the lobby (a cluster node lost its lease): queue again
        bot.rejoin_at = Some(now + Duration::from_millis(bot.rng.u64(100..800)));
    }
    if bot.leave_lobby_at.is_some_and(|t| now >= t) && state == AtomicClientState::Matched {
        bot.leave_lobby_at = None;
        leave_lobby.write(AtomicLeaveLobby);
        bot.asked = true;
        if bot.rematch {
            bot.rejoin_at = Some(now + Duration::from_millis(bot.rng.u64(100..800)));
        }
    }
    if bot.stopping && bot.should_leave_queue(state, now) {
        leave_queue.write(AtomicLeaveQueue);
        bot.asked = true;
    }
    if bot.rejoin_at.is_some_and(|t| now >= t)
        && matches!(
            state,
            AtomicClientState::Idle | AtomicClientState::Disconnected
        )
    {
        bot.rejoin_at = None;
        bot.joined_at = Some(now);
        bot.asked = true;
        join.write(AtomicJoinQueue {
            category: bot.category.clone(),
        });
    }
}

impl Bot {
    /// Queues one JSON line for printing, stamped with the Unix time in milliseconds
    /// (`at_ms`), so lines of several processes can be put in order.
    fn say(&mut self, mut line: Value) {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |t| t.as_millis() as u64);
        if let Value::Object(fields) = &mut line {
            fields.insert("at_ms".into(), at_ms.into());
        }
        self.lines.push(line.to_string());
    }

    /// The connection is closed or lost, or an attempt failed: forget what was planned on
    /// it and, unless the run is over, try the next server after a backoff of 250 ms
    /// doubling to 4 s, with jitter.
    fn schedule_reconnect(&mut self, now: Duration) {
        self.conn.open = false;
        self.conn.lost_at.get_or_insert(now);
        self.rejoin_at = None;
        self.leave_lobby_at = None;
        self.joined_at = None;
        if !self.reconnect || self.stopping {
            return;
        }
        let base = Duration::from_millis(250 << self.conn.backoff.min(4));
        let delay = base.mul_f64(0.75 + 0.5 * self.rng.f64());
        self.conn.backoff += 1;
        self.conn.due = Some(now + delay);
        self.conn.reconnecting = true;
        if let Some(link) = &mut self.link {
            link.current = (link.current + 1) % link.servers.len();
        }
    }

    /// A connection opened again: say so, and queue again soon.
    fn reopened(&mut self, now: Duration) {
        let after = self
            .conn
            .lost_at
            .take()
            .map_or(0, |t| now.saturating_sub(t).as_millis() as u64);
        let tries = std::mem::take(&mut self.conn.tries);
        self.conn.reconnecting = false;
        self.conn.closed_by_us = false;
        self.reconnects += 1;
        let server = self.link.as_ref().map(|l| l.server().to_string());
        let (index, player) = (self.index, self.player);
        self.say(json!({"event": "reconnect", "bot": index, "player": player, "server": server, "tries": tries, "after_ms": after}));
        self.rejoin_at = Some(now + Duration::from_millis(self.rng.u64(50..500)));
    }

    /// Reports, once, that the connection never opened, and gives up.
    pub fn report_refused(&mut self, reason: Option<NetcodeDisconnectReason>) {
        let message = match &self.link {
            Some(link) => link.identity.refusal(link.server(), reason),
            None => "the connection never opened".into(),
        };
        self.report_refused_with(message);
    }

    /// Reports, once, that the connection never opened with this message, and gives up.
    fn report_refused_with(&mut self, message: String) {
        self.gone = true;
        if self.connected_once || self.refusal_reported {
            return;
        }
        self.refusal_reported = true;
        self.say(
            json!({"event": "error", "bot": self.index, "player": self.player, "kind": "Refused", "message": message}),
        );
        self.errors += 1;
    }

    /// Turns the bot's flaw on once its time has come.
    fn activate_flaw(&mut self, now: Duration, faults: &mut AtomicClientFaults) {
        if let Some((flaw, after)) = self.flaw
            && !self.flaw_active
            && now >= after
        {
            self.flaw_active = true;
            match flaw {
                Flaw::NeverAcknowledge => faults.acknowledge_proposals = false,
                Flaw::SlowPongs => faults.pong_delay = Duration::from_millis(800),
                Flaw::DisconnectWhenProposed => {}
            }
        }
    }

    fn record_found(&mut self, f: &AtomicMatchFound, now: Duration) {
        let wait = self
            .joined_at
            .map_or(Duration::ZERO, |t| now.saturating_sub(t));
        let mut players: Vec<u64> = std::iter::once(f.me.player)
            .chain(f.others.iter().map(|o| o.player))
            .collect();
        players.sort_unstable();
        self.say(json!({
            "event": "match_found", "bot": self.index, "player": self.player, "match": f.match_id,
            "lobby": f.lobby_code, "category": f.category, "players": players,
            "wait_ms": wait.as_millis() as u64,
        }));
        self.matched += 1;
        self.waits.push(wait);
        self.matches
            .push((f.match_id, f.lobby_code.clone(), players));
        self.joined_at = None;
        // "play" for a moment, then leave the lobby
        self.leave_lobby_at = Some(now + Duration::from_millis(self.rng.u64(300..1500)));
    }

    fn record_error(&mut self, e: &AtomicClientError, now: Duration) {
        if e.kind == AtomicErrorKind::Connection && std::mem::take(&mut self.conn.closed_by_us) {
            return; // we closed it ourselves, after the server's closing notice
        }
        self.say(
            json!({"event": "error", "bot": self.index, "player": self.player, "kind": format!("{:?}", e.kind), "message": e.message}),
        );
        self.errors += 1;
        // "try again shortly": a cluster's store is unreachable for a moment
        if e.kind == AtomicErrorKind::StoreUnavailable && self.rematch {
            self.rejoin_at = Some(now + Duration::from_millis(self.rng.u64(300..1500)));
        }
    }

    fn record_cancelled(&mut self, c: &AtomicMatchCancelled, now: Duration) {
        // no check came more than OWN_LAG_LIMIT after the one before in the last OWN_LAG_WINDOW
        let kept_up = (self.pacing.lagged_at).is_none_or(|t| t.elapsed() > OWN_LAG_WINDOW);
        let flaw = self.flaw.filter(|_| self.flaw_active).map(|f| f.0.name());
        self.say(
            json!({
                "event": "match_cancelled", "bot": self.index, "player": self.player, "match": c.match_id,
                "status": c.status.as_str(), "reason": c.reason.to_string(), "requeued": c.requeued,
                "kept_up": kept_up, "flaw": flaw,
            }),
        );
        self.cancelled += 1;
        match kept_up {
            true => self.cancelled_kept_up += 1,
            false => self.cancelled_own_lag += 1,
        }
        if !c.requeued {
            self.joined_at = None;
            self.rejoin_at = Some(now + Duration::from_millis(self.rng.u64(200..1000)));
        }
    }

    /// Notes a check at `now` and says whether its app needs an update (see [`tick`]).
    /// `first` is its app's first update (none yet), the origin of its `Time<Real>` and of
    /// its timers; a stopping bot that is `queued` leaves the queue again when due.
    fn needs_update(
        &mut self,
        now: Instant,
        first: Option<Instant>,
        queued: bool,
        every: Duration,
    ) -> bool {
        let pacing = &mut self.pacing;
        let last_check = pacing.last_check.replace(now);
        if last_check.is_some_and(|t| now.saturating_duration_since(t) > OWN_LAG_LIMIT) {
            pacing.lagged_at = Some(now);
        }
        let (Some(first), Some(last), Some(socket), false) =
            (first, pacing.last_update, &pacing.socket, self.gone)
        else {
            return !self.gone;
        };
        let flaw = self.flaw.filter(|_| !self.flaw_active).map(|f| f.1);
        let leave = self.last_leave.map_or(Duration::ZERO, |t| t + LEAVE_EVERY);
        let leave = (self.stopping && queued).then_some(leave);
        let own = [self.leave_lobby_at, self.rejoin_at, self.conn.due];
        let due_at = |t: Option<Duration>| t.is_some_and(|t| now >= first + t);
        let due = own.into_iter().chain([flaw, leave]).any(due_at);
        // a datagram waiting (peeked, not taken; an error too: the transport will see it)
        let waiting = !matches!(socket.peek_from(&mut [0; 1]), Err(e) if e.kind() == WouldBlock);
        let follow_up = pacing.follow_ups > 0;
        pacing.follow_ups = pacing.follow_ups.saturating_sub(1);
        every.is_zero() || due || waiting || follow_up || now >= last + every
    }

    /// A stopping bot leaves the queue (again after a rollback re-queued it), at most twice
    /// a second.
    fn should_leave_queue(&mut self, state: AtomicClientState, now: Duration) -> bool {
        self.rejoin_at = None;
        let due = self.last_leave.is_none_or(|t| now >= t + LEAVE_EVERY);
        if state == AtomicClientState::Queued && due {
            self.last_leave = Some(now);
            return true;
        }
        false
    }
}

/// Nearest-rank percentile in milliseconds.
pub fn percentile_ms(waits: &mut [Duration], q: f64) -> u64 {
    waits.sort_unstable();
    bevy_atomic_matchmaking::atomic::core::stats::nearest_rank(waits, q).as_millis() as u64
}
