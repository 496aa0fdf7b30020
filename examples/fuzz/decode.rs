//! The decoders: raw bytes, and valid encodings of structure-aware messages with
//! mutations, fed to every decoder of the crate (both modes' messages, facts and signed
//! facts). A decoder may refuse anything but must never panic; what it accepts must
//! encode again and decode to the same value, and (but for server messages, whose
//! durations serde normalizes) encode to no more bytes than it came in, so whatever the
//! relay re-sends of a decoded post fits the codec.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};

use bevy_atomic_matchmaking::atomic::core::protocol::{AtomicClientMessage, AtomicServerMessage};
use bevy_atomic_matchmaking::negotiated::core::fact::{NegotiatedFact, NegotiatedSignedFact};
use bevy_atomic_matchmaking::negotiated::core::protocol::{
    NegotiatedClientMessage, NegotiatedRelayMessage,
};
use bevy_atomic_matchmaking::shared::codec::{self, CodecError, MAX_MESSAGE_BYTES};
use proptest::strategy::Strategy;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::inputs::{self, Draw};
use crate::target::{Target, hex};

/// Inputs each decoder accepted, over the run (mutations that still decode reach the
/// handlers; a decoder that accepted nothing would be a useless target).
pub static ACCEPTED: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];

/// Valid messages within the byte limit that the codec refused for its allocation limit
/// (bincode counts every integer at its full width against the limit, so a message of
/// many small varints and long strings can fit the bytes and not the claim).
pub static REFUSED_BY_CLAIM: AtomicU64 = AtomicU64::new(0);

/// The decoders' names, in [`ACCEPTED`] order.
pub const DECODERS: [&str; 6] = [
    "client_message",
    "server_message",
    "negotiated_client_message",
    "negotiated_relay_message",
    "fact",
    "signed_fact",
];

/// The encoding the codec uses, without its size limit (for messages built past it).
pub fn encode_unbounded<T: Serialize>(message: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(message, bincode::config::standard())
        .expect("bincode encodes any of the crate's messages")
}

/// Decodes `bytes` as a `T` and checks what the codec promises.
fn check_one<T>(bytes: &[u8], decoder: usize)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let decoded = codec::decode::<T>(bytes);
    if bytes.len() > MAX_MESSAGE_BYTES {
        assert_eq!(
            decoded,
            Err(CodecError::TooLarge { len: bytes.len() }),
            "an oversized input must be refused before decoding"
        );
        return;
    }
    let Ok(message) = decoded else { return };
    ACCEPTED[decoder].fetch_add(1, Ordering::Relaxed);
    let again = codec::encode(&message);
    // serde carries a Duration's nanoseconds past one second into its seconds, which can
    // widen their varint: a decoded server message may encode a few bytes longer (no one
    // re-sends one). Every other message encodes to no more bytes than it came in, so
    // what the relay stores and forwards of a post fits the codec as the post did.
    let durations = decoder == 1;
    assert!(
        durations || again.len() <= bytes.len(),
        "{} decoded from {} bytes encodes to {}: {message:?}",
        DECODERS[decoder],
        bytes.len(),
        again.len()
    );
    assert_eq!(
        codec::decode::<T>(&again).as_ref(),
        Ok(&message),
        "re-encoded {} does not decode to itself",
        DECODERS[decoder]
    );
}

/// Feeds `bytes` to every decoder.
pub fn check_all(bytes: &[u8]) {
    check_one::<AtomicClientMessage>(bytes, 0);
    check_one::<AtomicServerMessage>(bytes, 1);
    check_one::<NegotiatedClientMessage>(bytes, 2);
    check_one::<NegotiatedRelayMessage>(bytes, 3);
    check_one::<NegotiatedFact>(bytes, 4);
    check_one::<NegotiatedSignedFact>(bytes, 5);
}

/// Random bytes: short, near the limit or past it, often starting with a small variant
/// tag so that decoding gets past the first byte.
pub struct RawBytes;

impl Target for RawBytes {
    type Input = Vec<u8>;
    const NAME: &'static str = "decode_raw";

    fn generate(draw: &mut Draw) -> Vec<u8> {
        let rng = &mut draw.rng;
        let len = match rng.u8(..8) {
            0..=2 => rng.usize(..16),
            3 | 4 => rng.usize(..96),
            5 => rng.usize(..=MAX_MESSAGE_BYTES),
            6 => rng.usize(MAX_MESSAGE_BYTES - 8..MAX_MESSAGE_BYTES + 8),
            _ => rng.usize(MAX_MESSAGE_BYTES..2 * MAX_MESSAGE_BYTES),
        };
        let mut bytes: Vec<u8> = match rng.u8(..4) {
            0 => (0..len).map(|_| rng.u8(..4)).collect(),
            1 => (0..len)
                .map(|_| [0, 1, 0xfb, 0xfc, 0xfd, 0xff][rng.usize(..6)])
                .collect(),
            _ => (0..len).map(|_| rng.u8(..)).collect(),
        };
        if let Some(first) = bytes.first_mut()
            && rng.bool()
        {
            *first = rng.u8(..10);
        }
        bytes
    }

