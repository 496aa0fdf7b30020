//! What both client plugins add for themselves, and [`MatchmakingPlugins`], the plugin group
//! of the crate.

use bevy::app::PluginGroupBuilder;
use bevy::prelude::*;
use bevy::state::app::StatesPlugin;
use bevy_renet::{RenetClientPlugin, RenetServerPlugin};

/// What a plugin of this crate needs from bevy_renet and Bevy, and the part of its set-up
/// that needs them.
///
/// When the app already has every plugin it needs, `setup` runs at once. Otherwise it runs
/// in [`Plugin::finish`], after the game has added all of its own plugins, and only the
/// ones still missing are added then. So the game may add `RenetClientPlugin`,
/// `RenetServerPlugin`, `StatesPlugin`, `MinimalPlugins` or `DefaultPlugins` before or after
/// ours, or not at all. `App::run` calls `finish`; an app driven by `App::update` calls
/// `app.finish()` and `app.cleanup()` first, as Bevy asks for every plugin (until it does,
/// the plugin logs an error once and its systems wait).
#[derive(Clone, Copy)]
pub(crate) struct Dependencies {
    /// The plugin asking, for messages.
    pub who: &'static str,
    /// bevy_renet's client plugin.
    pub renet_client: bool,
    /// bevy_renet's server plugin.
    pub renet_server: bool,
    /// Bevy's states.
    pub states: bool,
}

impl Dependencies {
    /// A client plugin's: bevy_renet's client plugin and Bevy's states.
    #[cfg_attr(not(any(feature = "client", feature = "negotiated")), allow(dead_code))]
    pub(crate) const fn client(who: &'static str) -> Self {
        Self {
            who,
            renet_client: true,
            renet_server: false,
            states: true,
        }
    }

    /// A server plugin's: bevy_renet's server plugin.
    #[cfg_attr(not(any(feature = "server", feature = "negotiated")), allow(dead_code))]
    pub(crate) const fn server(who: &'static str) -> Self {
        Self {
            who,
            renet_client: false,
            renet_server: true,
            states: false,
        }
    }

    /// Whether the app has all of them.
    fn present(&self, app: &App) -> bool {
        (!self.renet_client || app.is_plugin_added::<RenetClientPlugin>())
            && (!self.renet_server || app.is_plugin_added::<RenetServerPlugin>())
            && (!self.states || app.is_plugin_added::<StatesPlugin>())
    }

    /// Adds those the app still lacks.
    fn add_missing(&self, app: &mut App) {
        if self.renet_client && !app.is_plugin_added::<RenetClientPlugin>() {
            app.add_plugins(RenetClientPlugin);
        }
        if self.renet_server && !app.is_plugin_added::<RenetServerPlugin>() {
            app.add_plugins(RenetServerPlugin);
        }
        if self.states && !app.is_plugin_added::<StatesPlugin>() {
            app.add_plugins(StatesPlugin);
        }
    }

    /// Runs `setup` now if the app has every dependency, else in `Plugin::finish` after
    /// adding those still missing then.
    pub(crate) fn then(self, app: &mut App, setup: fn(&mut App)) {
        if self.present(app) {
            setup(app);
            return;
        }
        if !app.world().contains_resource::<PendingSetup>() {
            app.init_resource::<PendingSetup>()
                .add_systems(First, report_pending_setup);
        }
        app.world_mut()
            .resource_mut::<PendingSetup>()
            .plugins
            .push(self.who);
        app.add_plugins(FinishSetup {
            dependencies: self,
            setup,
        });
    }
}

/// The plugins whose set-up waits for `App::finish`.
#[derive(Resource, Default)]
struct PendingSetup {
    plugins: Vec<&'static str>,
}

/// Finishes a plugin's set-up in [`Plugin::finish`] (one per plugin that waited).
struct FinishSetup {
    dependencies: Dependencies,
    setup: fn(&mut App),
}

impl Plugin for FinishSetup {
    fn build(&self, _app: &mut App) {}

    fn finish(&self, app: &mut App) {
        self.dependencies.add_missing(app);
        (self.setup)(app);
        let world = app.world_mut();
        let mut pending = world.resource_mut::<PendingSetup>();
        pending.plugins.retain(|who| *who != self.dependencies.who);
        if pending.plugins.is_empty() {
            world.remove_resource::<PendingSetup>();
        }
    }

    fn is_unique(&self) -> bool {
        false
    }
}

