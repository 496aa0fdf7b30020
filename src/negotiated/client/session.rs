//! Per-connection bookkeeping and the machine, and what both systems work with.

use std::time::Duration;

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;

use crate::shared::connection_config::{MatchmakingConnectionConfig, config_problem};
use bevy_renet::RenetClient;

use crate::negotiated::channel::NegotiatedChannel;
use crate::negotiated::core::clock::{NegotiatedClock, apply_offset, as_us};
use crate::negotiated::core::machine::{NegotiatedMachine, NegotiatedOutput};
use crate::negotiated::core::protocol::{NegotiatedClientMessage, NegotiatedErrorKind};
use crate::shared::codec;
use crate::shared::connect::{ClosedByGame, ConnectWatch, ConnectionView, lost_connection};
use crate::shared::player::PlayerId;

use super::NegotiatedClientSettings;
use super::messages::{NegotiatedClientError, NegotiatedConnected, NegotiatedRelayClosing};
use super::state::NegotiatedClientStatus;

/// Per-connection bookkeeping, and the machine.
#[derive(Resource, Debug, Default)]
pub(super) struct NegotiatedSession {
    /// The local clock's origin (Unix time).
    pub(super) epoch: Duration,
    /// Whether the renet client was connected last we looked.
    pub(super) connected: bool,
    /// Whether the relay welcomed us on this connection.
    pub(super) welcomed: bool,
    /// Whether the relay refused this connection's hello (another version or config).
    pub(super) hello_refused: bool,
    /// Whether the relay said it is closing (on this connection).
    pub(super) relay_closing: bool,
    /// Closing notices to report.
    pub(super) closing_events: Vec<NegotiatedRelayClosing>,
    /// Our id, once welcomed.
    pub(super) client_id: Option<PlayerId>,
    /// The relay-clock estimate.
    pub(super) clock: NegotiatedClock,
    /// Local time of the last time request.
    pub(super) last_time_request: Option<Duration>,
    /// The machine, once welcomed.
    pub(super) machine: Option<NegotiatedMachine>,
    /// A search the game asked for before the relay welcomed us.
    pub(super) intent: Option<String>,
    /// What the machine said, to send and report.
    pub(super) outbox: Vec<NegotiatedOutput>,
    /// Errors to report that do not come from the machine.
    pub(super) errors: Vec<NegotiatedClientError>,
    /// Welcomes to report.
    pub(super) connected_events: Vec<NegotiatedConnected>,
}

impl NegotiatedSession {
    /// A session with no connection yet.
    pub(super) fn new(epoch: Duration) -> Self {
        Self { epoch, ..default() }
    }

    /// The local clock, `elapsed` after the app started.
    pub(super) fn local_now(&self, elapsed: Duration, skew_ms: i64) -> Duration {
        apply_offset(
            self.epoch.saturating_add(elapsed),
            skew_ms.saturating_mul(1000),
        )
    }

    /// The relay's time at local time `local`, once the clock is estimated.
    pub(super) fn relay_now(&self, local: Duration) -> Option<Duration> {
        self.clock.relay_time(local)
    }

    /// Runs `call` on the machine, if there is one, and queues what it says.
    pub(super) fn run_machine(
        &mut self,
        call: impl FnOnce(&mut NegotiatedMachine) -> Vec<NegotiatedOutput>,
    ) {
        if let Some(machine) = self.machine.as_mut() {
            let out = call(machine);
            self.outbox.extend(out);
        }
    }

    /// Brings the machine online once welcomed and synced.
    pub(super) fn go_online(&mut self, relay_now: Duration) {
        if !self.welcomed {
            return;
        }
        self.run_machine(|machine| {
            if machine.is_online() {
                Vec::new()
            } else {
                machine.online(relay_now)
            }
        });
    }

    /// A request for the relay's time, sent at local time `local`.
    pub(super) fn time_request(&mut self, local: Duration) -> NegotiatedClientMessage {
        self.last_time_request = Some(local);
        NegotiatedClientMessage::TimeRequest {
            client_sent_us: as_us(local),
        }
    }

    /// The renet connection closed: forget the relay (and its clock) until it is back.
    /// `client` says why, for the error.
    /// `by_game`: the game closed it (`MatchmakingDisconnect`), so it is no error.
    pub(super) fn lose_connection(
        &mut self,
        client: Option<&RenetClient>,
        unwelcomed: String,
        by_game: bool,
    ) {
        if !self.connected {
            return;
        }
        let unwelcomed = (!self.welcomed && !self.hello_refused).then_some(unwelcomed);
        self.connected = false;
        self.hello_refused = false;
        self.relay_closing = false;
        self.welcomed = false;
        self.clock.reset();
        self.last_time_request = None;
        self.run_machine(NegotiatedMachine::offline);
        // the game closed it (MatchmakingDisconnect): no error
        if !by_game {
            self.errors.push(NegotiatedClientError::new(
                NegotiatedErrorKind::Connection,
                lost_connection("relay", client, unwelcomed),
            ));
        }
    }
}

/// Reports a connection to the relay that never opens: one
/// [`NegotiatedErrorKind::ConnectFailed`] error per attempt (written, and kept in the
/// status, with the others).
pub(super) fn watch_connect(
    mut view: ConnectionView,
    settings: Res<NegotiatedClientSettings>,
    mut watch: Local<ConnectWatch>,
    mut session: ResMut<NegotiatedSession>,
) {
    if let Some(message) = watch.check(&mut view, settings.connect_timeout) {
        warn!("negotiated matchmaking: {message}");
        session.errors.push(NegotiatedClientError::new(
            NegotiatedErrorKind::ConnectFailed,
            message,
        ));
    }
}