    fn execute(bytes: &Vec<u8>) {
        check_all(bytes);
    }

    fn describe(bytes: &Vec<u8>) -> String {
        format!("{} bytes: {}", bytes.len(), hex(bytes))
    }
}

/// A valid message of one of the six types, its encoding checked, then mutated.
#[derive(Debug)]
pub struct MutatedInput {
    /// The message.
    pub message: String,
    /// Its encoding (without the codec's limit).
    pub valid: Vec<u8>,
    /// Which decoder it belongs to.
    pub decoder: usize,
    /// Whether the codec decoded the valid encoding (when it fits) to the message, or
    /// refused it for its allocation limit ([`REFUSED_BY_CLAIM`]).
    pub round_trips: bool,
    /// The mutations applied, in order.
    pub mutations: Vec<Mutation>,
    /// The result.
    pub mutated: Vec<u8>,
}

/// Valid encodings of structure-aware messages, mutated.
pub struct Mutated;

/// Draws a message of decoder `which`: its debug text, its encoding, and whether the
/// codec's own decode gives it back.
fn draw_message(draw: &mut Draw, which: usize) -> (String, Vec<u8>, bool) {
    fn one<T, S>(draw: &mut Draw, strategy: S) -> (String, Vec<u8>, bool)
    where
        T: Serialize + DeserializeOwned + PartialEq + Debug,
        S: Strategy<Value = T>,
    {
        let message = draw.value(strategy);
        let bytes = encode_unbounded(&message);
        let fits = bytes.len() <= MAX_MESSAGE_BYTES;
        let decoded = codec::decode::<T>(&bytes);
        let claim = Err(CodecError::Malformed("LimitExceeded".into()));
        if fits && decoded == claim {
            REFUSED_BY_CLAIM.fetch_add(1, Ordering::Relaxed);
        }
        let round_trips = !fits || decoded.as_ref() == Ok(&message) || decoded == claim;
        if fits {
            assert_eq!(codec::encode(&message), bytes, "codec and bincode disagree");
        }
        (format!("{message:?}"), bytes, round_trips)
    }
    match which {
        0 => one(draw, inputs::client_message()),
        1 => one(draw, inputs::server_message()),
        2 => one(draw, inputs::negotiated_client_message()),
        3 => one(draw, inputs::negotiated_relay_message()),
        4 => one(draw, inputs::fact()),
        _ => one(draw, inputs::signed_fact()),
    }
}

impl Target for Mutated {
    type Input = MutatedInput;
    const NAME: &'static str = "decode_mutated";

    fn generate(draw: &mut Draw) -> MutatedInput {
        let decoder = draw.rng.usize(..DECODERS.len());
        let (message, valid, round_trips) = draw_message(draw, decoder);
        let which = draw.rng.usize(..DECODERS.len());
        let (_, other, _) = draw_message(draw, which);
        let mut mutated = valid.clone();
        let mutations: Vec<Mutation> = (0..draw.rng.usize(1..5))
            .map(|_| Mutation::draw(&mut draw.rng, mutated.len(), &other))
            .collect();
        for m in &mutations {
            m.apply(&mut mutated);
        }
        MutatedInput {
            message,
            valid,
            decoder,
            round_trips,
            mutations,
            mutated,
        }
    }

    fn execute(input: &MutatedInput) {
        assert!(
            input.round_trips,
            "the valid encoding does not decode to the message"
        );
        check_all(&input.valid);
        check_all(&input.mutated);
    }

    fn describe(input: &MutatedInput) -> String {
        format!(
            "{} ({}), valid {}, mutations {:?}, mutated {} bytes: {}",
            input.message,
            DECODERS[input.decoder],
            hex(&input.valid),
            input.mutations,
            input.mutated.len(),
            hex(&input.mutated)
        )
    }
}

/// One edit of an encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Flips bit `bit` of byte `at`.
    FlipBit { at: usize, bit: u8 },
    /// Sets byte `at`.
    SetByte { at: usize, value: u8 },
    /// Keeps the first `len` bytes.
    Truncate { len: usize },
    /// Appends bytes.
    Extend { bytes: Vec<u8> },
    /// Inserts bytes at `at`.
    Insert { at: usize, bytes: Vec<u8> },
    /// Removes `len` bytes at `at`.
    Remove { at: usize, len: usize },
    /// Overwrites from `at` with a bincode varint: a length or an id at its widest
    /// (`0xfd` then eight bytes is a u64, `0xfc` a u32, `0xfb` a u16).
    Varint { at: usize, bytes: Vec<u8> },
}

