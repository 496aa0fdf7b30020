//! Several servers in one harness (relays sharing a store, nodes of a cluster): clients
//! move between them, and a server can die.

use std::time::Duration;

use bevy::prelude::*;
use bevy::time::TimeUpdateStrategy;
use bevy_renet::{RenetClient, RenetServer};

use super::{HarnessMode, TestHarness, servers_mut};
use crate::shared::player::PlayerId;

impl<M: HarnessMode> TestHarness<M> {
    /// Adds another server, already started as [`replace_server`](Self::replace_server)
    /// wants it (made as the first one was, with [`server_app`](super::server_app) and the
    /// mode's plugin, finished and updated once). Returns its index (the first server is
    /// 0). Clients are still added to server 0; [`move_client`](Self::move_client) moves
    /// them.
    pub fn add_server(&mut self, mut server: App) -> usize {
        for install in &self.recorders {
            install(&mut server);
        }
        self.others.push(Some(server));
        self.others.len()
    }

    /// Server `on`, unless it was killed (0 is [`server`](Self::server)).
    pub fn server_app(&self, on: usize) -> Option<&App> {
        match on {
            0 => Some(&self.server),
            k => self.others.get(k - 1).and_then(Option::as_ref),
        }
    }

    /// Server `on`, to change, unless it was killed.
    pub fn server_app_mut(&mut self, on: usize) -> Option<&mut App> {
        servers_mut(&mut self.server, &mut self.others, on)
    }

    /// How many servers there were (killed ones too).
    pub fn servers(&self) -> usize {
        1 + self.others.len()
    }

    /// Whether server `on` is alive.
    pub fn is_alive(&self, on: usize) -> bool {
        self.server_app(on).is_some()
    }

    /// The server a client is connected (or reconnecting) to.
    pub fn server_of(&self, id: PlayerId) -> usize {
        self.clients[self.index(id)].on
    }

    /// Closes a client's connection (its server hears of it, if alive) and opens a new one
    /// to server `to` under the same id once its app ran one update without it, as a
    /// client failing over to another relay would.
    ///
    /// # Panics
    /// If server `to` is dead.
    pub fn move_client(&mut self, id: PlayerId, to: usize) {
        assert!(self.is_alive(to), "server {to} is dead");
        self.disconnect(id);
        let at = self.now + self.step * 2;
        let i = self.index(id);
        self.clients[i].on = to;
        self.clients[i].reconnect_at = Some(at);
    }

    /// Kills server `on` (not server 0), as a `kill -9` would: it never runs again and
    /// tells nobody anything. Its clients see their connection drop now; where they go
    /// next is the test's [`move_client`](Self::move_client).
    ///
    /// # Panics
    /// If `on` is 0 (the harness's own server stays).
    pub fn kill_server(&mut self, on: usize) {
        assert!(on > 0, "server 0 cannot be killed; restart it instead");
        let Some(mut server) = self.others.get_mut(on - 1).and_then(Option::take) else {
            return;
        };
        let mut renet_server = server.world_mut().resource_mut::<RenetServer>();
        for client in self.clients.iter_mut().filter(|c| c.on == on) {
            client.reconnect_at = None;
            let mut renet = client.app.world_mut().resource_mut::<RenetClient>();
            // the client side sees the loss; the dead server never runs to hear it
            client.link.close(&mut renet_server, client.id, &mut renet);
        }
        drop(server);
    }

    /// [`stall_server`](Self::stall_server) for every live server at once: one long frame
    /// of each (their clocks stay together, as wall clocks do), while the clients and the
    /// network step as usual.
    pub fn stall_servers(&mut self, gap: Duration) {
        let step = self.step;
        let set = |app: &mut App, d: Duration| {
            app.insert_resource(TimeUpdateStrategy::ManualDuration(d));
        };
        set(&mut self.server, gap);
        self.others.iter_mut().flatten().for_each(|s| set(s, gap));
        self.update();
        set(&mut self.server, step);
        self.others.iter_mut().flatten().for_each(|s| set(s, step));
    }
}
