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
//! - `--client-id N`: the netcode client id, which is also the player id (default: random).
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

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bevy::prelude::*;
use bevy::window::{WindowPosition, WindowResolution};
use bevy::winit::{UpdateMode, WinitSettings};
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::shared::transport::{
    MATCHMAKING_NETCODE_PROTOCOL_ID, insert_netcode_client, insert_netcode_server,
};
use bevy_renet::RenetClient;
use bevy_renet::netcode::{ClientAuthentication, NetcodeClientPlugin, NetcodeClientTransport};

const WINDOW_WIDTH: u32 = 640;
const WINDOW_HEIGHT: u32 = 480;
/// Distance of the action button's bottom edge from the window's bottom edge.
const ACTION_BOTTOM: f32 = 32.0;
/// Height of the action button (its centre is `ACTION_BOTTOM + ACTION_HEIGHT / 2` = 60 px up).
const ACTION_HEIGHT: f32 = 56.0;
const ACTION_WIDTH: f32 = 240.0;

const FONT_PATH: &str = "fonts/DejaVuSans.ttf";
const ICON_PATH: &str = "icons/icon.png";

/// Player id of the embedded bot.
const BOT_ID: u64 = 1_000_000_007;
/// How many times the player clicked Find match; the embedded bot leaves its lobby and
/// queues again when this changes (both run in this process).
static FIND_MATCH_CLICKS: AtomicU64 = AtomicU64::new(0);

const BACKGROUND: Color = Color::srgb(0.07, 0.08, 0.11);
const TEXT: Color = Color::srgb(0.90, 0.91, 0.93);
const DIM: Color = Color::srgb(0.58, 0.61, 0.67);
const ACCENT: Color = Color::srgb(0.23, 0.51, 0.96);
const GOOD: Color = Color::srgb(0.30, 0.80, 0.45);
const WARN: Color = Color::srgb(0.96, 0.62, 0.04);
const BAD: Color = Color::srgb(0.94, 0.33, 0.31);
const BUTTON: Color = Color::srgb(0.16, 0.36, 0.78);
const BUTTON_HOVER: Color = Color::srgb(0.22, 0.44, 0.90);
const BUTTON_PRESSED: Color = Color::srgb(0.12, 0.27, 0.60);

// ---------------------------------------------------------------------------------------
// command line

struct Args {
    server: Option<SocketAddr>,
    category: String,
    client_id: Option<u64>,
    title: Option<String>,
    position: Option<IVec2>,
    assets: PathBuf,
    fps: f64,
    hold_proposal: bool,
}

const USAGE: &str = "usage: lobby [--server ADDR] [--category NAME] [--client-id N] [--title TEXT] [--position X,Y] [--assets DIR] [--fps N] [--hold-proposal]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        server: None,
        category: "casual".into(),
        client_id: None,
        title: None,
        position: None,
        assets: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/assets")),
        fps: 60.0,
        hold_proposal: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--server" => {
                args.server = Some(value()?.parse().map_err(|e| format!("--server: {e}"))?)
            }
            "--category" => {
                let category = value()?;
                bevy_atomic_matchmaking::shared::player::validate_category(&category)
                    .map_err(|e| format!("--category: {e}"))?;
                args.category = category;
            }
            "--client-id" => {
                let id: u64 = value()?.parse().map_err(|e| format!("--client-id: {e}"))?;
                if id == 0 || id == BOT_ID {
                    return Err(format!("--client-id: {id} is reserved"));
                }
                args.client_id = Some(id);
            }
            "--title" => args.title = Some(value()?),
            "--position" => {
                let v = value()?;
                let (x, y) = v
                    .split_once(',')
                    .ok_or(format!("--position: expected X,Y, got {v}"))?;
                let x = x.trim().parse().map_err(|e| format!("--position: {e}"))?;
                let y = y.trim().parse().map_err(|e| format!("--position: {e}"))?;
                args.position = Some(IVec2::new(x, y));
            }
            "--assets" => args.assets = PathBuf::from(value()?),
            "--fps" => {
                let fps: f64 = value()?.parse().map_err(|e| format!("--fps: {e}"))?;
                if !(1.0..=1000.0).contains(&fps) {
                    return Err("--fps must be 1..=1000".into());
                }
                args.fps = fps;
            }
            "--hold-proposal" => args.hold_proposal = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn random_client_id() -> u64 {
    loop {
        let id = fastrand::u64(1..10_000_000);
        if id != BOT_ID {
            return id;
        }
    }
}