/// Says, once, that the app was updated before `App::finish`, so a plugin is not set up.
fn report_pending_setup(pending: Option<Res<PendingSetup>>, mut told: Local<bool>) {
    if let Some(pending) = pending
        && !*told
    {
        *told = true;
        error!(
            "{} not set up: the app was updated before App::finish(). App::run() calls it; \
             an app driven by App::update() calls app.finish() and app.cleanup() first",
            pending.plugins.join(", ")
        );
    }
}

/// The crate's plugins as one group: the side of each mode that this app plays, each with
/// its channel and settings. Every plugin adds the bevy_renet plugin it needs (and, for a
/// client, Bevy's `StatesPlugin`) unless the app has it by [`Plugin::finish`], so the group
/// works before or after `DefaultPlugins`, `MinimalPlugins` and bevy_renet's plugins. An
/// app driven by `App::update` rather than `App::run` calls `app.finish()` first.
///
/// ```
/// use bevy::prelude::*;
/// use bevy_atomic_matchmaking::prelude::*;
///
/// // a game: the atomic client, on the default channel
/// let mut game = App::new();
/// game.add_plugins(MinimalPlugins)
///     .add_plugins(MatchmakingPlugins::atomic_client());
/// // App::run() would do this; a test driving App::update() does it itself
/// game.finish();
/// game.cleanup();
/// game.update();
/// assert!(game.world().contains_resource::<AtomicClientStatus>());
///
/// // a dedicated server with four players per match
/// let mut server = App::new();
/// server.add_plugins(MinimalPlugins).add_plugins(MatchmakingPlugins {
///     atomic_server: Some(AtomicServerPlugin {
///         settings: AtomicServerSettings {
///             players_per_match: 4,
///             ..Default::default()
///         },
///         ..Default::default()
///     }),
///     ..Default::default()
/// });
/// server.finish();
/// server.cleanup();
/// server.update();
/// ```
#[derive(Debug, Clone, Default)]
pub struct MatchmakingPlugins {
    /// The server of atomic matchmaking (feature `server`).
    #[cfg(feature = "server")]
    pub atomic_server: Option<crate::atomic::server::AtomicServerPlugin>,
    /// The client of atomic matchmaking (feature `client`).
    #[cfg(feature = "client")]
    pub atomic_client: Option<crate::atomic::client::AtomicClientPlugin>,
    /// The relay of negotiated matchmaking (feature `negotiated`).
    #[cfg(feature = "negotiated")]
    pub negotiated_relay: Option<crate::negotiated::relay::NegotiatedRelayPlugin>,
    /// The client of negotiated matchmaking (feature `negotiated`).
    #[cfg(feature = "negotiated")]
    pub negotiated_client: Option<crate::negotiated::client::NegotiatedClientPlugin>,
}

impl MatchmakingPlugins {
    /// A dedicated atomic server with the default channel and settings.
    #[cfg(feature = "server")]
    pub fn atomic_server() -> Self {
        Self {
            atomic_server: Some(default()),
            ..default()
        }
    }

    /// A game's atomic client with the default channel and settings.
    #[cfg(feature = "client")]
    pub fn atomic_client() -> Self {
        Self {
            atomic_client: Some(default()),
            ..default()
        }
    }

    /// A negotiated relay with the default channel and settings.
    #[cfg(feature = "negotiated")]
    pub fn negotiated_relay() -> Self {
        Self {
            negotiated_relay: Some(default()),
            ..default()
        }
    }

    /// A game's negotiated client with the default channel and settings.
    #[cfg(feature = "negotiated")]
    pub fn negotiated_client() -> Self {
        Self {
            negotiated_client: Some(default()),
            ..default()
        }
    }
}

impl PluginGroup for MatchmakingPlugins {
    fn build(self) -> PluginGroupBuilder {
        #[allow(unused_mut)]
        let mut group = PluginGroupBuilder::start::<Self>();
        #[cfg(feature = "server")]
        if let Some(plugin) = self.atomic_server {
            group = group.add(plugin);
        }
        #[cfg(feature = "client")]
        if let Some(plugin) = self.atomic_client {
            group = group.add(plugin);
        }
        #[cfg(feature = "negotiated")]
        if let Some(plugin) = self.negotiated_relay {
            group = group.add(plugin);
        }
        #[cfg(feature = "negotiated")]
        if let Some(plugin) = self.negotiated_client {
            group = group.add(plugin);
        }
        group
    }
}
