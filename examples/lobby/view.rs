//! What to show: one function per screen computes its [`View`] from the client plugin's
//! state and status and the game's resources; `ui.rs` turns a view into UI nodes.

use std::time::Duration;

use bevy::prelude::*;

use bevy_atomic_matchmaking::prelude::*;

use crate::embedded::BOT_ID;
use crate::state::{LobbyConfig, ScreenState};
use crate::ui::{ACCENT, Action, DIM, GOOD, TEXT};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    Home,
    Connecting,
    Queued,
    Matching,
    MatchFound,
    Lobby,
}

impl Screen {
    /// The name in `LOBBY screen=...` lines.
    pub fn name(self) -> &'static str {
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

/// One line of text.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub text: String,
    pub color: Color,
    pub size: f32,
}

pub fn line(text: impl Into<String>, color: Color, size: f32) -> Line {
    Line {
        text: text.into(),
        color,
        size,
    }
}

/// Everything on screen; the UI is rebuilt when it changes.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    pub screen: Screen,
    pub heading: Line,
    pub lines: Vec<Line>,
    /// The action button's label and action.
    pub button: Option<(String, Action)>,
}

impl View {
    fn new(screen: Screen, heading: Line, button: Option<(&str, Action)>) -> Self {
        View {
            screen,
            heading,
            lines: Vec::new(),
            button: button.map(|(label, action)| (label.to_string(), action)),
        }
    }

    fn push(&mut self, text: impl Into<String>, color: Color, size: f32) {
        self.lines.push(line(text, color, size));
    }
}

/// The view of the current screen, with the notice (if any) and the server line under it.
pub fn compute_view(
    config: &LobbyConfig,
    screen: &ScreenState,
    state: AtomicClientState,
    status: &AtomicClientStatus,
) -> View {
    use AtomicClientState as S;
    let mut view = match state {
        S::Matched if screen.in_lobby => lobby_view(config, status),
        S::Matched => match_found_view(config, status),
        S::Matching => matching_view(screen),
        S::Queued => queued_view(config, status),
        S::Idle | S::Disconnected if screen.searching => connecting_view(config, state),
        S::Idle | S::Disconnected => home_view(config),
        S::ServerClosing => closing_view(),
    };
    if let Some((text, color)) = &screen.notice {
        view.push(text.clone(), *color, 18.0);
    }
    let mode = if config.embedded {
        format!("Embedded server on {} with one bot opponent", config.server)
    } else {
        format!("Server {}", config.server)
    };
    view.push(mode, DIM, 14.0);
    view
}

/// The server drains: nothing to do here but wait for another server.
fn closing_view() -> View {
    let mut view = View::new(
        Screen::Home,
        line("The server is closing", TEXT, 30.0),
        None,
    );
    view.push("Reconnect to another server to play.", TEXT, 20.0);
    view
}

/// Not searching: the Find match button.
fn home_view(config: &LobbyConfig) -> View {
    let mut view = View::new(
        Screen::Home,
        line("Ready to play", TEXT, 30.0),
        Some(("Find match", Action::FindMatch)),
    );
    view.push("One click to join the queue and get matched.", TEXT, 20.0);
    view.push(format!("Category: {}", config.category), DIM, 18.0);
    view
}

/// Searching, but not in the queue yet.
fn connecting_view(config: &LobbyConfig, state: AtomicClientState) -> View {
    let mut view = View::new(
        Screen::Connecting,
        line("Connecting", ACCENT, 30.0),
        Some(("Cancel", Action::Cancel)),
    );
    let text = if state == AtomicClientState::Disconnected {
        format!("Connecting to {}...", config.server)
    } else {
        "Connected. Joining the queue...".to_string()
    };
    view.push(text, TEXT, 20.0);
    view
}

/// In the queue: category, position and seconds waited.
fn queued_view(config: &LobbyConfig, status: &AtomicClientStatus) -> View {
    let mut view = View::new(
        Screen::Queued,
        line("In the queue", ACCENT, 30.0),
        Some(("Cancel", Action::Cancel)),
    );
    let category = status.category.as_deref().unwrap_or(&config.category);
    let position = status.position.map_or("-".to_string(), |p| format!("#{p}"));
    view.push(format!("Category: {category}"), TEXT, 20.0);
    view.push(format!("Position in queue: {position}"), TEXT, 20.0);
    view.push(format!("Waited: {} s", status.waited.as_secs()), TEXT, 20.0);
    view
}

/// A match is forming: the server checks every player.
fn matching_view(screen: &ScreenState) -> View {
    let mut view = View::new(Screen::Matching, line("Matching", ACCENT, 30.0), None);
    view.push(
        format!(
            "Checking that all {} players are still here...",
            screen.matching_players.max(2)
        ),
        TEXT,
        20.0,
    );
    view.push(
        "The match only starts when every player confirms.",
        DIM,
        18.0,
    );
    view
}

/// The match is committed: lobby code, opponents and their latency.
fn match_found_view(config: &LobbyConfig, status: &AtomicClientStatus) -> View {
    let mut view = View::new(
        Screen::MatchFound,
        line("Match found!", GOOD, 34.0),
        Some(("Enter lobby", Action::EnterLobby)),
    );
    let found = status.found.as_ref();
    let code = found.map_or("-", |f| f.lobby_code.as_str());
    view.push(format!("Lobby code: {code}"), TEXT, 26.0);
    let Some(f) = found else {
        return view;
    };
    view.push(format!("Category: {}", f.category), DIM, 18.0);
    view.push("Your opponents (measured latency):", DIM, 18.0);
    for p in &f.others {
        let host = if p.host { " [host]" } else { "" };
        let name = player_name(config, p.player);
        view.push(format!("  {name}{host}: {}", ms(p.latency)), TEXT, 20.0);
    }
    let host = if f.me.host { " [host]" } else { "" };
    view.push(format!("  You{host}: {}", ms(f.me.latency)), DIM, 18.0);
    view
}

/// Inside the lobby: its players, with the Leave button.
fn lobby_view(config: &LobbyConfig, status: &AtomicClientStatus) -> View {
    let found = status.found.as_ref();
    let code = found.map_or("-", |f| f.lobby_code.as_str());
    let mut view = View::new(
        Screen::Lobby,
        line(format!("Lobby {code}"), ACCENT, 30.0),
        Some(("Leave", Action::Leave)),
    );
    view.push("Players in this lobby:", DIM, 18.0);
    let Some(f) = found else {
        return view;
    };
    let players = std::iter::once((&f.me, true)).chain(f.others.iter().map(|p| (p, false)));
    for (p, me) in players {
        let mut text = format!("  {}", player_name(config, p.player));
        if me {
            text.push_str(" (you)");
        }
        if p.host {
            text.push_str(" [host]");
        }
        view.push(text, TEXT, 20.0);
    }
    view
}

fn player_name(config: &LobbyConfig, player: PlayerId) -> String {
    if config.embedded && player == BOT_ID {
        format!("Bot (player {player})")
    } else {
        format!("Player {player}")
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// One parseable stdout line per screen change (what the window test reads).
pub fn log_screen(
    config: &LobbyConfig,
    screen: &ScreenState,
    view: &View,
    status: &AtomicClientStatus,
) {
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
                    config.title
                );
            }
        }
        Screen::Queued => {
            println!(
                "LOBBY screen=queued category={} position={} notice=\"{}\"",
                status.category.as_deref().unwrap_or("-"),
                status.position.unwrap_or(0),
                screen.notice.as_ref().map_or("", |(t, _)| t.as_str())
            );
            return;
        }
        _ => {}
    }
    println!("LOBBY screen={}", view.screen.name());
}