// ---------------------------------------------------------------------------------------
// main

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("lobby: {e}");
            std::process::exit(2);
        }
    };
    let client_id = args.client_id.unwrap_or_else(random_client_id);
    let title = args
        .title
        .clone()
        .unwrap_or_else(|| format!("Atomic matchmaking lobby (player {client_id})"));

    let (server, embedded) = match args.server {
        Some(addr) => (addr, false),
        None => match start_embedded_server(args.category.clone()) {
            Ok(addr) => (addr, true),
            Err(e) => {
                eprintln!("lobby: cannot start the embedded server: {e}");
                std::process::exit(1);
            }
        },
    };

    let assets = check_assets(&args.assets);

    let channel = MatchmakingChannel::default();
    let mut window = Window {
        title: title.clone(),
        resolution: WindowResolution::new(WINDOW_WIDTH, WINDOW_HEIGHT)
            .with_scale_factor_override(1.0),
        resizable: false,
        ..default()
    };
    if let Some(position) = args.position {
        window.position = WindowPosition::At(position);
    }

    let mut app = App::new();
    app.add_plugins(
        DefaultPlugins
            .set(WindowPlugin {
                primary_window: Some(window),
                ..default()
            })
            .set(AssetPlugin {
                file_path: args.assets.to_string_lossy().into_owned(),
                ..default()
            }),
    )
    .add_plugins(MatchmakingClientPlugin { channel })
    .add_plugins(NetcodeClientPlugin)
    .insert_resource(MatchmakingClientFaults {
        acknowledge_proposals: !args.hold_proposal,
        ..default()
    })
    .insert_resource(ClearColor(BACKGROUND))
    .insert_resource(WinitSettings {
        focused_mode: UpdateMode::reactive(Duration::from_secs_f64(1.0 / args.fps)),
        unfocused_mode: UpdateMode::reactive_low_power(Duration::from_secs_f64(1.0 / args.fps)),
    })
    .insert_resource(Game {
        server,
        embedded,
        category: args.category,
        client_id,
        fixed_client_id: args.client_id.is_some(),
        title,
        searching: false,
        want_join: false,
        connecting: false,
        in_lobby: false,
        matching_players: 0,
        notice: None,
        rebuild: true,
        last_view: None,
    })
    .insert_resource(assets)
    .add_systems(Startup, setup)
    .add_systems(
        Update,
        (
            watch_assets,
            press_buttons,
            ensure_connection,
            watch_connection,
            follow_matchmaking,
            show_view,
        )
            .chain(),
    )
    .add_systems(Update, color_buttons)
    .add_systems(Last, say_goodbye.after(bevy::window::ExitSystems));
    app.run();
}

// ---------------------------------------------------------------------------------------
// assets

/// What the UI loads from `assets/`; `None` when the file is missing (the UI falls back).
#[derive(Resource, Clone)]
struct UiAssets {
    font: Option<Handle<Font>>,
    icon: Option<Handle<Image>>,
    /// Whether each file exists on disk (checked before the app starts).
    font_on_disk: bool,
    icon_on_disk: bool,
}

fn check_assets(dir: &Path) -> UiAssets {
    let exists = |rel: &str| {
        let path = dir.join(rel);
        let ok = path.is_file();
        if !ok {
            eprintln!(
                "lobby: asset {} is missing: {}",
                path.display(),
                match rel {
                    FONT_PATH => "using Bevy's built-in font instead",
                    _ => "starting without the icon",
                }
            );
            println!("LOBBY missing_asset path={}", path.display());
        }
        ok
    };
    UiAssets {
        font: None,
        icon: None,
        font_on_disk: exists(FONT_PATH),
        icon_on_disk: exists(ICON_PATH),
    }
}

/// Falls back when an asset that exists on disk still fails to load (corrupt file).
fn watch_assets(server: Res<AssetServer>, mut assets: ResMut<UiAssets>, mut game: ResMut<Game>) {
    if let Some(font) = &assets.font
        && let Some(bevy::asset::LoadState::Failed(e)) = server.get_load_state(font)
    {
        eprintln!("lobby: cannot load {FONT_PATH} ({e}): using Bevy's built-in font instead");
        assets.font = None;
        game.rebuild = true;
    }
    if let Some(icon) = &assets.icon
        && let Some(bevy::asset::LoadState::Failed(e)) = server.get_load_state(icon)
    {
        eprintln!("lobby: cannot load {ICON_PATH} ({e}): starting without the icon");
        assets.icon = None;
        game.rebuild = true;
    }
}

