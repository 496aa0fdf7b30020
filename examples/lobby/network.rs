//! The connection to the matchmaking server: connecting on Find match, reporting a failed
//! connection, saying goodbye when the window closes, and following the matchmaking
//! messages of the client plugin.

use crate::identity::ClientTransport;
use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use bevy_renet::RenetClient;

use bevy_atomic_matchmaking::prelude::*;

use crate::args::random_client_id;
use crate::state::{Connection, LobbyConfig, ScreenState};
use crate::ui::{BAD, WARN};

/// Connects on the first Find match (and again after a lost connection), then asks to
/// join the queue; the client plugin sends the join as soon as the server welcomes us.
pub fn ensure_connection(
    mut commands: Commands,
    config: Res<LobbyConfig>,
    mut connection: ResMut<Connection>,
    mut screen: ResMut<ScreenState>,
    channel: Res<AtomicChannel>,
    client: Option<Res<RenetClient>>,
    mut join: MessageWriter<AtomicJoinQueue>,
) {
    if !connection.join_pending {
        return;
    }
    connection.join_pending = false;
    if client.as_ref().is_none_or(|c| c.is_disconnected()) {
        if !config.fixed_client_id && client.is_some() {
            // reconnecting: a fresh id, in case the server still holds the old connection
            connection.client_id = random_client_id();
        }
        match config
            .identity
            .client_transport(config.server, connection.client_id)
        {
            Ok(transport) => {
                commands.insert_resource(RenetClient::new(channel.dedicated_connection_config()));
                commands.insert_resource(transport);
                connection.connecting = true;
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

/// Reports a connection attempt that failed before the server welcomed us.
pub fn watch_connection(
    config: Res<LobbyConfig>,
    mut connection: ResMut<Connection>,
    mut screen: ResMut<ScreenState>,
    client: Option<Res<RenetClient>>,
    transport: ClientTransport,
) {
    if !connection.connecting {
        return;
    }
    let Some(client) = client else {
        return;
    };
    if !client.is_disconnected() {
        return;
    }
    let netcode = transport.disconnect_reason();
    let reason = match (netcode, client.disconnect_reason()) {
        // netcode gave up before the connection opened: the token was not accepted
        (Some(netcode), _) => config.identity.refusal(config.server, Some(netcode)),
        (None, Some(renet)) => format!("connection to {} closed: {renet}", config.server),
        (None, None) => config.identity.refusal(config.server, None),
    };
    connection.connecting = false;
    screen.searching = false;
    screen.notice = Some((format!("Could not connect: {reason}"), BAD));
    println!(
        "LOBBY error kind=connect server={} message=\"{reason}\"",
        config.server
    );
}

/// Tells the server right away when the player closes the window, so a match that is
/// forming is rolled back at once instead of after a timeout. (bevy_renet's own
/// `disconnect_on_exit` is not ordered after Bevy's window-close exit in `Last`, so it can
/// miss the exit frame.)
pub fn say_goodbye(exit: MessageReader<AppExit>, mut transport: ClientTransport) {
    if !exit.is_empty() {
        transport.disconnect();
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
