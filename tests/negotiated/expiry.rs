//! Requests expire one to two frames after they were posted; the relay drops frames
//! older than two frame durations.

use std::time::Duration;

use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::negotiated::NegotiatedTestHarness;

#[test]
fn a_request_without_bids_expires_after_one_to_two_frames() {
    let frame = Duration::from_secs(1);
    let mut h = NegotiatedTestHarness::with_frames(frame, Duration::from_millis(500));
    let [a] = h.add_clients(1)[..] else {
        unreachable!()
    };
    // start searching at a random-looking point inside a frame
    h.run(37);
    h.search(a, "duel");
    h.run_until(20, |h| !h.recorded::<NegotiatedRequestPosted>(a).is_empty());
    let first = h.recorded::<NegotiatedRequestPosted>(a)[0].clone();
    let posted_at = h.recording::<NegotiatedRequestPosted>(a).times()[0];

    h.run_until(400, |h| !h.recorded::<NegotiatedRestarted>(a).is_empty());
    // the new frame's facts arrive from the relay before the client decides again
    h.run_until(5, |h| h.recorded::<NegotiatedRequestPosted>(a).len() == 2);
    let restarted = h.recording::<NegotiatedRestarted>(a);
    assert_eq!(
        restarted.messages()[0].reason,
        NegotiatedRestartReason::RequestExpired
    );
    let expired_at = restarted.times()[0];
    let lifetime = expired_at - posted_at;
    assert!(
        lifetime > frame && lifetime <= 2 * frame + Duration::from_millis(20),
        "lived {lifetime:?}"
    );
    // it expired when frame + 2 began, by the client's estimate of relay time
    let frames = h.relay_state().frames();
    assert_eq!(frames.frame_of(expired_at), first.frame + 2);
    // the client searches on: a new request in the new current frame
    let posted = h.recorded::<NegotiatedRequestPosted>(a);
    assert_eq!(posted.len(), 2);
    assert_eq!(posted[1].frame, first.frame + 2);
    h.run(1);
    assert_eq!(h.state(a), NegotiatedClientState::Requesting);

    // an expired request is not bid on: a newcomer pairs with the fresh one
    let b = h.add_client();
    h.run_until(50, |h| h.state(b) == NegotiatedClientState::Idle);
    h.search(b, "duel");
    h.run_until_matched(&[a, b], 50);
    assert_eq!(
        h.found(b).unwrap().request,
        h.recorded::<NegotiatedRequestPosted>(a)[1].request
    );
    assert_ne!(h.found(b).unwrap().request, first.request);
}

#[test]
fn the_relay_drops_frames_older_than_two_frame_durations() {
    let frame = Duration::from_secs(1);
    let mut h = NegotiatedTestHarness::with_frames(frame, Duration::from_millis(500));
    let [a] = h.add_clients(1)[..] else {
        unreachable!()
    };
    h.search(a, "duel");
    h.run_until(20, |h| !h.recorded::<NegotiatedRequestPosted>(a).is_empty());
    let first = h.recorded::<NegotiatedRequestPosted>(a)[0].clone();
    h.run(1);
    assert!(h.relay_state().store().contains(first.request));
    let frames = h.relay_state().frames();
    let end = frames.end_of(first.frame);
    // still held until two frame durations after its frame ended
    h.run_until(1000, |h| {
        h.relay_now() >= end + 2 * frame - Duration::from_millis(20)
    });
    assert!(h.relay_state().store().contains(first.request));
    h.run_until(10, |h| {
        h.relay_now() >= end + 2 * frame + Duration::from_millis(10)
    });
    assert!(!h.relay_state().store().contains(first.request));
    assert!(h.relay_state().stats().facts_expired >= 1);
    assert!(
        h.relay_state()
            .store()
            .frames()
            .all(|(f, _)| f > first.frame)
    );
}

#[test]
fn cancelling_a_search_posts_a_cancel_and_goes_idle() {
    let mut h =
        NegotiatedTestHarness::with_frames(Duration::from_secs(10), Duration::from_millis(500));
    let [a] = h.add_clients(1)[..] else {
        unreachable!()
    };
    h.search(a, "duel");
    h.run_until(20, |h| h.state(a) == NegotiatedClientState::Requesting);
    let request = h.status(a).request.unwrap();
    h.cancel(a);
    h.run_until(20, |h| h.state(a) == NegotiatedClientState::Idle);
    assert_eq!(h.recorded::<NegotiatedCancelled>(a).len(), 1);
    assert_eq!(
        h.recorded::<NegotiatedCancelled>(a)[0].request,
        Some(request)
    );
    h.run(2);
    assert!(h.relay_state().store().is_cancelled(request));
    // cancelling again is an error, searching again works
    h.cancel(a);
    h.run(2);
    assert_eq!(
        h.recorded::<NegotiatedClientError>(a).last().unwrap().kind,
        NegotiatedErrorKind::Unexpected
    );
    h.search(a, "duel");
    h.run_until(20, |h| h.state(a) == NegotiatedClientState::Requesting);
    assert_ne!(h.status(a).request, Some(request));
}
