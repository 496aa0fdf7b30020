//! Clients whose clocks are off by ±2 s still agree on frames and pair.

use std::time::Duration;

use bevy_atomic_matchmaking::negotiated::core::fact::*;
use bevy_atomic_matchmaking::negotiated::core::protocol::{
    NegotiatedClientMessage, NegotiatedRelayMessage,
};
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::negotiated::NegotiatedTestHarness;

use crate::common::hello;

#[test]
fn clocks_skewed_by_two_seconds_still_pair() {
    // 1 s frames: uncorrected, the two clocks would be four frames apart
    let frame = Duration::from_secs(1);
    let mut h = NegotiatedTestHarness::with_frames(frame, Duration::from_millis(500));
    let fast = h.add_skewed_client(2_000);
    let slow = h.add_skewed_client(-2_000);
    h.run_until(50, |h| {
        h.state(fast) == NegotiatedClientState::Idle && h.state(slow) == NegotiatedClientState::Idle
    });
    // the estimates undo the skew (the harness starts each client clock a few updates
    // behind the relay, hence the slack) ...
    let offset_fast = h.status(fast).clock_offset_us.unwrap();
    let offset_slow = h.status(slow).clock_offset_us.unwrap();
    assert!(
        (offset_fast + 2_000_000).abs() <= 30_000,
        "fast offset {offset_fast}"
    );
    assert!(
        (offset_slow - 2_000_000).abs() <= 30_000,
        "slow offset {offset_slow}"
    );
    // ... so that both read relay time to within a round trip or two
    h.run(1);
    for id in [fast, slow] {
        let estimate = h.status(id).relay_time.unwrap();
        let relay = h.relay_now();
        let error = estimate.abs_diff(relay);
        assert!(
            error <= Duration::from_millis(20),
            "client {id} is off by {error:?}"
        );
    }

    h.search(fast, "duel");
    h.run_until(20, |h| {
        !h.recorded::<NegotiatedRequestPosted>(fast).is_empty()
    });
    // the request went to the relay's current frame, not the fast clock's
    let relay_frame = h.relay_state().frames().frame_of(h.relay_now());
    assert!(
        h.recorded::<NegotiatedRequestPosted>(fast)[0]
            .frame
            .abs_diff(relay_frame)
            <= 1
    );
    h.search(slow, "duel");
    h.run_until_matched(&[fast, slow], 50);
    assert_eq!(h.found(fast).unwrap().other, slow);
    assert_eq!(h.found(slow).unwrap().other, fast);
    assert!(
        h.recorded::<NegotiatedClientError>(fast).is_empty()
            && h.recorded::<NegotiatedClientError>(slow).is_empty()
    );
}

#[test]
fn skewed_clocks_keep_pairing_across_many_frames() {
    let frame = Duration::from_secs(1);
    let mut h = NegotiatedTestHarness::with_frames(frame, Duration::from_millis(500));
    let ids: Vec<PlayerId> = [-2_000, -1_300, -400, 0, 700, 2_000]
        .into_iter()
        .map(|skew| h.add_skewed_client(skew))
        .collect();
    h.run_until(50, |h| {
        ids.iter()
            .all(|id| h.state(*id) == NegotiatedClientState::Idle)
    });
    // arrivals spread over three frames
    for id in &ids {
        h.search(*id, "duel");
        h.run(55);
    }
    h.run_until_matched(&ids, 300);
    for id in &ids {
        let f = h.found(*id).unwrap();
        assert_eq!(h.found(f.other).unwrap().other, *id);
        assert!(
            h.recorded::<NegotiatedClientError>(*id).is_empty(),
            "{id}: {:?}",
            h.recorded::<NegotiatedClientError>(*id)
        );
    }
}

#[test]
fn an_uncorrected_clock_would_be_refused() {
    // what the estimation prevents: a request posted to the frame of a clock 2 s fast
    let frame = Duration::from_secs(1);
    let mut h = NegotiatedTestHarness::with_frames(frame, Duration::from_millis(500));
    let raw = h.add_raw_client();
    hello(&mut h, raw);
    let skewed = h.relay_now() + Duration::from_secs(2);
    h.send_message(
        raw,
        &NegotiatedClientMessage::Post {
            fact: NegotiatedFact::Request(NegotiatedRequest {
                category: "duel".into(),
                frame: h.relay_state().frames().frame_of(skewed),
                created_us: skewed.as_micros() as u64,
            }),
        },
    );
    h.run(2);
    let messages = h.take_messages(raw);
    assert!(messages.iter().any(|m| matches!(
        m,
        NegotiatedRelayMessage::Refused {
            kind: NegotiatedErrorKind::FrameOutOfRange,
            ..
        }
    )));
    assert!(h.relay_state().store().is_empty());
}
