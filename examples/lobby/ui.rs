//! The window's UI: the root node, showing a [`View`] (rebuilt only when it changes), the
//! action button and what its clicks do, and the colours.

use bevy::prelude::*;

use bevy_atomic_matchmaking::prelude::*;

use crate::assets::{UiAssets, load_assets};
use crate::embedded::count_find_match_click;
use crate::state::{Connection, LobbyConfig, ScreenState};
use crate::view::{Line, View, compute_view, line, log_screen};

// Layout (fixed, for test scripts): see the module doc of `main.rs`.
pub const WINDOW_WIDTH: u32 = 640;
pub const WINDOW_HEIGHT: u32 = 480;
/// Distance of the action button's bottom edge from the window's bottom edge.
const ACTION_BOTTOM: f32 = 32.0;
/// Height of the action button (its centre is `ACTION_BOTTOM + ACTION_HEIGHT / 2` = 60 px up).
const ACTION_HEIGHT: f32 = 56.0;
const ACTION_WIDTH: f32 = 240.0;

pub const BACKGROUND: Color = Color::srgb(0.07, 0.08, 0.11);
pub const TEXT: Color = Color::srgb(0.90, 0.91, 0.93);
pub const DIM: Color = Color::srgb(0.58, 0.61, 0.67);
pub const ACCENT: Color = Color::srgb(0.23, 0.51, 0.96);
pub const GOOD: Color = Color::srgb(0.30, 0.80, 0.45);
pub const WARN: Color = Color::srgb(0.96, 0.62, 0.04);
pub const BAD: Color = Color::srgb(0.94, 0.33, 0.31);
const BUTTON: Color = Color::srgb(0.16, 0.36, 0.78);
const BUTTON_HOVER: Color = Color::srgb(0.22, 0.44, 0.90);
const BUTTON_PRESSED: Color = Color::srgb(0.12, 0.27, 0.60);

/// What the action button does.
#[derive(Component, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    FindMatch,
    Cancel,
    EnterLobby,
    Leave,
}

/// The UI's root node; its children are rebuilt from each new [`View`].
#[derive(Component)]
pub struct UiRoot;

/// The view on screen, so that the UI is only rebuilt when the view changes.
#[derive(Resource)]
pub struct ViewCache {
    pub last: Option<View>,
    /// Rebuild even if the view is the same (an asset fell back).
    pub rebuild: bool,
}

impl Default for ViewCache {
    fn default() -> Self {
        ViewCache {
            last: None,
            rebuild: true,
        }
    }
}

/// Spawns the camera and the UI root and starts loading the assets.
pub fn setup(
    mut commands: Commands,
    server: Res<AssetServer>,
    mut assets: ResMut<UiAssets>,
    config: Res<LobbyConfig>,
    connection: Res<Connection>,
) {
    commands.spawn(Camera2d);
    load_assets(&server, &mut assets);
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
        connection.client_id,
        config.server,
        if config.embedded {
            "embedded"
        } else {
            "dedicated"
        },
        config.title
    );
}

/// What the action button's clicks do.
pub fn press_buttons(
    buttons: Query<(&Interaction, &Action), Changed<Interaction>>,
    mut connection: ResMut<Connection>,
    mut screen: ResMut<ScreenState>,
    mut leave_queue: MessageWriter<AtomicLeaveQueue>,
    mut leave_lobby: MessageWriter<AtomicLeaveLobby>,
) {
    for (interaction, action) in &buttons {
        if *interaction != Interaction::Pressed {
            continue;
        }
        println!("LOBBY click action={action:?}");
        match action {
            Action::FindMatch => {
                count_find_match_click();
                screen.searching = true;
                connection.join_pending = true;
                screen.notice = None;
            }
            Action::Cancel => {
                screen.searching = false;
                connection.join_pending = false;
                screen.notice = None;
                leave_queue.write(AtomicLeaveQueue);
            }
            Action::EnterLobby => screen.in_lobby = true,
            Action::Leave => {
                leave_lobby.write(AtomicLeaveLobby);
            }
        }
    }
}

/// Rebuilds the UI when the view changed, and logs each screen change.
pub fn show_view(
    mut commands: Commands,
    mut cache: ResMut<ViewCache>,
    config: Res<LobbyConfig>,
    connection: Res<Connection>,
    screen: Res<ScreenState>,
    state: Res<State<AtomicClientState>>,
    status: Res<AtomicClientStatus>,
    assets: Res<UiAssets>,
    root: Single<Entity, With<UiRoot>>,
) {
    let view = compute_view(&config, &screen, *state.get(), &status);
    if !cache.rebuild && cache.last.as_ref() == Some(&view) {
        return;
    }
    let screen_changed = cache.last.as_ref().map(|v| v.screen) != Some(view.screen);
    cache.rebuild = false;
    if screen_changed {
        log_screen(&config, &screen, &view, &status);
    }

    let font = assets.font.clone().unwrap_or_default();
    let root = *root;
    commands.entity(root).despawn_children();
    commands.entity(root).with_children(|ui| {
        spawn_header(ui, &font, assets.icon.as_ref(), connection.client_id);
        ui.spawn(text(&font, &view.heading));
        for l in &view.lines {
            ui.spawn(text(&font, l));
        }
        if let Some((label, action)) = &view.button {
            spawn_action_bar(ui, &font, label, *action);
        }
    });
    cache.last = Some(view);
}

/// A text node showing this line.
fn text(font: &Handle<Font>, l: &Line) -> (Text, TextFont, TextColor) {
    (
        Text::new(l.text.clone()),
        TextFont {
            font: font.clone().into(),
            font_size: FontSize::Px(l.size),
            ..default()
        },
        TextColor(l.color),
    )
}

/// The header: icon, name and our player id.
fn spawn_header(
    ui: &mut ChildSpawnerCommands,
    font: &Handle<Font>,
    icon: Option<&Handle<Image>>,
    client_id: u64,
) {
    ui.spawn(Node {
        flex_direction: FlexDirection::Row,
        align_items: AlignItems::Center,
        column_gap: px(14),
        margin: UiRect::bottom(px(18)),
        ..default()
    })
    .with_children(|header| {
        if let Some(icon) = icon {
            header.spawn((
                ImageNode::new(icon.clone()),
                Node {
                    width: px(48),
                    height: px(48),
                    ..default()
                },
            ));
        }
        header.spawn(text(font, &line("Atomic Matchmaking", TEXT, 28.0)));
        header.spawn(text(font, &line(format!("player {client_id}"), DIM, 16.0)));
    });
}

/// The action bar: always at the same place, for players and test scripts.
fn spawn_action_bar(
    ui: &mut ChildSpawnerCommands,
    font: &Handle<Font>,
    label: &str,
    action: Action,
) {
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
            action,
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
            b.spawn(text(font, &line(label, Color::WHITE, 22.0)));
        });
    });
}

type ChangedButtons<'w, 's> = Query<
    'w,
    's,
    (&'static Interaction, &'static mut BackgroundColor),
    (Changed<Interaction>, With<Button>),
>;

/// Hover and press colours of the buttons.
pub fn color_buttons(mut buttons: ChangedButtons) {
    for (interaction, mut color) in &mut buttons {
        color.0 = match interaction {
            Interaction::Pressed => BUTTON_PRESSED,
            Interaction::Hovered => BUTTON_HOVER,
            Interaction::None => BUTTON,
        };
    }
}
