//! What both client plugins add for themselves, and [`MatchmakingPlugins`], the plugin group
//! of the crate.

use bevy::app::PluginGroupBuilder;
use bevy::prelude::*;
use bevy::state::app::StatesPlugin;
use bevy_renet::RenetClientPlugin;

/// Adds the plugins a client plugin needs and the app has not: bevy_renet's
/// [`RenetClientPlugin`] and Bevy's [`StatesPlugin`] (which `MinimalPlugins` lacks).
#[cfg_attr(not(any(feature = "client", feature = "negotiated")), allow(dead_code))]
pub(crate) fn add_client_dependencies(app: &mut App) {
    if !app.is_plugin_added::<RenetClientPlugin>() {
        app.add_plugins(RenetClientPlugin);
    }
    if !app.is_plugin_added::<StatesPlugin>() {
        app.add_plugins(StatesPlugin);
    }
}

/// The crate's plugins as one group: the side of each mode that this app plays, each with
/// its channel and settings. Every plugin adds the bevy_renet plugin it needs (and, for a
/// client, Bevy's `StatesPlugin`) unless the app has it, so the group works after
/// `DefaultPlugins` or `MinimalPlugins`, before or after bevy_renet's plugins.
///
/// ```
/// use bevy::prelude::*;
/// use bevy_atomic_matchmaking::prelude::*;
///
/// // a game: the atomic client, on the default channel
/// let mut game = App::new();
/// game.add_plugins(MinimalPlugins)
///     .add_plugins(MatchmakingPlugins::atomic_client());
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
