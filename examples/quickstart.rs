// A matchmaking server and two games in one process, over UDP on loopback: both games join
// the "duel" queue, the server checks that both are healthy, opens a lobby and commits the
// match, and each game prints its lobby code. A real game runs one `App` and calls `run()`.
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::transport::{
    MatchmakingPrivateKey, MatchmakingTokenIssuer, insert_secure_netcode_client,
    insert_secure_netcode_server,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let channel = AtomicChannel::default(); // channel id 3, after renet's defaults
    // The key your backend mints connect tokens with; your servers check tokens with it.
    // (A deployment loads it: `MatchmakingPrivateKey::load_or_create(path)`.)
    let key = MatchmakingPrivateKey::generate();

    // The dedicated server: start the game when a match commits.
    let mut server = App::new();
    server
        .add_plugins(MinimalPlugins)
        .add_plugins(AtomicServerPlugin {
            channel,
            ..default()
        })
        .add_systems(
            Update,
            (|mut committed: MessageReader<AtomicMatchCommitted>| {
                for m in committed.read() {
                    println!(
                        "server: match {} committed in lobby {} with {:?}",
                        m.match_id, m.lobby_code, m.players
                    );
                }
            })
            .after(AtomicServerSystems::Advance),
        );
    let addr = insert_secure_netcode_server(
        &mut server,
        "127.0.0.1:0".parse()?,
        64,
        channel.connection_config(),
        &key,
    )?;

    // The backend authenticates each player and mints its token: the server knows a game as
    // player 1 because its token says so, whatever the client would like to be.
    let backend = MatchmakingTokenIssuer::new(&key);
    let mut games = Vec::new();
    for player in [1, 2] {
        let mut game = game(player, channel);
        let token = backend.issue(player, Duration::from_secs(60), &[addr], &[])?;
        insert_secure_netcode_client(&mut game, token, channel.connection_config())?;
        games.push(game);
    }

    // `App::run()` would finish the plugins' set-up; these three apps run by `update()`.
    for app in std::iter::once(&mut server).chain(&mut games) {
        app.finish();
        app.cleanup();
    }

    // Run the three apps until both games are in the match.
    let matched = |game: &App| {
        *game.world().resource::<State<AtomicClientState>>().get() == AtomicClientState::Matched
    };
    let started = Instant::now();
    while !games.iter().all(matched) {
        if started.elapsed() > Duration::from_secs(10) {
            return Err("no match within 10 s".into());
        }
        server.update();
        games.iter_mut().for_each(App::update);
        std::thread::sleep(Duration::from_millis(2));
    }
    let codes: Vec<Option<String>> = games
        .iter()
        .map(|game| {
            game.world()
                .resource::<AtomicClientStatus>()
                .found
                .as_ref()
                .map(|f| f.lobby_code.clone())
        })
        .collect();
    assert!(
        codes[0].is_some() && codes[0] == codes[1],
        "one lobby: {codes:?}"
    );
    assert_eq!(
        server
            .world()
            .resource::<AtomicServerStats>()
            .matches_committed,
        1
    );
    Ok(())
}

/// A game: joins the "duel" queue at start-up and prints what happens to its ticket.
fn game(player: PlayerId, channel: AtomicChannel) -> App {
    let mut game = App::new();
    game.add_plugins(MinimalPlugins)
        .add_plugins(AtomicClientPlugin { channel })
        .add_systems(Startup, |mut join: MessageWriter<AtomicJoinQueue>| {
            join.write(AtomicJoinQueue {
                category: "duel".into(),
            });
        })
        .add_systems(
            Update,
            move |mut joined: MessageReader<AtomicQueueJoined>| {
                for j in joined.read() {
                    println!(
                        "player {player}: queued for {} at position {}",
                        j.category, j.position
                    );
                }
            },
        )
        .add_systems(Update, move |mut found: MessageReader<AtomicMatchFound>| {
            for f in found.read() {
                let others: Vec<PlayerId> = f.others.iter().map(|o| o.player).collect();
                println!(
                    "player {player}: play in lobby {} against {others:?}",
                    f.lobby_code
                );
            }
        });
    game
}
