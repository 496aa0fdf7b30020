//! The connection to the matchmaking server: connecting on Find match, reporting a failed
//! connection, saying goodbye when the window closes, and following the matchmaking
//! messages of the client plugin.

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;

use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::transport::{MatchmakingConnect, matchmaking_disconnect_now};

use crate::args::random_client_id;
use crate::state::{Connection, LobbyConfig, ScreenState};
use crate::ui::{BAD, WARN};

/// Connects on Find match when there is no connection (the first click, or after the
/// connection was lost), then asks to join the queue; the client plugin sends the join as
/// soon as the server welcomes us. A connection that does not open comes back as the
/// plugin's `ConnectFailed` error (see [`follow_matchmaking`]).
pub fn ensure_connection(
    config: Res<LobbyConfig>,
    mut connection: ResMut<Connection>,
    mut screen: ResMut<ScreenState>,
    channel: Res<AtomicChannel>,
    state: Res<State<AtomicClientState>>,
    mut connect: MessageWriter<MatchmakingConnect>,
    mut join: MessageWriter<AtomicJoinQueue>,
) {
    if !connection.join_pending {
        return;
    }
    connection.join_pending = false;
    if *state.get() == AtomicClientState::Disconnected && !connection.connecting {
        if !config.fixed_client_id && connection.attempts > 0 {
            // reconnecting: a fresh id, in case the server still holds the old connection
            connection.client_id = random_client_id();
        }
        let request = config.identity.connect_request(
            config.server,
            connection.client_id,
            channel.dedicated_connection_config(),
        );
        match request {
            Ok(request) => {
                connect.write(request);
                connection.connecting = true;
                connection.attempts += 1;
                println!(
                    "LOBBY connecting server={} client_id={}",
                    config.server, connection.client_id
                );
            }
            Err(e) => {
                screen.searching = false;
                screen.notice = Some((format!("Cannot connect: {e}"), BAD));
                println!("LOBBY error kind=socket message=\"{e}\"");
                return;
            }
        }
    }
    join.write(AtomicJoinQueue {
        category: config.category.clone(),
    });
}

/// Tells the server right away when the player closes the window, so a match that is
/// forming is rolled back at once instead of after a timeout (a `MatchmakingDisconnect`
/// would be read next frame, which never comes).
pub fn say_goodbye(world: &mut World) {
    let exiting = world
        .get_resource::<Messages<AppExit>>()
        .is_some_and(|m| !m.is_empty());
    if exiting {
        matchmaking_disconnect_now(world);
        println!("LOBBY exiting");
    }
}

/// The messages of the matchmaking client plugin that the game follows.
#[derive(SystemParam)]
pub struct LobbyMessages<'w, 's> {
    connected: MessageReader<'w, 's, AtomicConnected>,
    joined: MessageReader<'w, 's, AtomicQueueJoined>,
    left: MessageReader<'w, 's, AtomicQueueLeft>,
    checking: MessageReader<'w, 's, AtomicMatchChecking>,
    found: MessageReader<'w, 's, AtomicMatchFound>,
    cancelled: MessageReader<'w, 's, AtomicMatchCancelled>,
    lobby_left: MessageReader<'w, 's, AtomicLobbyLeft>,
    errors: MessageReader<'w, 's, AtomicClientError>,
}

/// Updates the connection and screen state from the plugin's messages and prints each
/// as a `LOBBY` line.
pub fn follow_matchmaking(
    mut connection: ResMut<Connection>,
    mut screen: ResMut<ScreenState>,
    state: Res<State<AtomicClientState>>,
    mut messages: LobbyMessages,
) {
    for c in messages.connected.read() {
        connection.connecting = false;
        println!("LOBBY connected player={}", c.player);
    }
    for j in messages.joined.read() {
        println!(
            "LOBBY queued category={} position={} requeued={}",
            j.category, j.position, j.requeued
        );
    }
    for l in messages.left.read() {
        println!("LOBBY left_queue category={}", l.category);
    }
    for c in messages.checking.read() {
        screen.matching_players = c.players;
        println!("LOBBY matching match={} players={}", c.match_id, c.players);
    }
    for f in messages.found.read() {
        screen.in_lobby = false;
        screen.searching = false;
        screen.notice = None;
        println!(
            "LOBBY found_message match={} lobby={}",
            f.match_id, f.lobby_code
        );
    }
    for c in messages.cancelled.read() {
        on_match_cancelled(&mut screen, c);
    }
    for l in messages.lobby_left.read() {
        screen.in_lobby = false;
        screen.searching = false;
        println!("LOBBY lobby_left lobby_id={}", l.lobby_id);
    }
    for e in messages.errors.read() {
        if matches!(
            e.kind,
            AtomicErrorKind::ConnectFailed | AtomicErrorKind::Connection
        ) {
            // the attempt is over: the next Find match connects again
            connection.connecting = false;
        }
        on_error(&mut screen, *state.get(), e);
    }
}

fn on_match_cancelled(screen: &mut ScreenState, c: &AtomicMatchCancelled) {
    let text = if c.requeued {
        format!(
            "Match cancelled: {}. You were put back at the front of the queue.",
            c.reason
        )
    } else {
        format!(
            "Match cancelled: {}. You were not re-queued; click Find match to try again.",
            c.reason
        )
    };
    if !c.requeued {
        screen.searching = false;
    }
    screen.notice = Some((text, WARN));
    println!(
        "LOBBY cancelled match={} status={} requeued={} reason=\"{}\"",
        c.match_id, c.status, c.requeued, c.reason
    );
}

fn on_error(screen: &mut ScreenState, state: AtomicClientState, e: &AtomicClientError) {
    screen.notice = Some((e.message.clone(), BAD));
    if matches!(
        state,
        AtomicClientState::Idle | AtomicClientState::Disconnected
    ) {
        // refused (queue full, bad category...) or disconnected: not searching any more
        screen.searching = false;
    }
    println!("LOBBY error kind={:?} message=\"{}\"", e.kind, e.message);
}
