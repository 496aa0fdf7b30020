//! A load-generating bot: one headless Bevy client app with its own UDP connection.
//! Shared by the `bots` and `demo` examples (each also includes `identity.rs`, as
//! `crate::identity`).

// each example that includes this module uses a different part of it
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bevy::prelude::*;
use bevy::state::app::StatesPlugin;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::atomic::AtomicClientFaults;
use bevy_renet::RenetClient;
use bevy_renet::netcode::NetcodeDisconnectReason;
use serde_json::json;

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
#[derive(Resource, Debug)]
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
    /// Matches this bot was found in, as (match id, sorted players).
    pub matches: Vec<(u64, Vec<u64>)>,
    joined_at: Option<Duration>,
    leave_lobby_at: Option<Duration>,
    rejoin_at: Option<Duration>,
    flaw_active: bool,
    pub gone: bool,
    /// The connection opened at least once.
    pub connected_once: bool,
    /// The server and identity it connects with (set by [`bot_app`]), to explain a refusal.
    link: Option<(SocketAddr, Identity)>,
    /// A connection that never opened was reported.
    refusal_reported: bool,
    rng: fastrand::Rng,
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
            stopping: false,
            last_leave: None,
            lines: Vec::new(),
            matched: 0,
            cancelled: 0,
            errors: 0,
            waits: Vec::new(),
            matches: Vec::new(),
            joined_at: None,
            leave_lobby_at: None,
            rejoin_at: Some(Duration::ZERO),
            flaw_active: false,
            gone: false,
            connected_once: false,
            link: None,
            refusal_reported: false,
            rng: fastrand::Rng::with_seed(seed),
        }
    }
}

/// A client app for one bot, connected over UDP to `server` as its player (with a connect
/// token minted for it, unless `identity` is insecure).
pub fn bot_app(server: SocketAddr, mut bot: Bot, identity: &Identity) -> std::io::Result<App> {
    let channel = AtomicChannel::default();
    let mut app = App::new();
    app.add_plugins(MinimalPlugins).add_plugins(StatesPlugin);
    identity.insert_client(
        &mut app,
        server,
        bot.player,
        channel.dedicated_connection_config(),
    )?;
    bot.link = Some((server, identity.clone()));
    app.add_plugins(AtomicClientPlugin { channel })
        .insert_resource(bot)
        .add_systems(Update, brain.after(AtomicClientSystems::Send));
    Ok(app)
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
    if !bot.connected_once {
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
            bot.lines.push(
                json!({"event": "disconnect", "bot": bot.index, "player": bot.player, "match": p.match_id, "flaw": Flaw::DisconnectWhenProposed.name()})
                    .to_string(),
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
        bot.lines.push(
            json!({"event": "leave", "bot": bot.index, "player": bot.player, "after_matches": bot.matched})
                .to_string(),
        );
        transport.disconnect();
        bot.gone = true;
        return;
    }
    cancelled.read().for_each(|c| bot.record_cancelled(c, now));
    for e in errors.read() {
        bot.lines.push(
            json!({"event": "error", "bot": bot.index, "player": bot.player, "kind": format!("{:?}", e.kind), "message": e.message})
                .to_string(),
        );
        bot.errors += 1;
    }
    let state = *state.get();
    if bot.leave_lobby_at.is_some_and(|t| now >= t) && state == AtomicClientState::Matched {
        bot.leave_lobby_at = None;
        leave_lobby.write(AtomicLeaveLobby);
        if bot.rematch {
            bot.rejoin_at = Some(now + Duration::from_millis(bot.rng.u64(100..800)));
        }
    }
    if bot.stopping && bot.should_leave_queue(state, now) {
        leave_queue.write(AtomicLeaveQueue);
    }
    if bot.rejoin_at.is_some_and(|t| now >= t)
        && matches!(
            state,
            AtomicClientState::Idle | AtomicClientState::Disconnected
        )
    {
        bot.rejoin_at = None;
        bot.joined_at = Some(now);
        join.write(AtomicJoinQueue {
            category: bot.category.clone(),
        });
    }
}

impl Bot {
    /// Reports, once, that the connection never opened, and gives up.
    fn report_refused(&mut self, reason: Option<NetcodeDisconnectReason>) {
        let message = match &self.link {
            Some((server, identity)) => identity.refusal(*server, reason),
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
        self.lines.push(
            json!({"event": "error", "bot": self.index, "player": self.player, "kind": "Refused", "message": message})
                .to_string(),
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
        self.lines.push(
            json!({
                "event": "match_found", "bot": self.index, "player": self.player, "match": f.match_id,
                "lobby": f.lobby_code, "category": f.category, "players": players,
                "wait_ms": wait.as_millis() as u64,
            })
            .to_string(),
        );
        self.matched += 1;
        self.waits.push(wait);
        self.matches.push((f.match_id, players));
        self.joined_at = None;
        // "play" for a moment, then leave the lobby
        self.leave_lobby_at = Some(now + Duration::from_millis(self.rng.u64(300..1500)));
    }

    fn record_cancelled(&mut self, c: &AtomicMatchCancelled, now: Duration) {
        self.lines.push(
            json!({
                "event": "match_cancelled", "bot": self.index, "player": self.player, "match": c.match_id,
                "status": c.status.as_str(), "reason": c.reason.to_string(), "requeued": c.requeued,
            })
            .to_string(),
        );
        self.cancelled += 1;
        if !c.requeued {
            self.joined_at = None;
            self.rejoin_at = Some(now + Duration::from_millis(self.rng.u64(200..1000)));
        }
    }

    /// A stopping bot leaves the queue (again after a rollback re-queued it), at most twice
    /// a second.
    fn should_leave_queue(&mut self, state: AtomicClientState, now: Duration) -> bool {
        self.rejoin_at = None;
        let due = self
            .last_leave
            .is_none_or(|t| now >= t + Duration::from_millis(500));
        if state == AtomicClientState::Queued && due {
            self.last_leave = Some(now);
            return true;
        }
        false
    }
}

/// Whether a stopping bot has nothing left in flight: not queued, not in a forming
/// match, not in a lobby (or it left the server).
pub fn drained(app: &App) -> bool {
    app.world().resource::<Bot>().gone
        || matches!(
            app.world().resource::<State<AtomicClientState>>().get(),
            AtomicClientState::Idle | AtomicClientState::Disconnected
        )
}

/// Reports every bot whose connection never opened and that has not said so yet (netcode
/// gives up only after the token's timeout, which a short run may not reach).
pub fn report_never_connected(apps: &mut [App]) {
    for app in apps {
        let reason = crate::identity::client_gave_up(app.world());
        let mut bot = app.world_mut().resource_mut::<Bot>();
        if !bot.connected_once {
            bot.report_refused(reason);
        }
    }
}

/// Nearest-rank percentile in milliseconds.
pub fn percentile_ms(waits: &mut [Duration], q: f64) -> u64 {
    waits.sort_unstable();
    bevy_atomic_matchmaking::atomic::core::stats::nearest_rank(waits, q).as_millis() as u64
}
