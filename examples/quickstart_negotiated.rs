// Negotiated matchmaking in one process, over UDP on loopback: a relay that only stores and
// forwards facts, and two games that pair themselves (one posts a request, the other bids, the
// requester accepts). Each game prints who it plays against. A real game calls `run()`.
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::transport::{
    MatchmakingPrivateKey, MatchmakingTokenIssuer, insert_secure_netcode_client,
    insert_secure_netcode_server,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let channel = NegotiatedChannel::default(); // channel id 4
    let key = MatchmakingPrivateKey::generate(); // the backend's (see Identity)

    // The relay: stores and forwards facts, tells the time. No matchmaking logic.
    let mut relay = App::new();
    relay
        .add_plugins(MinimalPlugins)
        .add_plugins(NegotiatedRelayPlugin {
            channel,
            settings: NegotiatedRelaySettings {
                frame_duration: Duration::from_secs(60), // requests live 1 to 2 minutes
                ..default()
            },
        });
    let addr = insert_secure_netcode_server(
        &mut relay,
        "127.0.0.1:0".parse()?,
        64,
        channel.connection_config(),
        &key,
    )?;
    let backend = MatchmakingTokenIssuer::new(&key);

    // Two games: search, then react to the match.
    let mut games = Vec::new();
    for player in [1, 2] {
        let mut game = App::new();
        game.add_plugins(MinimalPlugins)
            .add_plugins(NegotiatedClientPlugin {
                channel,
                ..default()
            })
            .add_systems(Startup, |mut search: MessageWriter<NegotiatedSearch>| {
                search.write(NegotiatedSearch {
                    category: "duel".into(),
                });
            })
            .add_systems(
                Update,
                move |mut found: MessageReader<NegotiatedMatchFound>| {
                    for f in found.read() {
                        println!(
                            "player {player}: play against {} (as {:?})",
                            f.other, f.role
                        );
                    }
                },
            );
        let token = backend.issue(player, Duration::from_secs(60), &[addr], &[])?;
        insert_secure_netcode_client(&mut game, token, channel.connection_config())?;
        games.push(game);
    }

    // `App::run()` would finish the plugins' set-up; these three apps run by `update()`.
    for app in std::iter::once(&mut relay).chain(&mut games) {
        app.finish();
        app.cleanup();
    }

    // Run the three apps until both games are matched.
    let matched = |game: &App| {
        *game
            .world()
            .resource::<State<NegotiatedClientState>>()
            .get()
            == NegotiatedClientState::Matched
    };
    let started = Instant::now();
    while !games.iter().all(matched) {
        if started.elapsed() > Duration::from_secs(10) {
            return Err("not matched within 10 s".into());
        }
        relay.update();
        games.iter_mut().for_each(App::update);
        std::thread::sleep(Duration::from_millis(2));
    }
    let found = games[0]
        .world()
        .resource::<NegotiatedClientStatus>()
        .found
        .clone();
    assert_eq!(found.map(|f| f.other), Some(2));
    Ok(())
}