impl Mutation {
    /// A mutation of an encoding of `len` bytes; `other` is another message's encoding
    /// to splice from.
    fn draw(rng: &mut fastrand::Rng, len: usize, other: &[u8]) -> Self {
        let at = rng.usize(..=len);
        let byte_at = rng.usize(..len.max(1));
        match rng.u8(..8) {
            0 => Mutation::FlipBit {
                at: byte_at,
                bit: rng.u8(..8),
            },
            1 => Mutation::SetByte {
                at: byte_at,
                value: [0, 1, 0x7f, 0x80, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff][rng.usize(..10)],
            },
            2 => Mutation::Truncate { len: at },
            3 => Mutation::Extend {
                bytes: (0..rng.usize(1..64)).map(|_| rng.u8(..)).collect(),
            },
            4 if !other.is_empty() => {
                let start = rng.usize(..other.len());
                let end = rng.usize(start..=other.len());
                Mutation::Insert {
                    at,
                    bytes: other[start..end].to_vec(),
                }
            }
            5 => Mutation::Remove {
                at,
                len: rng.usize(1..4),
            },
            _ => Mutation::Varint {
                at: byte_at,
                bytes: varint(rng),
            },
        }
    }

    fn apply(&self, bytes: &mut Vec<u8>) {
        let len = bytes.len();
        match self {
            Mutation::FlipBit { at, bit } if *at < len => bytes[*at] ^= 1 << bit,
            Mutation::SetByte { at, value } if *at < len => bytes[*at] = *value,
            Mutation::Truncate { len } => bytes.truncate(*len),
            Mutation::Extend { bytes: more } => bytes.extend_from_slice(more),
            Mutation::Insert { at, bytes: more } => {
                let at = (*at).min(len);
                bytes.splice(at..at, more.iter().copied());
            }
            Mutation::Remove { at, len: n } => {
                let at = (*at).min(len);
                bytes.drain(at..(at + n).min(len));
            }
            Mutation::Varint { at, bytes: varint } => {
                let at = (*at).min(len);
                let end = (at + varint.len()).min(len);
                bytes.splice(at..end, varint.iter().copied());
            }
            _ => {}
        }
    }
}

/// A wide bincode varint: the largest u64, u32 or u16, or a length just past the limit.
fn varint(rng: &mut fastrand::Rng) -> Vec<u8> {
    match rng.u8(..5) {
        0 => [vec![0xfd], vec![0xff; 8]].concat(),
        1 => [vec![0xfc], vec![0xff; 4]].concat(),
        2 => vec![0xfb, 0xff, 0xff],
        3 => {
            let n = (MAX_MESSAGE_BYTES as u16 + rng.u16(..64)).to_le_bytes();
            vec![0xfb, n[0], n[1]]
        }
        _ => [vec![0xfd], rng.u64(..).to_le_bytes().to_vec()].concat(),
    }
}

/// Hostile bytes a connection sends instead of a message.
#[derive(Debug, Clone)]
pub enum BytesShape {
    /// Random bytes.
    Random { len: u16, seed: u64 },
    /// A valid message, mutated.
    Mutated { seed: u64 },
    /// A valid message padded past the codec's limit.
    Oversized { extra: u16 },
}

/// Any [`BytesShape`].
pub fn bytes_shape() -> impl Strategy<Value = BytesShape> + Clone {
    use proptest::prelude::*;
    prop_oneof![
        2 => (0u16..64, any::<u64>()).prop_map(|(len, seed)| BytesShape::Random { len, seed }),
        5 => any::<u64>().prop_map(|seed| BytesShape::Mutated { seed }),
        1 => (0u16..512).prop_map(|extra| BytesShape::Oversized { extra }),
    ]
}

/// The bytes of a shape, from a valid message's encoding.
pub fn make_bytes(shape: &BytesShape, valid: &[u8]) -> Vec<u8> {
    match shape {
        BytesShape::Random { len, seed } => {
            let mut rng = fastrand::Rng::with_seed(*seed);
            (0..*len).map(|_| rng.u8(..)).collect()
        }
        BytesShape::Mutated { seed } => {
            let mut rng = fastrand::Rng::with_seed(*seed);
            let mut bytes = valid.to_vec();
            for _ in 0..rng.usize(1..4) {
                Mutation::draw(&mut rng, bytes.len(), valid).apply(&mut bytes);
            }
            bytes
        }
        BytesShape::Oversized { extra } => {
            let mut bytes = valid.to_vec();
            bytes.resize(MAX_MESSAGE_BYTES + 1 + *extra as usize, 0);
            bytes
        }
    }
}
