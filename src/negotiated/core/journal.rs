//! Where a relay records the facts it stored, so that a restarted relay gives the same
//! verdicts as before.
//!
//! Every match is mutual because the relay stores at most one of an accept and a
//! withdrawal of a bid, and each side learns which from the relay. A relay that forgets
//! on restart can break that: it may have told the requester "your accept is stored" and
//! then, restarted and empty, store the bidder's withdrawal of the same bid. With a
//! journal the relay records each fact **before** it tells anyone the fact is stored, and
//! a restarted relay reads the journal back: the bidder's withdrawal is refused with the
//! accept that came first, and both sides agree.
//!
//! - [`NegotiatedMemoryJournal`]: kept in memory, shared by the relay apps of one process
//!   (tests, or a relay plugin rebuilt in place).
//! - [`NegotiatedFileJournal`]: one append-only file per frame in a directory; frames are
//!   deleted as they expire. A record is written with one `write` call before the verdict
//!   is sent, so it survives the relay process dying; it is not synced to disk per fact,
//!   so a power loss of the machine can lose the last facts.
//! - Anything else (a database, Redis): implement [`NegotiatedFactJournal`].

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::shared::codec::{self, MAX_MESSAGE_BYTES};

use super::fact::NegotiatedSignedFact;

/// A relay's durable record of stored facts.
pub trait NegotiatedFactJournal: Send + 'static {
    /// Records `fact`, which lives in `frame`, before the relay reports it stored. An
    /// error refuses the fact.
    fn append(&mut self, frame: u64, fact: &NegotiatedSignedFact) -> io::Result<()>;

    /// Forgets every frame before `frame` (they expired).
    fn drop_before(&mut self, frame: u64) -> io::Result<()>;

    /// Every fact recorded: frames in ascending order, each frame's facts in the order
    /// they were appended (so a fact comes after the request and bid it names).
    fn load(&mut self) -> io::Result<Vec<NegotiatedSignedFact>>;
}

/// A shared handle to a journal: clones are the same journal, so a relay started again
/// with the same settings reads what the previous one wrote.
#[derive(Clone)]
pub struct NegotiatedRelayJournal(Arc<Mutex<dyn NegotiatedFactJournal>>);

impl NegotiatedRelayJournal {
    /// A handle to `journal`.
    pub fn new(journal: impl NegotiatedFactJournal) -> Self {
        Self(Arc::new(Mutex::new(journal)))
    }

    /// A journal in memory (a fresh [`NegotiatedMemoryJournal`]).
    pub fn memory() -> Self {
        Self::new(NegotiatedMemoryJournal::default())
    }

    /// A journal of files in `dir` (created if missing), see [`NegotiatedFileJournal`].
    pub fn open_dir(dir: impl Into<PathBuf>) -> io::Result<Self> {
        Ok(Self::new(NegotiatedFileJournal::open(dir)?))
    }

    /// The journal, locked. A journal whose holder panicked is still usable: every
    /// operation on it is a single append or delete.
    pub fn lock(&self) -> MutexGuard<'_, dyn NegotiatedFactJournal + 'static> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for NegotiatedRelayJournal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NegotiatedRelayJournal")
    }
}

/// Two handles are equal when they are the same journal.
impl PartialEq for NegotiatedRelayJournal {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for NegotiatedRelayJournal {}

/// A journal in memory.
#[derive(Debug, Default, Clone)]
pub struct NegotiatedMemoryJournal {
    frames: BTreeMap<u64, Vec<NegotiatedSignedFact>>,
}

impl NegotiatedFactJournal for NegotiatedMemoryJournal {
    fn append(&mut self, frame: u64, fact: &NegotiatedSignedFact) -> io::Result<()> {
        self.frames.entry(frame).or_default().push(fact.clone());
        Ok(())
    }

    fn drop_before(&mut self, frame: u64) -> io::Result<()> {
        self.frames = self.frames.split_off(&frame);
        Ok(())
    }

    fn load(&mut self) -> io::Result<Vec<NegotiatedSignedFact>> {
        Ok(self.frames.values().flatten().cloned().collect())
    }
}

/// A journal of files: `frame-<frame>.facts` in one directory, each a sequence of
/// records (a 4-byte little-endian length, then the fact in the wire codec, at most
/// [`MAX_MESSAGE_BYTES`]). A record cut short by a crash ends its file's reading; so does
/// one that does not decode (the file was damaged), and [`load`](Self::load) reports
/// nothing past it rather than guessing.
#[derive(Debug)]
pub struct NegotiatedFileJournal {
    dir: PathBuf,
    /// The file last appended to, kept open.
    open: Option<(u64, File)>,
}

impl NegotiatedFileJournal {
    /// Opens (creating it if missing) the journal directory.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(Self { dir, open: None })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, frame: u64) -> PathBuf {
        self.dir.join(format!("frame-{frame}.facts"))
    }

    /// The frames that have a file, ascending.
    fn frames(&self) -> io::Result<Vec<u64>> {
        let mut frames = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let frame = name
                .to_str()
                .and_then(|n| n.strip_prefix("frame-"))
                .and_then(|n| n.strip_suffix(".facts"))
                .and_then(|n| n.parse::<u64>().ok());
            frames.extend(frame);
        }
        frames.sort_unstable();
        Ok(frames)
    }

    fn file_for(&mut self, frame: u64) -> io::Result<&mut File> {
        if self.open.as_ref().is_none_or(|(open, _)| *open != frame) {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path_of(frame))?;
            self.open = Some((frame, file));
        }
        Ok(&mut self.open.as_mut().expect("opened just above").1)
    }
}

