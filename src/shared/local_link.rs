//! Renet's local connections driven the way a transport drives real ones: the piece the
//! in-process test harnesses (atomic and negotiated) share.

use bevy_renet::renet::{ClientId, RenetClient, RenetServer};

/// The state of one local connection as a test harness sees it: whether packets flow
/// (a test can stall the link) and whether the connection closed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalLink {
    up: bool,
    closed: bool,
}

impl Default for LocalLink {
    fn default() -> Self {
        Self {
            up: true,
            closed: false,
        }
    }
}

impl LocalLink {
    /// Whether packets are exchanged (up and not closed).
    pub fn is_up(&self) -> bool {
        self.up && !self.closed
    }

    /// Whether the connection closed for good.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Stalls (`false`) or resumes (`true`) the link; a closed link stays down.
    pub fn set_up(&mut self, up: bool) {
        self.up = up;
    }

    /// Closes the connection from the client's side, as a player quitting would.
    pub fn close(&mut self, server: &mut RenetServer, id: ClientId, client: &mut RenetClient) {
        if self.closed {
            return;
        }
        self.closed = true;
        server.disconnect_local_client(id, client);
    }

    /// Delivers packets both ways, if the link is up.
    ///
    /// When the server closed the connection itself (a refusal), this does what a
    /// transport does: delivers what is still pending (the error explaining why), removes
    /// the connection so the server sees the disconnect event, and disconnects the client.
    pub fn exchange(&mut self, server: &mut RenetServer, id: ClientId, client: &mut RenetClient) {
        if !self.is_up() {
            return;
        }
        if client.is_disconnected() {
            self.closed = true;
            return;
        }
        if !server.is_connected(id) {
            let _ = server.process_local_client(id, client);
            server.remove_connection(id);
            client.disconnect();
            self.closed = true;
            return;
        }
        if server.process_local_client(id, client).is_err() {
            client.disconnect();
            self.closed = true;
        }
    }
}
