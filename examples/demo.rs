//! The first thing to run: a matchmaking server and 8 bots (2 of them flaky) in one
//! process over UDP on loopback. Prints each match and rollback as it happens and a
//! summary, and exits within 30 seconds.
//!
//! Secure like a real deployment: the server checks connect tokens against a key made in
//! memory for this run, and each bot connects with a token minted from it for its player id.
//!
//! ```text
//! cargo run --example demo
//! ```

#[path = "common/bot.rs"]
mod bot;
#[path = "common/identity.rs"]
mod identity;

use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_atomic_matchmaking::prelude::*;
use bot::{Bot, Flaw, bot_app, percentile_ms};
use identity::Identity;

const BOTS: usize = 8;
const RUN_FOR: Duration = Duration::from_secs(15);

#[derive(Resource, Default)]
struct Printed(Vec<String>);

fn main() {
    let channel = AtomicChannel::default();
    let mut server = App::new();
    server
        .add_plugins(MinimalPlugins)
        .add_plugins(AtomicServerPlugin {
            channel,
            ..default()
        })
        .init_resource::<Printed>()
        .add_systems(Update, describe_outcomes);
    let identity = Identity::in_memory();
    let addr = identity
        .insert_server(
            &mut server,
            "127.0.0.1:0".parse().expect("valid"),
            &[],
            64,
            channel.dedicated_connection_config(),
        )
        .unwrap_or_else(|e| {
            eprintln!("demo: cannot bind a UDP port on 127.0.0.1: {e}");
            std::process::exit(1);
        });
    println!(
        "demo: matchmaking server on {addr} ({}); {BOTS} bots, 2 of them flaky, for {} s",
        identity.describe(None),
        RUN_FOR.as_secs()
    );
    println!(
        "demo: bot 0 drops its connection when proposed a match; bot 1 answers health pings 800 ms late\n"
    );

    server.finish(); // the loop below drives it by update(), so finish its set-up here
    server.cleanup();
    let mut bots = spawn_bots(addr, &identity);

    let started = Instant::now();
    let frame = Duration::from_secs_f64(1.0 / 60.0);
    while started.elapsed() < RUN_FOR {
        let tick = Instant::now();
        server.update();
        for line in server.world_mut().resource_mut::<Printed>().0.drain(..) {
            println!("[{:>5.2}s] {line}", started.elapsed().as_secs_f64());
        }
        for app in &mut bots {
            app.update();
            app.world_mut().resource_mut::<Bot>().lines.clear();
        }
        if let Some(rest) = frame.checked_sub(tick.elapsed()) {
            std::thread::sleep(rest);
        }
    }

    let stats = server.world().resource::<AtomicServerStats>();
    let mut waits: Vec<Duration> = bots
        .iter()
        .flat_map(|a| a.world().resource::<Bot>().waits.clone())
        .collect();
    println!("\ndemo: summary after {} s", RUN_FOR.as_secs());
    println!(
        "  matches committed {}, rolled back {} {:?}, players re-queued at the front {}",
        stats.matches_committed,
        stats.matches_rolled_back,
        stats.rollbacks_by_status,
        stats.players_requeued
    );
    println!(
        "  wait until matched: p50 {} ms, p99 {} ms; time to commit p50 {} ms",
        percentile_ms(&mut waits, 0.5),
        percentile_ms(&mut waits, 0.99),
        stats.time_to_commit.percentiles().p50.as_millis()
    );
    for app in &bots {
        let bot = app.world().resource::<Bot>();
        println!(
            "  bot {} (player {}){}: matched {} times, cancelled {} times{}",
            bot.index,
            bot.player,
            bot.flaw
                .map(|f| format!(" [{}]", f.0.name()))
                .unwrap_or_default(),
            bot.matched,
            bot.cancelled,
            if bot.gone { ", left" } else { "" }
        );
    }
    if stats.matches_committed == 0 {
        eprintln!("demo: no match committed; something is wrong");
        std::process::exit(1);
    }
}

/// The bots: bot 0 drops its connection when proposed a match, bot 1 answers pings late.
fn spawn_bots(addr: std::net::SocketAddr, identity: &Identity) -> Vec<App> {
    let mut bots = Vec::new();
    for i in 0..BOTS {
        let flaw = match i {
            0 => Some((Flaw::DisconnectWhenProposed, Duration::ZERO)),
            1 => Some((Flaw::SlowPongs, Duration::ZERO)),
            _ => None,
        };
        let bot = Bot::new(i, 1000 + i as u64, "duel".into(), flaw, true, 42 + i as u64);
        bots.push(bot_app(addr, bot, identity).unwrap_or_else(|e| {
            eprintln!("demo: bot {i} cannot connect: {e}");
            std::process::exit(1);
        }));
    }
    bots
}

fn describe_outcomes(
    mut outcomes: MessageReader<AtomicMatchOutcome>,
    mut printed: ResMut<Printed>,
) {
    for o in outcomes.read() {
        let players: Vec<String> = o
            .players
            .iter()
            .map(|p| match p.health.latency() {
                Some(l) => format!("{} ({} ms)", p.player, l.as_millis()),
                None => format!("{} ({:?})", p.player, p.health),
            })
            .collect();
        printed.0.push(if o.status.is_success() {
            format!(
                "match {:>2} COMMITTED   lobby {} players {}",
                o.match_id,
                o.lobby_code.as_deref().unwrap_or("-"),
                players.join(", ")
            )
        } else {
            format!(
                "match {:>2} ROLLED BACK {} players {} -> re-queued {:?}",
                o.match_id,
                o.status,
                players.join(", "),
                o.requeued
            )
        });
    }
}
