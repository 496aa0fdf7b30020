//! The private key that signs connect tokens: made from OS randomness, kept in a file only
//! its owner can read.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;

use bevy::log::warn;
use bevy_renet::netcode::{NETCODE_KEY_BYTES, generate_random_bytes};

/// The 32-byte private key shared by a game's backend (which mints connect tokens with it)
/// and its servers and relays (which check them). Clients never see it.
///
/// Its `Debug` output hides the bytes, so logging a settings struct that holds one does not
/// leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct MatchmakingPrivateKey([u8; NETCODE_KEY_BYTES]);

impl fmt::Debug for MatchmakingPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MatchmakingPrivateKey(..)")
    }
}

impl MatchmakingPrivateKey {
    /// The size of a key and of a key file, in bytes.
    pub const BYTES: usize = NETCODE_KEY_BYTES;

    /// A new random key from the operating system's random source.
    pub fn generate() -> Self {
        Self(generate_random_bytes())
    }

    /// A key from its 32 bytes (for a key kept in a secret store).
    pub fn from_bytes(bytes: [u8; NETCODE_KEY_BYTES]) -> Self {
        Self(bytes)
    }

    /// The key's bytes, to store it or hand it to netcode.
    pub fn as_bytes(&self) -> &[u8; NETCODE_KEY_BYTES] {
        &self.0
    }

    /// Reads the key file at `path`, or, when there is none, creates it with a new random
    /// key (and its parent directories). On unix the new file is readable and writable by
    /// its owner only (mode `0o600`); an existing file readable by others is used, with a
    /// warning.
    ///
    /// A file that is not exactly [`MatchmakingPrivateKey::BYTES`] long is an error of kind
    /// [`io::ErrorKind::InvalidData`] that names the file: it is never overwritten.
    pub fn load_or_create(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        match Self::load(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => match Self::create(path) {
                // another process created it first: use theirs
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Self::load(path),
                other => other,
            },
            other => other,
        }
    }

    /// Reads the key file at `path` (see [`MatchmakingPrivateKey::load_or_create`]).
    pub fn load(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path)?;
        warn_if_shared(path, &file);
        let mut bytes = Vec::with_capacity(Self::BYTES + 1);
        // read one byte past the size to tell a longer file from a key
        (&file)
            .take(Self::BYTES as u64 + 1)
            .read_to_end(&mut bytes)?;
        let key: [u8; NETCODE_KEY_BYTES] = bytes.as_slice().try_into().map_err(|_| {
            let size = file
                .metadata()
                .map_or(bytes.len() as u64, |m| m.len().max(bytes.len() as u64));
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is not a matchmaking key: it has {size} bytes, a key has exactly {}",
                    path.display(),
                    Self::BYTES
                ),
            )
        })?;
        Ok(Self(key))
    }

    /// Creates the key file at `path` (and its parent directories) with a new random key,
    /// owner-only on unix. Fails with [`io::ErrorKind::AlreadyExists`] if the file exists.
    ///
    /// The key is written to a temporary file beside `path` first and then linked into
    /// place, so a process reading `path` at the same moment never sees a half-written key.
    pub fn create(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(
            ".{}-{:x}.tmp",
            std::process::id(),
            fastrand::u64(..)
        ));
        let temp = path.with_file_name(name);
        let key = Self::generate();
        let linked =
            write_owner_only(&temp, key.as_bytes()).and_then(|()| std::fs::hard_link(&temp, path));
        let _ = std::fs::remove_file(&temp);
        match linked {
            Ok(()) => Ok(key),
            // no hard links here (some network or FAT file systems): write in place
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                write_owner_only(path, key.as_bytes()).map(|()| key)
            }
            Err(e) => Err(e),
        }
    }
}

/// Writes `bytes` to a new file at `path` (owner-only on unix); fails if it exists.
fn write_owner_only(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Warns when a key file can be read by anyone but its owner (unix only).
fn warn_if_shared(path: &Path, file: &std::fs::File) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = file.metadata()
            && meta.permissions().mode() & 0o077 != 0
        {
            warn!(
                "matchmaking key file {} can be read by others (mode {:o}); chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, file);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A fresh directory under the system's temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "matchmaking-key-{name}-{}-{}",
                std::process::id(),
                fastrand::u64(..)
            ));
            std::fs::create_dir_all(&dir).expect("temp dir");
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_missing_key_file_is_created_with_its_directories_then_read_back() {
        let dir = TempDir::new("create");
        let path = dir.0.join("nested/deeper/dev.key");
        let created = MatchmakingPrivateKey::load_or_create(&path).expect("create");
        assert_eq!(
            std::fs::read(&path).expect("written"),
            created.as_bytes().to_vec()
        );
        let again = MatchmakingPrivateKey::load_or_create(&path).expect("read");
        assert_eq!(again, created, "the second call reads the same key");
        assert_ne!(
            MatchmakingPrivateKey::generate(),
            created,
            "keys are random"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_created_key_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("mode");
        let path = dir.0.join("dev.key");
        MatchmakingPrivateKey::load_or_create(&path).expect("create");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    }

    #[test]
    fn a_key_file_of_the_wrong_size_is_a_clear_error_and_is_kept() {
        let dir = TempDir::new("size");
        for (name, size) in [("short.key", 31usize), ("long.key", 33), ("empty.key", 0)] {
            let path = dir.0.join(name);
            std::fs::write(&path, vec![7u8; size]).expect("write");
            let e = MatchmakingPrivateKey::load_or_create(&path).expect_err("wrong size");
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            let message = e.to_string();
            assert!(
                message.contains(name) && message.contains(&format!("{size} bytes")),
                "{message}"
            );
            assert_eq!(std::fs::read(&path).expect("kept").len(), size);
        }
    }

    #[test]
    fn racing_creators_all_get_the_same_whole_key() {
        let dir = TempDir::new("race");
        let path = dir.0.join("dev.key");
        let keys: Vec<MatchmakingPrivateKey> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| MatchmakingPrivateKey::load_or_create(&path)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread").expect("key"))
                .collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]));
        let leftovers = std::fs::read_dir(&dir.0).expect("dir").count();
        assert_eq!(leftovers, 1, "only the key file remains");
    }

    #[test]
    fn from_bytes_round_trips_and_debug_hides_the_bytes() {
        let key = MatchmakingPrivateKey::from_bytes([9; 32]);
        assert_eq!(key.as_bytes(), &[9; 32]);
        assert_eq!(format!("{key:?}"), "MatchmakingPrivateKey(..)");
    }
}