/// What both client systems work with: the renet client, the channel, the settings, the
/// real clock and the session.
#[derive(SystemParam)]
pub(super) struct SessionContext<'w> {
    pub(super) client: Option<ResMut<'w, RenetClient>>,
    pub(super) channel: Res<'w, NegotiatedChannel>,
    pub(super) settings: Res<'w, NegotiatedClientSettings>,
    pub(super) time: Res<'w, Time<Real>>,
    pub(super) session: ResMut<'w, NegotiatedSession>,
    pub(super) skew: Option<Res<'w, NegotiatedClockSkew>>,
    pub(super) config: Option<Res<'w, MatchmakingConnectionConfig>>,
    pub(super) closed_by_game: Option<Res<'w, ClosedByGame>>,
}

/// A badly set local clock, for tests (feature `testing`): this many milliseconds are added
/// to the client's clock. Insert it into a client app; without the feature the type is not
/// public and the clock is never skewed.
#[derive(Resource, Reflect, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[reflect(Resource, Debug, Clone, PartialEq, Default)]
pub struct NegotiatedClockSkew {
    /// Added to the local clock, in milliseconds (negative: behind).
    pub millis: i64,
}

impl SessionContext<'_> {
    /// The local clock now.
    pub(super) fn local_now(&self) -> Duration {
        self.session.local_now(
            self.time.elapsed(),
            self.skew.as_ref().map_or(0, |s| s.millis),
        )
    }
}

/// Sends one message to the relay.
pub(super) fn send(
    client: &mut RenetClient,
    channel: &NegotiatedChannel,
    message: &NegotiatedClientMessage,
) {
    client.send_message(channel.id, codec::encode(message));
}

/// Checks the recorded connection config when it is inserted or changed: one
/// [`NegotiatedErrorKind::ConfigMismatch`] error if it lacks the plugin's channel (the
/// plugin then leaves renet alone until the config is fixed).
pub(super) fn check_config(
    channel: Res<NegotiatedChannel>,
    config: Option<Res<MatchmakingConnectionConfig>>,
    mut status: ResMut<NegotiatedClientStatus>,
    mut errors: MessageWriter<NegotiatedClientError>,
) {
    let who = "NegotiatedClientPlugin";
    if let Some(problem) = config_problem(&*channel, config.as_deref(), who) {
        let error =
            NegotiatedClientError::new(NegotiatedErrorKind::ConfigMismatch, problem.message);
        error!("negotiated matchmaking: {}", error.message);
        status.last_error = Some(error.clone());
        errors.write(error);
    }
}

/// The margin [`warn_frame_shorter_than_failover`] wants beyond a failover and a bid timeout:
/// a retry and a connect.
#[cfg(feature = "transport")]
pub(super) const FAILOVER_CONNECT_MARGIN: std::time::Duration =
    std::time::Duration::from_millis(1_000);

/// Warns once, when the relay welcomed us, if a failover between relays could outlast what
/// the relays keep of an accept: a bidder away for longer than the frame duration minus the
/// bid timeout may come back to a store that dropped its request's frame, with an accept of
/// its bid in it. Returns the warning, for tests.
#[cfg(feature = "transport")]
pub(super) fn failover_frame_warning(
    frame: std::time::Duration,
    bid_timeout: std::time::Duration,
    silence: std::time::Duration,
) -> Option<String> {
    let needed = silence + bid_timeout + FAILOVER_CONNECT_MARGIN;
    (frame < needed).then(|| {
        format!(
            "the relay's frames of {frame:?} are shorter than a failover ({silence:?} of silence \
             and a connect) plus the bid timeout ({bid_timeout:?}): a bidder that fails over may \
             miss an accept of its bid; run frames of at least {needed:?}, or a shorter connect \
             token timeout"
        )
    })
}

/// See [`failover_frame_warning`].
#[cfg(feature = "transport")]
pub(super) fn warn_frame_shorter_than_failover(
    mut connected: MessageReader<super::messages::NegotiatedConnected>,
    failover: Option<Res<crate::transport::MatchmakingFailover>>,
    settings: Res<NegotiatedClientSettings>,
    mut warned: Local<bool>,
) {
    let Some(welcome) = connected.read().last() else {
        return;
    };
    let Some(silence) = failover.and_then(|f| f.silence_timeout()) else {
        return;
    };
    if !*warned
        && let Some(warning) =
            failover_frame_warning(welcome.frame_duration, settings.bid_timeout, silence)
    {
        *warned = true;
        warn!("negotiated matchmaking: {warning}");
    }
}

#[cfg(all(test, feature = "transport"))]
mod tests {
    use std::time::Duration;

    use super::failover_frame_warning;

    #[test]
    fn frames_shorter_than_a_failover_and_a_bid_timeout_are_warned_about() {
        let s = Duration::from_secs;
        assert!(failover_frame_warning(s(2), s(1), s(3)).is_some());
        assert!(failover_frame_warning(s(5), s(1), s(3)).is_none());
        assert!(failover_frame_warning(s(60), s(3), s(15)).is_none());
        assert!(failover_frame_warning(s(15), s(3), s(15)).is_some());
    }
}
