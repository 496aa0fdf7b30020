//! One-click lobby game: a Bevy window with UI over the matchmaking client plugin.
//!
//! ```text
//! cargo run --features gui --example lobby                          # embedded server + one bot
//! cargo run --features gui --example lobby -- --server 127.0.0.1:5000   # a dedicated `server`
//! ```
//!
//! Click **Find match**: the window shows, live, connecting, queued (category, position,
//! seconds waited, Cancel), matching (the server checks every player), match found (lobby
//! code, the other players and their measured latency) or a cancelled match with its reason
//! and whether the server put us back in the queue by itself. **Enter lobby** shows the
//! players of the lobby and **Leave** goes back.
//!
//! Without `--server` the game hosts a matchmaking server and one bot opponent on a
//! background thread (two headless Bevy apps talking UDP over loopback), so one person can
//! try it alone. The bot waits in the queue; after a match it stays in the lobby until you
//! click Find match again.
//!
//! Options:
//! - `--server ADDR`: join this dedicated server instead of hosting one.
//! - `--category NAME`: queue category (default `casual`).
//! - `--client-id N`: the player id to connect as (default: random). The game mints its own
//!   connect token for it, standing in for a game's backend.
//! - `--key-file PATH`: the key that mints tokens for a `--server` (default
//!   `target/matchmaking-dev.key` of this crate, the `server` example's default too; created
//!   if missing). The embedded server makes its own key in memory.
//! - `--insecure`: connect with netcode's unsecure mode instead of tokens (the `--server`
//!   must be `--insecure` too): local experiments only.
//! - `--title TEXT`: window title (default `Atomic matchmaking lobby (player ID)`).
//! - `--position X,Y`: window position in pixels.
//! - `--assets DIR`: where the assets are (default: the crate's `assets/`).
//! - `--fps N`: most frames per second (default 60; input still wakes the app at once).
//!   Software renderers do not wait for a display refresh, so this keeps the CPU free.
//! - `--hold-proposal`: testing only; never acknowledge match proposals, so this window
//!   stays on the matching screen for several seconds (the window test closes it then).
//!
//! For scripts, every screen change and matchmaking event is printed to stdout as one line
//! starting with `LOBBY `, for example
//! `LOBBY match_found lobby=K7Q2XM category=casual me=42 others=7:0.4ms`.
//!
//! Layout (fixed, for test scripts): the window is 640×480 logical pixels at scale 1 and the
//! action button (Find match, Cancel, Enter lobby, Leave) is centred horizontally with its
//! centre 60 pixels above the bottom edge.
//!
//! Modules: `args` (the command line), `embedded` (the embedded server and bot), `state`
//! (the game's resources), `network` (connecting, the goodbye on exit, following the
//! matchmaking messages), `view` (what each screen shows), `ui` (showing a view, the
//! buttons, the colours) and `assets` (the font and icon).

mod args;
mod assets;
mod embedded;
#[path = "../common/identity.rs"]
mod identity;
mod network;
mod state;
mod ui;
mod view;

use std::time::Duration;

use bevy::prelude::*;
use bevy::window::{WindowPosition, WindowResolution};
use bevy::winit::{UpdateMode, WinitSettings};

use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::atomic::AtomicClientFaults;

use args::{Args, parse_args, random_client_id};
use assets::{UiAssets, check_assets, watch_assets};
use embedded::start_embedded_server;
use identity::Identity;
use network::{ensure_connection, follow_matchmaking, say_goodbye};
use state::{Connection, LobbyConfig, ScreenState};
use ui::{
    BACKGROUND, ViewCache, WINDOW_HEIGHT, WINDOW_WIDTH, color_buttons, press_buttons, setup,
    show_view,
};

fn main() {
    let args = parse_args();
    let client_id = args.client_id.unwrap_or_else(random_client_id);
    let title = args
        .title
        .clone()
        .unwrap_or_else(|| format!("Atomic matchmaking lobby (player {client_id})"));
    let identity = if args.server.is_some() || args.identity.insecure {
        args.identity.load("lobby").unwrap_or_else(|e| {
            eprintln!("lobby: {e}");
            std::process::exit(1);
        })
    } else {
        Identity::in_memory()
    };
    let (server, embedded) = match args.server {
        Some(addr) => (addr, false),
        None => match start_embedded_server(args.category.clone(), &identity) {
            Ok(addr) => (addr, true),
            Err(e) => {
                eprintln!("lobby: cannot start the embedded server: {e}");
                std::process::exit(1);
            }
        },
    };
    let assets = check_assets(&args.assets);
    let config = LobbyConfig {
        server,
        embedded,
        category: args.category.clone(),
        fixed_client_id: args.client_id.is_some(),
        title,
        identity,
    };
    let connection = Connection {
        client_id,
        connecting: false,
        join_pending: false,
        attempts: 0,
    };
    build_app(&args, config, connection, assets).run();
}

/// The window, the matchmaking client and the game's systems.
fn build_app(args: &Args, config: LobbyConfig, connection: Connection, assets: UiAssets) -> App {
    let frame = Duration::from_secs_f64(1.0 / args.fps);
    let mut app = App::new();
    app.add_plugins(
        DefaultPlugins
            .set(WindowPlugin {
                primary_window: Some(primary_window(&config.title, args.position)),
                ..default()
            })
            .set(AssetPlugin {
                file_path: args.assets.to_string_lossy().into_owned(),
                ..default()
            }),
    )
    .add_plugins(AtomicClientPlugin {
        channel: AtomicChannel::default(),
    })
    .insert_resource(AtomicClientFaults {
        acknowledge_proposals: !args.hold_proposal,
        ..default()
    })
    .insert_resource(ClearColor(BACKGROUND))
    .insert_resource(WinitSettings {
        focused_mode: UpdateMode::reactive(frame),
        unfocused_mode: UpdateMode::reactive_low_power(frame),
    })
    .insert_resource(config)
    .insert_resource(connection)
    .init_resource::<ScreenState>()
    .init_resource::<ViewCache>()
    .insert_resource(assets)
    .add_systems(Startup, setup)
    .add_systems(
        Update,
        (
            watch_assets,
            press_buttons,
            ensure_connection,
            follow_matchmaking,
            show_view,
        )
            .chain(),
    )
    .add_systems(Update, color_buttons)
    .add_systems(Last, say_goodbye.after(bevy::window::ExitSystems));
    app
}

/// The fixed-size window (640×480 at scale 1), at `position` if given.
fn primary_window(title: &str, position: Option<IVec2>) -> Window {
    let mut window = Window {
        title: title.to_string(),
        resolution: WindowResolution::new(WINDOW_WIDTH, WINDOW_HEIGHT)
            .with_scale_factor_override(1.0),
        resizable: false,
        ..default()
    };
    if let Some(position) = position {
        window.position = WindowPosition::At(position);
    }
    window
}
