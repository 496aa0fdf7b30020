//! Short human-readable lobby codes.

/// Letters and digits that cannot be mistaken for one another (no 0/O, 1/I/L).
pub const LOBBY_CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// Length of a lobby code: 31^6 is about 887 million codes.
pub const LOBBY_CODE_LEN: usize = 6;

/// Draws codes until one is not `taken`.
///
/// With far fewer open lobbies than codes this takes one draw almost always; after 64
/// collisions in a row (a nearly full code space) it lengthens the code by one character.
pub fn generate_lobby_code(rng: &mut fastrand::Rng, taken: impl Fn(&str) -> bool) -> String {
    let mut len = LOBBY_CODE_LEN;
    loop {
        for _ in 0..64 {
            let code: String = (0..len)
                .map(|_| LOBBY_CODE_ALPHABET[rng.usize(..LOBBY_CODE_ALPHABET.len())] as char)
                .collect();
            if !taken(&code) {
                return code;
            }
        }
        len += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_among_taken() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut open = HashSet::new();
        for _ in 0..10_000 {
            let code = generate_lobby_code(&mut rng, |c| open.contains(c));
            assert_eq!(code.len(), LOBBY_CODE_LEN);
            assert!(code.bytes().all(|b| LOBBY_CODE_ALPHABET.contains(&b)));
            assert!(open.insert(code));
        }
    }

    #[test]
    fn grows_when_the_space_is_exhausted() {
        let mut rng = fastrand::Rng::with_seed(1);
        let code = generate_lobby_code(&mut rng, |c| c.len() == LOBBY_CODE_LEN);
        assert_eq!(code.len(), LOBBY_CODE_LEN + 1);
    }
}
