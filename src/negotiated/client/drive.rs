//! The `Update` system: takes the game's requests, asks for the time, advances the
//! machine, sends what it says, reports events as Bevy messages and keeps the status and
//! the state current.

use std::time::Duration;

use bevy::prelude::*;
use bevy_renet::RenetClient;

use crate::negotiated::channel::NegotiatedChannel;
use crate::negotiated::core::machine::{NegotiatedEvent, NegotiatedOutput};
use crate::negotiated::core::protocol::NegotiatedErrorKind;
use crate::shared::player::PlayerId;

use super::messages::{
    ClientReports, GameRequests, NegotiatedBidPlaced, NegotiatedCancelled, NegotiatedClientError,
    NegotiatedMatchFound, NegotiatedRequestPosted, NegotiatedRestarted,
};
use super::session::{NegotiatedSession, SessionContext, send};
use super::state::{NegotiatedClientState, NegotiatedClientStatus, client_state};

/// One frame of the client: requests in, machine on, messages and reports out.
pub(super) fn drive(
    mut context: SessionContext,
    mut status: ResMut<NegotiatedClientStatus>,
    mut requests: GameRequests,
    state: Res<State<NegotiatedClientState>>,
    mut next: ResMut<NextState<NegotiatedClientState>>,
    mut reports: ClientReports,
) {
    let local = context.local_now();
    let session = &mut *context.session;
    let relay_now = session.relay_now(local);
    for search in requests.searches.read() {
        start_search(session, &search.category, relay_now);
    }
    for _ in requests.cancels.read() {
        cancel_search(session, relay_now);
    }
    // dereferenced mutably (which marks the resource changed) only to send
    let client = context.client.as_mut().filter(|c| c.is_connected());
    if client.is_some() {
        request_time_when_due(session, local, context.settings.time_sync_interval);
    }
    tick_machine(session, relay_now);
    flush(session, client, &context.channel, &mut status, &mut reports);
    status.refresh(session, local);
    let wanted = client_state(session);
    if *state.get() != wanted {
        next.set(wanted);
    }
}

/// The game asked to search: tell the machine, or remember it until the welcome.
fn start_search(session: &mut NegotiatedSession, category: &str, relay_now: Option<Duration>) {
    if session.machine.is_some() {
        session.run_machine(|machine| machine.search(category, relay_now.unwrap_or(machine.now())));
    } else {
        session.intent = Some(category.to_owned());
    }
}

/// The game asked to stop searching: tell the machine, or drop the remembered search.
fn cancel_search(session: &mut NegotiatedSession, relay_now: Option<Duration>) {
    if session.machine.is_some() {
        session.run_machine(|machine| machine.cancel(relay_now.unwrap_or(machine.now())));
    } else if let Some(category) = session.intent.take() {
        session
            .outbox
            .push(NegotiatedOutput::Event(NegotiatedEvent::Cancelled {
                category,
                request: None,
            }));
    } else {
        session.errors.push(NegotiatedClientError::new(
            NegotiatedErrorKind::Unexpected,
            "not searching",
        ));
    }
}

/// Asks the relay for its time again every `interval` while welcomed (the renet client
/// is connected).
fn request_time_when_due(session: &mut NegotiatedSession, local: Duration, interval: Duration) {
    let due = session
        .last_time_request
        .is_none_or(|at| local.saturating_sub(at) >= interval);
    if session.connected && session.welcomed && due {
        let request = session.time_request(local);
        session.outbox.push(NegotiatedOutput::Send(request));
    }
}

/// Lets time pass for an online machine.
fn tick_machine(session: &mut NegotiatedSession, relay_now: Option<Duration>) {
    if let Some(now) = relay_now {
        session.run_machine(|machine| {
            if machine.is_online() {
                machine.tick(now)
            } else {
                Vec::new()
            }
        });
    }
}

/// Sends what the machine said (when connected) and writes every report.
fn flush(
    session: &mut NegotiatedSession,
    mut client: Option<&mut ResMut<RenetClient>>,
    channel: &NegotiatedChannel,
    status: &mut NegotiatedClientStatus,
    reports: &mut ClientReports,
) {
    let me = session.client_id.unwrap_or_default();
    for connected in session.connected_events.drain(..) {
        reports.connected.write(connected);
    }
    for closing in session.closing_events.drain(..) {
        reports.closing.write(closing);
    }
    for output in std::mem::take(&mut session.outbox) {
        match output {
            NegotiatedOutput::Send(message) => {
                if let Some(client) = client.as_mut() {
                    send(client, channel, &message);
                }
            }
            NegotiatedOutput::Event(event) => {
                report_event(event, me, status, reports, &mut session.errors);
            }
        }
    }
    for error in session.errors.drain(..) {
        status.last_error = Some(error.clone());
        reports.errors.write(error);
    }
}

/// Notes a machine event in the status and reports it (errors join `errors`).
fn report_event(
    event: NegotiatedEvent,
    me: PlayerId,
    status: &mut NegotiatedClientStatus,
    reports: &mut ClientReports,
    errors: &mut Vec<NegotiatedClientError>,
) {
    match event {
        NegotiatedEvent::RequestPosted {
            request,
            category,
            frame,
        } => {
            status.set_pending(Some(request), None);
            status.category = Some(category.clone());
            reports.posted.write(NegotiatedRequestPosted {
                request,
                category,
                frame,
            });
        }
        NegotiatedEvent::BidPlaced {
            bid,
            request,
            requester,
        } => {
            status.set_pending(None, Some(bid));
            reports.bid.write(NegotiatedBidPlaced {
                bid,
                request,
                requester,
            });
        }
        NegotiatedEvent::Matched(found) => {
            let found = NegotiatedMatchFound::new(me, found);
            status.set_pending(None, None);
            status.category = Some(found.category.clone());
            status.found = Some(found.clone());
            reports.found.write(found);
        }
        NegotiatedEvent::Restarted(reason) => {
            status.set_pending(None, None);
            status.restarts += 1;
            reports.restarted.write(NegotiatedRestarted { reason });
        }
        NegotiatedEvent::Cancelled { category, request } => {
            status.set_pending(None, None);
            reports
                .cancelled
                .write(NegotiatedCancelled { category, request });
        }
        NegotiatedEvent::Error { kind, message } => {
            errors.push(NegotiatedClientError::new(kind, message));
        }
    }
}