impl NegotiatedFactJournal for NegotiatedFileJournal {
    fn append(&mut self, frame: u64, fact: &NegotiatedSignedFact) -> io::Result<()> {
        let bytes = codec::encode(fact);
        let mut record = Vec::with_capacity(4 + bytes.len());
        record.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        record.extend_from_slice(&bytes);
        // one write: a crash leaves a whole record or a short one, which load skips
        self.file_for(frame)?.write_all(&record)
    }

    fn drop_before(&mut self, frame: u64) -> io::Result<()> {
        if self.open.as_ref().is_some_and(|(open, _)| *open < frame) {
            self.open = None;
        }
        for old in self.frames()?.into_iter().filter(|f| *f < frame) {
            fs::remove_file(self.path_of(old))?;
        }
        Ok(())
    }

    fn load(&mut self) -> io::Result<Vec<NegotiatedSignedFact>> {
        let mut facts = Vec::new();
        for frame in self.frames()? {
            let mut bytes = Vec::new();
            File::open(self.path_of(frame))?.read_to_end(&mut bytes)?;
            facts.extend(read_records(&bytes));
        }
        Ok(facts)
    }
}

/// The whole, decodable records at the start of `bytes`.
fn read_records(mut bytes: &[u8]) -> Vec<NegotiatedSignedFact> {
    let mut facts = Vec::new();
    while let Some((length, rest)) = bytes.split_first_chunk::<4>() {
        let length = u32::from_le_bytes(*length) as usize;
        if length > MAX_MESSAGE_BYTES || length > rest.len() {
            break;
        }
        let (record, rest) = rest.split_at(length);
        match codec::decode::<NegotiatedSignedFact>(record) {
            Ok(fact) => facts.push(fact),
            Err(_) => break,
        }
        bytes = rest;
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::negotiated::core::fact::{NegotiatedCancel, NegotiatedFact, NegotiatedFactId};

    fn cancel(author: u64, request: u64) -> NegotiatedSignedFact {
        NegotiatedSignedFact::new(
            author,
            NegotiatedFact::Cancel(NegotiatedCancel::request(NegotiatedFactId(request))),
        )
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "negotiated-journal-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    /// A journal directory in which a process that ended wrote `facts` (frame, fact).
    fn written(name: &str, facts: &[(u64, NegotiatedSignedFact)]) -> PathBuf {
        let dir = temp_dir(name);
        let mut journal = NegotiatedFileJournal::open(&dir).unwrap();
        for (frame, fact) in facts {
            journal.append(*frame, fact).unwrap();
        }
        dir
    }

    fn exercise(journal: &mut dyn NegotiatedFactJournal) {
        journal.append(7, &cancel(1, 10)).unwrap();
        journal.append(5, &cancel(2, 20)).unwrap();
        journal.append(7, &cancel(3, 30)).unwrap();
        journal.append(u64::MAX, &cancel(4, 40)).unwrap();
        let all = journal.load().unwrap();
        assert_eq!(
            all,
            vec![cancel(2, 20), cancel(1, 10), cancel(3, 30), cancel(4, 40)]
        );
        journal.drop_before(7).unwrap();
        assert_eq!(
            journal.load().unwrap(),
            vec![cancel(1, 10), cancel(3, 30), cancel(4, 40)]
        );
        journal.drop_before(u64::MAX).unwrap();
        assert_eq!(journal.load().unwrap(), vec![cancel(4, 40)]);
    }

    #[test]
    fn memory_journal_keeps_frames_in_order_and_drops_old_ones() {
        exercise(&mut NegotiatedMemoryJournal::default());
    }

    #[test]
    fn file_journal_keeps_frames_in_order_and_drops_old_ones() {
        let dir = temp_dir("order");
        exercise(&mut NegotiatedFileJournal::open(&dir).unwrap());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn file_journal_is_read_back_by_a_new_process() {
        let dir = written("reopen", &[(3, cancel(1, 10)), (3, cancel(2, 20))]);
        let mut second = NegotiatedFileJournal::open(&dir).unwrap();
        assert_eq!(second.load().unwrap(), vec![cancel(1, 10), cancel(2, 20)]);
        second.append(3, &cancel(3, 30)).unwrap();
        assert_eq!(second.load().unwrap().len(), 3);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_record_cut_short_or_damaged_ends_the_file() {
        let facts = [(1, cancel(1, 10)), (2, cancel(2, 20)), (2, cancel(3, 30))];
        let dir = written("torn", &facts);
        let append = |name: &str, bytes: &[u8]| {
            let mut file = OpenOptions::new()
                .append(true)
                .open(dir.join(name))
                .unwrap();
            file.write_all(bytes).unwrap();
        };
        // frame 1: a torn record (length says 200, 3 bytes follow)
        append("frame-1.facts", &[200, 0, 0, 0, 1, 2, 3]);
        // frame 2: a hostile length, then garbage
        append("frame-2.facts", &[255, 255, 255, 255, 9, 9]);
        // a file that is not the journal's
        fs::write(dir.join("notes.txt"), b"hello").unwrap();
        let mut journal = NegotiatedFileJournal::open(&dir).unwrap();
        assert_eq!(
            journal.load().unwrap(),
            vec![cancel(1, 10), cancel(2, 20), cancel(3, 30)]
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn handles_share_one_journal() {
        let a = NegotiatedRelayJournal::memory();
        let b = a.clone();
        a.lock().append(1, &cancel(1, 10)).unwrap();
        assert_eq!(b.lock().load().unwrap(), vec![cancel(1, 10)]);
        assert_eq!(a, b);
        assert_ne!(a, NegotiatedRelayJournal::memory());
    }
}