// ---------------------------------------------------------------------------------------
// embedded server and bot

#[derive(Resource)]
struct Bot {
    category: String,
    join_sent: Option<Duration>,
    /// `FIND_MATCH_CLICKS` when the bot's current match was found.
    clicks_seen: Option<u64>,
}

/// Starts a matchmaking server and one bot client on a background thread; returns the
/// server's address (a free port on 127.0.0.1).
fn start_embedded_server(category: String) -> Result<SocketAddr, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("embedded-matchmaking".into())
        .spawn(move || {
            let channel = MatchmakingChannel::default();
            let mut server = App::new();
            server
                .add_plugins(MinimalPlugins)
                .add_plugins(MatchmakingServerPlugin {
                    channel,
                    settings: MatchmakingServerSettings::default(),
                });
            let addr = match insert_netcode_server(
                &mut server,
                "127.0.0.1:0".parse().expect("valid"),
                64,
                channel.connection_config(),
            ) {
                Ok(addr) => addr,
                Err(e) => {
                    let _ = tx.send(Err(format!("cannot bind a UDP port: {e}")));
                    return;
                }
            };
            server.add_systems(Update, print_embedded_outcomes);

            let mut bot = App::new();
            bot.add_plugins(MinimalPlugins)
                .add_plugins(MatchmakingClientPlugin { channel })
                .insert_resource(Bot {
                    category,
                    join_sent: None,
                    clicks_seen: None,
                })
                .add_systems(Update, drive_bot);
            if let Err(e) =
                insert_netcode_client(&mut bot, addr, BOT_ID, channel.connection_config())
            {
                let _ = tx.send(Err(format!("cannot start the bot: {e}")));
                return;
            }
            for app in [&mut server, &mut bot] {
                app.finish();
                app.cleanup();
            }
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

fn print_embedded_outcomes(mut outcomes: MessageReader<MatchmakingOutcome>) {
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
    state: Res<State<MatchmakingClientState>>,
    mut bot: ResMut<Bot>,
    mut join: MessageWriter<MatchmakingJoinQueue>,
    mut leave_lobby: MessageWriter<MatchmakingLeaveLobby>,
) {
    let now = time.elapsed();
    let clicks = FIND_MATCH_CLICKS.load(Ordering::SeqCst);
    match state.get() {
        MatchmakingClientState::Idle => {
            bot.clicks_seen = None;
            if bot
                .join_sent
                .is_none_or(|at| now.saturating_sub(at) > Duration::from_secs(1))
            {
                bot.join_sent = Some(now);
                join.write(MatchmakingJoinQueue {
                    category: bot.category.clone(),
                });
            }
        }
        MatchmakingClientState::Matched => {
            let seen = *bot.clicks_seen.get_or_insert(clicks);
            if clicks != seen {
                bot.clicks_seen = Some(clicks);
                leave_lobby.write(MatchmakingLeaveLobby);
            }
        }
        _ => bot.clicks_seen = None,
    }
}

// ---------------------------------------------------------------------------------------
// game state

#[derive(Resource)]
struct Game {
    server: SocketAddr,
    embedded: bool,
    category: String,
    client_id: u64,
    fixed_client_id: bool,
    title: String,
    /// The player asked for a match and has not cancelled.
    searching: bool,
    /// A join request must be written (after connecting if needed).
    want_join: bool,
    /// A connection attempt is under way (not yet welcomed).
    connecting: bool,
    /// The player entered the lobby screen of the current match.
    in_lobby: bool,
    matching_players: u8,
    /// A message shown under the screen's text (cancellation, error).
    notice: Option<(String, Color)>,
    rebuild: bool,
    last_view: Option<View>,
}

#[derive(Component, Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    FindMatch,
    Cancel,
    EnterLobby,
    Leave,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Screen {
    Home,
    Connecting,
    Queued,
    Matching,
    MatchFound,
    Lobby,
}

impl Screen {
    fn name(self) -> &'static str {
        match self {
            Screen::Home => "home",
            Screen::Connecting => "connecting",
            Screen::Queued => "queued",
            Screen::Matching => "matching",
            Screen::MatchFound => "match_found",
            Screen::Lobby => "lobby",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Line {
    text: String,
    color: Color,
    size: f32,
}

fn line(text: impl Into<String>, color: Color, size: f32) -> Line {
    Line {
        text: text.into(),
        color,
        size,
    }
}

/// Everything on screen; the UI is rebuilt when it changes.
#[derive(Clone, Debug, PartialEq)]
struct View {
    screen: Screen,
    heading: Line,
    lines: Vec<Line>,
    button: Option<(String, Action)>,
}

#[derive(Component)]
struct UiRoot;

fn setup(
    mut commands: Commands,
    server: Res<AssetServer>,
    mut assets: ResMut<UiAssets>,
    game: Res<Game>,
) {
    commands.spawn(Camera2d);
    if assets.font_on_disk {
        assets.font = Some(server.load(FONT_PATH));
    }
    if assets.icon_on_disk {
        assets.icon = Some(server.load(ICON_PATH));
    }
    commands.spawn((
        UiRoot,
        Node {
            width: percent(100),
            height: percent(100),
            flex_direction: FlexDirection::Column,
            padding: UiRect::all(px(24)),
            row_gap: px(8),
            ..default()
        },
    ));
    println!(
        "LOBBY ready client_id={} server={} mode={} title=\"{}\"",
        game.client_id,
        game.server,
        if game.embedded {
            "embedded"
        } else {
            "dedicated"
        },
        game.title
    );
}

fn player_name(game: &Game, player: PlayerId) -> String {
    if game.embedded && player == BOT_ID {
        format!("Bot (player {player})")
    } else {
        format!("Player {player}")
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

// ---------------------------------------------------------------------------------------
// input and connection

fn press_buttons(
    buttons: Query<(&Interaction, &Action), Changed<Interaction>>,
    mut game: ResMut<Game>,
    mut leave_queue: MessageWriter<MatchmakingLeaveQueue>,
    mut leave_lobby: MessageWriter<MatchmakingLeaveLobby>,
) {
    for (interaction, action) in &buttons {
        if *interaction != Interaction::Pressed {
            continue;
        }
        println!("LOBBY click action={action:?}");
        match action {
            Action::FindMatch => {
                FIND_MATCH_CLICKS.fetch_add(1, Ordering::SeqCst);
                game.searching = true;
                game.want_join = true;
                game.notice = None;
            }
            Action::Cancel => {
                game.searching = false;
                game.want_join = false;
                game.notice = None;
                leave_queue.write(MatchmakingLeaveQueue);
            }
            Action::EnterLobby => game.in_lobby = true,
            Action::Leave => {
                leave_lobby.write(MatchmakingLeaveLobby);
            }
        }
    }
}

fn netcode_transport(
    server: SocketAddr,
    client_id: u64,
) -> std::io::Result<NetcodeClientTransport> {
    let bind: SocketAddr = if server.is_ipv6() {
        "[::]:0".parse().expect("valid")
    } else {
        "0.0.0.0:0".parse().expect("valid")
    };
    let socket = UdpSocket::bind(bind)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let authentication = ClientAuthentication::Unsecure {
        protocol_id: MATCHMAKING_NETCODE_PROTOCOL_ID,
        client_id,
        server_addr: server,
        user_data: None,
    };
    NetcodeClientTransport::new(now, authentication, socket)
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// Connects on the first Find match (and again after a lost connection), then asks to
/// join the queue; the client plugin sends the join as soon as the server welcomes us.
fn ensure_connection(
    mut commands: Commands,
    mut game: ResMut<Game>,
    channel: Res<MatchmakingChannel>,
    client: Option<Res<RenetClient>>,
    mut join: MessageWriter<MatchmakingJoinQueue>,
) {
    if !game.want_join {
        return;
    }
    game.want_join = false;
    if client.as_ref().is_none_or(|c| c.is_disconnected()) {
        if !game.fixed_client_id && client.is_some() {
            // reconnecting: a fresh id, in case the server still holds the old connection
            game.client_id = random_client_id();
        }
        match netcode_transport(game.server, game.client_id) {
            Ok(transport) => {
                commands.insert_resource(RenetClient::new(channel.connection_config()));
                commands.insert_resource(transport);
                game.connecting = true;
                println!(
                    "LOBBY connecting server={} client_id={}",
                    game.server, game.client_id
                );
            }
            Err(e) => {
                game.searching = false;
                game.notice = Some((format!("Cannot open a UDP socket: {e}"), BAD));
                println!("LOBBY error kind=socket message=\"{e}\"");
                return;
            }
        }
    }
    join.write(MatchmakingJoinQueue {
        category: game.category.clone(),
    });
}

/// Reports a connection attempt that failed before the server welcomed us.
fn watch_connection(
    mut game: ResMut<Game>,
    client: Option<Res<RenetClient>>,
    transport: Option<Res<NetcodeClientTransport>>,
) {
    if !game.connecting {
        return;
    }
    let Some(client) = client else {
        return;
    };
    if !client.is_disconnected() {
        return;
    }
    let reason = transport
        .and_then(|t| t.disconnect_reason())
        .map(|r| r.to_string())
        .or_else(|| client.disconnect_reason().map(|r| r.to_string()))
        .unwrap_or_else(|| "no answer".into());
    game.connecting = false;
    game.searching = false;
    game.notice = Some((
        format!("Could not connect to {}: {reason}", game.server),
        BAD,
    ));
    println!(
        "LOBBY error kind=connect server={} message=\"{reason}\"",
        game.server
    );
}

/// Tells the server right away when the player closes the window, so a match that is
/// forming is rolled back at once instead of after a timeout. (bevy_renet's own
/// `disconnect_on_exit` is not ordered after Bevy's window-close exit in `Last`, so it can
/// miss the exit frame.)
fn say_goodbye(exit: MessageReader<AppExit>, transport: Option<ResMut<NetcodeClientTransport>>) {
    if !exit.is_empty()
        && let Some(mut transport) = transport
    {
        transport.disconnect();
        println!("LOBBY exiting");
    }
}

// ---------------------------------------------------------------------------------------
// matchmaking events

#[derive(bevy::ecs::system::SystemParam)]
struct Events<'w, 's> {
    connected: MessageReader<'w, 's, MatchmakingConnected>,
    joined: MessageReader<'w, 's, MatchmakingQueueJoined>,
    left: MessageReader<'w, 's, MatchmakingQueueLeft>,
    checking: MessageReader<'w, 's, MatchmakingMatchChecking>,
    found: MessageReader<'w, 's, MatchmakingMatchFound>,
    cancelled: MessageReader<'w, 's, MatchmakingMatchCancelled>,
    lobby_left: MessageReader<'w, 's, MatchmakingLobbyLeft>,
    errors: MessageReader<'w, 's, MatchmakingClientError>,
}

fn follow_matchmaking(
    mut game: ResMut<Game>,
    state: Res<State<MatchmakingClientState>>,
    mut ev: Events,
) {
    for c in ev.connected.read() {
        game.connecting = false;
        println!("LOBBY connected player={}", c.player);
    }
    for j in ev.joined.read() {
        println!(
            "LOBBY queued category={} position={} requeued={}",
            j.category, j.position, j.requeued
        );
    }
    for l in ev.left.read() {
        println!("LOBBY left_queue category={}", l.category);
    }
    for c in ev.checking.read() {
        game.matching_players = c.players;
        println!("LOBBY matching match={} players={}", c.match_id, c.players);
    }
    for f in ev.found.read() {
        game.in_lobby = false;
        game.searching = false;
        game.notice = None;
        println!(
            "LOBBY found_message match={} lobby={}",
            f.match_id, f.lobby_code
        );
    }
    for c in ev.cancelled.read() {
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
            game.searching = false;
        }
        game.notice = Some((text, WARN));
        println!(
            "LOBBY cancelled match={} status={} requeued={} reason=\"{}\"",
            c.match_id, c.status, c.requeued, c.reason
        );
    }
    for l in ev.lobby_left.read() {
        game.in_lobby = false;
        game.searching = false;
        println!("LOBBY lobby_left lobby_id={}", l.lobby_id);
    }
    for e in ev.errors.read() {
        game.notice = Some((e.message.clone(), BAD));
        if matches!(
            state.get(),
            MatchmakingClientState::Idle | MatchmakingClientState::Disconnected
        ) {
            // refused (queue full, bad category...) or disconnected: not searching any more
            game.searching = false;
        }
        println!("LOBBY error kind={:?} message=\"{}\"", e.kind, e.message);
    }
}

// ---------------------------------------------------------------------------------------
// the view

fn compute_view(
    game: &Game,
    state: MatchmakingClientState,
    status: &MatchmakingClientStatus,
) -> View {
    let mode = if game.embedded {
        format!("Embedded server on {} with one bot opponent", game.server)
    } else {
        format!("Server {}", game.server)
    };
    let mut lines = Vec::new();
    let (screen, heading, button) = match state {
        MatchmakingClientState::Matched if game.in_lobby => {
            let found = status.found.as_ref();
            let code = found.map_or("-", |f| f.lobby_code.as_str());
            lines.push(line("Players in this lobby:", DIM, 18.0));
            if let Some(f) = found {
                let mut players = vec![(&f.me, true)];
                players.extend(f.others.iter().map(|p| (p, false)));
                for (p, me) in players {
                    let mut text = format!("  {}", player_name(game, p.player));
                    if me {
                        text.push_str(" (you)");
                    }
                    if p.host {
                        text.push_str(" [host]");
                    }
                    lines.push(line(text, TEXT, 20.0));
                }
            }
            (
                Screen::Lobby,
                line(format!("Lobby {code}"), ACCENT, 30.0),
                Some(("Leave".to_string(), Action::Leave)),
            )
        }
        MatchmakingClientState::Matched => {
            let found = status.found.as_ref();
            let code = found.map_or("-", |f| f.lobby_code.as_str());
            lines.push(line(format!("Lobby code: {code}"), TEXT, 26.0));
            if let Some(f) = found {
                lines.push(line(format!("Category: {}", f.category), DIM, 18.0));
                lines.push(line("Your opponents (measured latency):", DIM, 18.0));
                for p in &f.others {
                    let host = if p.host { " [host]" } else { "" };
                    lines.push(line(
                        format!("  {}{host}: {}", player_name(game, p.player), ms(p.latency)),
                        TEXT,
                        20.0,
                    ));
                }
                let host = if f.me.host { " [host]" } else { "" };
                lines.push(line(
                    format!("  You{host}: {}", ms(f.me.latency)),
                    DIM,
                    18.0,
                ));
            }
            (
                Screen::MatchFound,
                line("Match found!", GOOD, 34.0),
                Some(("Enter lobby".to_string(), Action::EnterLobby)),
            )
        }
        MatchmakingClientState::Matching => {
            lines.push(line(
                format!(
                    "Checking that all {} players are still here...",
                    game.matching_players.max(2)
                ),
                TEXT,
                20.0,
            ));
            lines.push(line(
                "The match only starts when every player confirms.",
                DIM,
                18.0,
            ));
            (Screen::Matching, line("Matching", ACCENT, 30.0), None)
        }
        MatchmakingClientState::Queued => {
            let category = status.category.as_deref().unwrap_or(&game.category);
            lines.push(line(format!("Category: {category}"), TEXT, 20.0));
            lines.push(line(
                format!(
                    "Position in queue: {}",
                    status.position.map_or("-".to_string(), |p| format!("#{p}"))
                ),
                TEXT,
                20.0,
            ));
            lines.push(line(
                format!("Waited: {} s", status.waited.as_secs()),
                TEXT,
                20.0,
            ));
            (
                Screen::Queued,
                line("In the queue", ACCENT, 30.0),
                Some(("Cancel".to_string(), Action::Cancel)),
            )
        }
        MatchmakingClientState::Idle | MatchmakingClientState::Disconnected if game.searching => {
            let text = if state == MatchmakingClientState::Disconnected {
                format!("Connecting to {}...", game.server)
            } else {
                "Connected. Joining the queue...".to_string()
            };
            lines.push(line(text, TEXT, 20.0));
            (
                Screen::Connecting,
                line("Connecting", ACCENT, 30.0),
                Some(("Cancel".to_string(), Action::Cancel)),
            )
        }
        MatchmakingClientState::Idle | MatchmakingClientState::Disconnected => {
            lines.push(line(
                "One click to join the queue and get matched.",
                TEXT,
                20.0,
            ));
            lines.push(line(format!("Category: {}", game.category), DIM, 18.0));
            (
                Screen::Home,
                line("Ready to play", TEXT, 30.0),
                Some(("Find match".to_string(), Action::FindMatch)),
            )
        }
    };
    if let Some((text, color)) = &game.notice {
        lines.push(line(text.clone(), *color, 18.0));
    }
    lines.push(line(mode, DIM, 14.0));
    View {
        screen,
        heading,
        lines,
        button,
    }
}

fn show_view(
    mut commands: Commands,
    mut game: ResMut<Game>,
    state: Res<State<MatchmakingClientState>>,
    status: Res<MatchmakingClientStatus>,
    assets: Res<UiAssets>,
    root: Single<Entity, With<UiRoot>>,
) {
    let view = compute_view(&game, *state.get(), &status);
    if !game.rebuild && game.last_view.as_ref() == Some(&view) {
        return;
    }
    let screen_changed = game.last_view.as_ref().map(|v| v.screen) != Some(view.screen);
    game.rebuild = false;
    if screen_changed {
        log_screen(&game, &view, &status);
    }

    let font = assets.font.clone().unwrap_or_default();
    let text = |l: &Line| {
        (
            Text::new(l.text.clone()),
            TextFont {
                font: font.clone().into(),
                font_size: FontSize::Px(l.size),
                ..default()
            },
            TextColor(l.color),
        )
    };
    let root = *root;
    commands.entity(root).despawn_children();
    commands.entity(root).with_children(|ui| {
        // header: icon and name
        ui.spawn(Node {
            flex_direction: FlexDirection::Row,
            align_items: AlignItems::Center,
            column_gap: px(14),
            margin: UiRect::bottom(px(18)),
            ..default()
        })
        .with_children(|header| {
            if let Some(icon) = &assets.icon {
                header.spawn((
                    ImageNode::new(icon.clone()),
                    Node {
                        width: px(48),
                        height: px(48),
                        ..default()
                    },
                ));
            }
            header.spawn(text(&line("Atomic Matchmaking", TEXT, 28.0)));
            header.spawn(text(&line(format!("player {}", game.client_id), DIM, 16.0)));
        });
        ui.spawn(text(&view.heading));
        for l in &view.lines {
            ui.spawn(text(l));
        }
        if let Some((label, action)) = &view.button {
            // the action bar: always at the same place, for players and test scripts
            ui.spawn(Node {
                position_type: PositionType::Absolute,
                left: px(0),
                right: px(0),
                bottom: px(ACTION_BOTTOM),
                justify_content: JustifyContent::Center,
                ..default()
            })
            .with_children(|bar| {
                bar.spawn((
                    Button,
                    *action,
                    Node {
                        width: px(ACTION_WIDTH),
                        height: px(ACTION_HEIGHT),
                        justify_content: JustifyContent::Center,
                        align_items: AlignItems::Center,
                        border_radius: BorderRadius::all(px(10)),
                        ..default()
                    },
                    BackgroundColor(BUTTON),
                ))
                .with_children(|b| {
                    b.spawn(text(&line(label.clone(), Color::WHITE, 22.0)));
                });
            });
        }
    });
    game.last_view = Some(view);
}

/// One parseable stdout line per screen change (what the window test reads).
fn log_screen(game: &Game, view: &View, status: &MatchmakingClientStatus) {
    match view.screen {
        Screen::MatchFound => {
            if let Some(f) = &status.found {
                let others: Vec<String> = f
                    .others
                    .iter()
                    .map(|p| format!("{}:{:.1}ms", p.player, p.latency.as_secs_f64() * 1000.0))
                    .collect();
                println!(
                    "LOBBY match_found lobby={} category={} match={} me={} others={} title=\"{}\"",
                    f.lobby_code,
                    f.category,
                    f.match_id,
                    f.me.player,
                    others.join(","),
                    game.title
                );
            }
        }
        Screen::Queued => {
            println!(
                "LOBBY screen=queued category={} position={} notice=\"{}\"",
                status.category.as_deref().unwrap_or("-"),
                status.position.unwrap_or(0),
                game.notice.as_ref().map_or("", |(t, _)| t.as_str())
            );
            return;
        }
        _ => {}
    }
    println!("LOBBY screen={}", view.screen.name());
}

type ChangedButtons<'w, 's> = Query<
    'w,
    's,
    (&'static Interaction, &'static mut BackgroundColor),
    (Changed<Interaction>, With<Button>),
>;

fn color_buttons(mut buttons: ChangedButtons) {
    for (interaction, mut color) in &mut buttons {
        color.0 = match interaction {
            Interaction::Pressed => BUTTON_PRESSED,
            Interaction::Hovered => BUTTON_HOVER,
            Interaction::None => BUTTON,
        };
    }
}
