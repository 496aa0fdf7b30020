//! The embedded server and its bot: without `--server`, a matchmaking server and one bot
//! client run on a background thread (two headless Bevy apps talking UDP over loopback),
//! so one person can try the game alone.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use bevy::prelude::*;

use bevy_atomic_matchmaking::prelude::*;

use crate::identity::Identity;

/// Player id of the embedded bot.
pub const BOT_ID: u64 = 1_000_000_007;

/// How many times the player clicked Find match; the embedded bot leaves its lobby and
/// queues again when this changes (both run in this process).
static FIND_MATCH_CLICKS: AtomicU64 = AtomicU64::new(0);

/// Tells the embedded bot (if any) that the player clicked Find match.
pub fn count_find_match_click() {
    FIND_MATCH_CLICKS.fetch_add(1, Ordering::SeqCst);
}

/// The embedded bot's own state.
#[derive(Resource)]
struct Bot {
    category: String,
    join_sent: Option<Duration>,
    /// `FIND_MATCH_CLICKS` when the bot's current match was found.
    clicks_seen: Option<u64>,
}

/// Starts a matchmaking server and one bot client on a background thread; returns the
/// server's address (a free port on 127.0.0.1). The server checks connect tokens with the
/// identity's key (its bot mints one), or is insecure if the identity is.
pub fn start_embedded_server(category: String, identity: &Identity) -> Result<SocketAddr, String> {
    let (tx, rx) = mpsc::channel();
    let identity = identity.clone();
    std::thread::Builder::new()
        .name("embedded-matchmaking".into())
        .spawn(move || {
            let (mut server, mut bot, addr) = match build_apps(category, &identity) {
                Ok(apps) => apps,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            println!("LOBBY embedded_server addr={addr} bot={BOT_ID}");
            let _ = tx.send(Ok(addr));
            loop {
                server.update();
                bot.update();
                std::thread::sleep(Duration::from_millis(4));
            }
        })
        .map_err(|e| format!("cannot spawn a thread: {e}"))?;
    rx.recv_timeout(Duration::from_secs(10))
        .map_err(|e| format!("the server thread did not start: {e}"))?
}

/// The server app (bound to a free loopback port) and the bot app connected to it, both
/// finished and ready to update; and the server's address.
fn build_apps(category: String, identity: &Identity) -> Result<(App, App, SocketAddr), String> {
    let channel = AtomicChannel::default();
    let mut server = App::new();
    server
        .add_plugins(MinimalPlugins)
        .add_plugins(AtomicServerPlugin {
            channel,
            settings: AtomicServerSettings::default(),
        });
    let addr = identity
        .insert_server(
            &mut server,
            "127.0.0.1:0".parse().expect("valid"),
            &[],
            64,
            channel.dedicated_connection_config(),
        )
        .map_err(|e| format!("cannot bind a UDP port: {e}"))?;
    server.add_systems(Update, print_embedded_outcomes);

    let mut bot = App::new();
    bot.add_plugins(MinimalPlugins)
        .add_plugins(AtomicClientPlugin { channel })
        .insert_resource(Bot {
            category,
            join_sent: None,
            clicks_seen: None,
        })
        .add_systems(Update, drive_bot);
    identity
        .insert_client(
            &mut bot,
            addr,
            BOT_ID,
            channel.dedicated_connection_config(),
        )
        .map_err(|e| format!("cannot start the bot: {e}"))?;
    for app in [&mut server, &mut bot] {
        app.finish();
        app.cleanup();
    }
    Ok((server, bot, addr))
}

fn print_embedded_outcomes(mut outcomes: MessageReader<AtomicMatchOutcome>) {
    for o in outcomes.read() {
        if o.status.is_success() {
            println!(
                "LOBBY embedded_server committed match={} lobby={}",
                o.match_id,
                o.lobby_code.as_deref().unwrap_or("-")
            );
        } else {
            println!(
                "LOBBY embedded_server rolled_back match={} status={}",
                o.match_id, o.status
            );
        }
    }
}

/// The bot queues whenever it is idle. It stays in the lobby of its match until the player
/// clicks Find match again, then leaves it (and so queues again).
fn drive_bot(
    time: Res<Time<Real>>,
    state: Res<State<AtomicClientState>>,
    mut bot: ResMut<Bot>,
    mut join: MessageWriter<AtomicJoinQueue>,
    mut leave_lobby: MessageWriter<AtomicLeaveLobby>,
) {
    let now = time.elapsed();
    let clicks = FIND_MATCH_CLICKS.load(Ordering::SeqCst);
    match state.get() {
        AtomicClientState::Idle => {
            bot.clicks_seen = None;
            if bot
                .join_sent
                .is_none_or(|at| now.saturating_sub(at) > Duration::from_secs(1))
            {
                bot.join_sent = Some(now);
                join.write(AtomicJoinQueue {
                    category: bot.category.clone(),
                });
            }
        }
        AtomicClientState::Matched => {
            let seen = *bot.clicks_seen.get_or_insert(clicks);
            if clicks != seen {
                bot.clicks_seen = Some(clicks);
                leave_lobby.write(AtomicLeaveLobby);
            }
        }
        _ => bot.clicks_seen = None,
    }
}
