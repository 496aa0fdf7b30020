//! Size-limited bincode 2 (serde) encoding shared by every wire protocol of the crate.
//!
//! Every byte from the network is hostile until [`decode`] accepted it: the length is
//! checked before decoding and bincode itself is told the same limit, so a forged length
//! prefix cannot make it allocate more than the limit.

use serde::{Serialize, de::DeserializeOwned};

/// Largest message the codec accepts, in bytes. Matchmaking messages are small: a few
/// ids, a category name and a lobby code.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The message is longer than [`MAX_MESSAGE_BYTES`].
    #[error("message of {len} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge {
        /// Length of the rejected message.
        len: usize,
    },
    /// The bytes are not a valid message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A valid message followed by extra bytes.
    #[error("malformed message: {extra} trailing bytes")]
    TrailingBytes {
        /// How many bytes were left over.
        extra: usize,
    },
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_MESSAGE_BYTES>()
}

/// Encodes a message.
///
/// # Panics
/// If the message cannot be encoded within [`MAX_MESSAGE_BYTES`]; callers bound every
/// variable-length field (categories, codes, player lists) well below it.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(message, config()).expect("message fits the codec limit")
}

/// Decodes one message, refusing anything longer than [`MAX_MESSAGE_BYTES`] or with trailing bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(CodecError::TooLarge { len: bytes.len() });
    }
    let (message, read) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if read != bytes.len() {
        return Err(CodecError::TrailingBytes {
            extra: bytes.len() - read,
        });
    }
    Ok(message)
}

/// Decodes the start of a message, ignoring what follows: for reading the fields every
/// version of a message begins with (a hello's protocol version) from a newer or older peer.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(CodecError::TooLarge { len: bytes.len() });
    }
    bincode::serde::decode_from_slice(bytes, config())
        .map(|(message, _)| message)
        .map_err(|e| CodecError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Sample {
        A { name: String, ids: Vec<u64> },
        B(u32),
    }

    #[test]
    fn round_trip_and_limits() {
        let m = Sample::A {
            name: "ranked".into(),
            ids: vec![1, 2, 3],
        };
        let bytes = encode(&m);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), m);
        assert!(matches!(
            decode::<Sample>(&vec![0u8; MAX_MESSAGE_BYTES + 1]),
            Err(CodecError::TooLarge { .. })
        ));
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(
            decode::<Sample>(&extra),
            Err(CodecError::TrailingBytes { extra: 1 })
        );
        // a length prefix claiming a huge string must fail, not allocate
        let forged = [0u8, 0xFC, 0xFF, 0xFF, 0xFF, 0x7F];
        assert!(matches!(
            decode::<Sample>(&forged),
            Err(CodecError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode::<Sample>(&bytes);
        }

        #[test]
        fn round_trips(name in ".{0,64}", ids in proptest::collection::vec(any::<u64>(), 0..16), b in any::<u32>()) {
            let m = Sample::A { name, ids };
            prop_assert_eq!(decode::<Sample>(&encode(&m)).unwrap(), m);
            prop_assert_eq!(decode::<Sample>(&encode(&Sample::B(b))).unwrap(), Sample::B(b));
        }
    }
}
