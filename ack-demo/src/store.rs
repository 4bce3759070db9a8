//! The server's durable state: the out file and its journal.
//!
//! Processing a message means appending its payload as one line to the out
//! FILE (every session shares it). A batch is made durable in two steps:
//!
//! 1. the batch's lines are written to FILE and `fdatasync`ed;
//! 2. one journal entry is appended to `FILE.journal` and `fdatasync`ed:
//!    the new length of FILE and, for every session in the batch, its
//!    `processed` count, stored `count` and digest.
//!
//! Only then are the messages acknowledged. A journal entry is checksummed
//! as a whole, so a torn entry (a crash in the middle of step 2) is ignored
//! entirely. On open the journal is replayed and FILE is truncated to the
//! length in the last whole entry: lines written after it were never
//! acknowledged and their clients send them again. A SIGKILL at any point
//! therefore loses no acknowledged line and repeats none.
//!
//! ```text
//! journal entry:
//! +-----------+-----------+---------------+----------+-------------------------------------+
//! | "AKJ1"    | body len  | checksum u64  | FILE len | n | n x (session, processed,       |
//! | 4 bytes   | u32       | (FNV-1a body) | u64      |u32|      count, digest) 4 x u64     |
//! +-----------+-----------+---------------+----------+-------------------------------------+
//! ```
//!
//! On open the journal is rewritten as one entry (written beside it,
//! synced, renamed over it), so it does not grow across restarts.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::error::{Error, ErrorCode};
use crate::receiver::Durable;
use crate::wire::Digest;

const MAGIC: &[u8; 4] = b"AKJ1";
const ENTRY_HEAD: usize = 4 + 4 + 8;
const SESSION_RECORD: usize = 32;
/// Sessions in one journal entry at most (bounds a corrupt length field).
const MAX_SESSIONS_PER_ENTRY: usize = 1 << 20;

/// A session's state in the store.
#[derive(Debug, Clone, Copy, Default)]
struct Session {
    durable: Durable,
    /// Next seq to append (durable or not).
    appended: u64,
    count: u64,
    digest: Digest,
    /// Bumped by every [`Store::claim`]; appends from an older claim fail.
    generation: u64,
}

/// What a connection gets when it claims a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// Pass to [`Store::append`]; a later claim of the same session makes
    /// this one stale.
    pub generation: u64,
    /// What is durable.
    pub durable: Durable,
    /// Next seq the store takes (messages appended, durable or not).
    pub appended: u64,
}

/// The out file and its journal. See the module docs.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    file: File,
    journal: File,
    /// Length of FILE including lines not yet written out.
    file_len: u64,
    pending: Vec<u8>,
    sessions: HashMap<u64, Session>,
    dirty: HashSet<u64>,
    syncs: u64,
}

fn store_err(path: &Path, detail: impl Into<String>) -> Error {
    Error::Store {
        path: path.display().to_string(),
        detail: detail.into(),
    }
}

fn checksum(bytes: &[u8]) -> u64 {
    let mut d = Digest::default();
    d.update(bytes);
    d.value()
}

impl Store {
    /// Opens (or creates) FILE and `FILE.journal`, recovering the state of
    /// every session and cutting FILE back to its last durable length.
    ///
    /// # Errors
    /// [`Error::Store`] when a file cannot be opened, read or synced, or
    /// FILE is shorter than its journal says (data lost outside this
    /// program).
    pub fn open(path: &Path) -> Result<Store, Error> {
        let journal_path = journal_path(path);
        let mut bytes = Vec::new();
        match File::open(&journal_path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)
                    .map_err(|e| store_err(&journal_path, format!("reading: {e}")))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(store_err(&journal_path, format!("opening: {e}"))),
        }
        let (entries, valid) = parse_journal(&bytes);
        if valid < bytes.len() {
            warn!(
                journal = %journal_path.display(),
                torn_bytes = bytes.len() - valid,
                "ignoring a torn journal entry (crash while writing it)"
            );
        }
        let mut sessions: HashMap<u64, Session> = HashMap::new();
        let mut durable_len = 0;
        for entry in &entries {
            durable_len = entry.file_len;
            for &(session, d) in &entry.sessions {
                sessions.insert(
                    session,
                    Session {
                        durable: d,
                        appended: d.processed,
                        count: d.count,
                        digest: Digest::from_value(d.digest),
                        generation: 0,
                    },
                );
            }
        }

        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(|e| store_err(path, format!("opening: {e}")))?;
        let len = file
            .metadata()
            .map_err(|e| store_err(path, format!("reading its size: {e}")))?
            .len();
        if len < durable_len {
            return Err(store_err(
                path,
                format!("holds {len} bytes, its journal says {durable_len} are durable"),
            ));
        }
        if len > durable_len {
            info!(
                file = %path.display(),
                cut = len - durable_len,
                "cutting lines that were never acknowledged"
            );
            file.set_len(durable_len)
                .map_err(|e| store_err(path, format!("truncating: {e}")))?;
            file.sync_all()
                .map_err(|e| store_err(path, format!("syncing: {e}")))?;
        }

        // Rewrite the journal as one entry, atomically.
        let tmp = journal_path.with_extension("journal.tmp");
        let mut compact = Vec::new();
        let all: Vec<(u64, Durable)> = sessions.iter().map(|(&s, v)| (s, v.durable)).collect();
        encode_entry(durable_len, &all, &mut compact);
        let mut t = File::create(&tmp).map_err(|e| store_err(&tmp, format!("creating: {e}")))?;
        t.write_all(&compact)
            .and_then(|()| t.sync_all())
            .map_err(|e| store_err(&tmp, format!("writing: {e}")))?;
        std::fs::rename(&tmp, &journal_path)
            .map_err(|e| store_err(&journal_path, format!("replacing: {e}")))?;
        if let Some(dir) = journal_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        let journal = OpenOptions::new()
            .append(true)
            .open(&journal_path)
            .map_err(|e| store_err(&journal_path, format!("opening: {e}")))?;
        info!(
            file = %path.display(),
            sessions = sessions.len(),
            bytes = durable_len,
            "store recovered"
        );
        Ok(Store {
            path: path.to_owned(),
            file,
            journal,
            file_len: durable_len,
            pending: Vec::new(),
            sessions,
            dirty: HashSet::new(),
            syncs: 0,
        })
    }

    /// Takes a session over for a new connection.
    pub fn claim(&mut self, session: u64) -> Claim {
        let s = self.sessions.entry(session).or_default();
        s.generation += 1;
        Claim {
            generation: s.generation,
            durable: s.durable,
            appended: s.appended,
        }
    }

    /// Processes message `seq` of `session`: appends its payload as a line
    /// (written and made durable by the next [`sync`](Store::sync)).
    ///
    /// # Errors
    /// [`Error::Protocol`] when another connection claimed the session since
    /// (`SessionTakenOver`), the payload holds a newline (`Malformed`: it
    /// would not be one line), or `seq` is not the next one.
    pub fn append(
        &mut self,
        session: u64,
        generation: u64,
        seq: u64,
        payload: &[u8],
    ) -> Result<(), Error> {
        let s = self.sessions.entry(session).or_default();
        if s.generation != generation {
            return Err(Error::protocol(
                ErrorCode::SessionTakenOver,
                format!("session {session} was taken over by a newer connection"),
            ));
        }
        if payload.contains(&b'\n') {
            return Err(Error::protocol(
                ErrorCode::Malformed,
                format!("DATA seq {seq} payload contains a newline; each message is one line"),
            ));
        }
        if seq != s.appended {
            return Err(Error::protocol(
                ErrorCode::SeqGap,
                format!("seq {seq} but the store expects {}", s.appended),
            ));
        }
        self.pending.extend_from_slice(payload);
        self.pending.push(b'\n');
        self.file_len += payload.len() as u64 + 1;
        s.appended += 1;
        s.count += 1;
        s.digest.update(payload);
        self.dirty.insert(session);
        Ok(())
    }

    /// Makes every appended line durable (FILE, then journal, each synced).
    /// Cheap when nothing is pending. Afterwards [`durable`](Store::durable)
    /// says, per session, what may be acknowledged: hand it to
    /// [`Receiver::on_durable`](crate::receiver::Receiver::on_durable).
    ///
    /// # Errors
    /// [`Error::Store`] when writing or syncing fails; nothing is then
    /// acknowledged.
    pub fn sync(&mut self) -> Result<(), Error> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(&self.pending)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| store_err(&self.path, format!("writing lines: {e}")))?;
        self.pending.clear();
        let mut records = Vec::with_capacity(self.dirty.len());
        for &id in &self.dirty {
            let s = &self.sessions[&id];
            records.push((
                id,
                Durable {
                    processed: s.appended,
                    count: s.count,
                    digest: s.digest.value(),
                },
            ));
        }
        let mut entry = Vec::with_capacity(ENTRY_HEAD + 12 + records.len() * SESSION_RECORD);
        encode_entry(self.file_len, &records, &mut entry);
        let jpath = journal_path(&self.path);
        self.journal
            .write_all(&entry)
            .and_then(|()| self.journal.sync_data())
            .map_err(|e| store_err(&jpath, format!("writing: {e}")))?;
        for (id, d) in records {
            if let Some(s) = self.sessions.get_mut(&id) {
                s.durable = d;
            }
        }
        self.dirty.clear();
        self.syncs += 1;
        Ok(())
    }

    /// What is durable for `session`.
    pub fn durable(&self, session: u64) -> Durable {
        self.sessions
            .get(&session)
            .map(|s| s.durable)
            .unwrap_or_default()
    }

    /// Sessions known.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Batches made durable since open (each one FILE and one journal sync).
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// The out file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `FILE.journal` beside FILE.
pub fn journal_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".journal");
    PathBuf::from(p)
}

struct Entry {
    file_len: u64,
    sessions: Vec<(u64, Durable)>,
}

fn encode_entry(file_len: u64, sessions: &[(u64, Durable)], out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(12 + sessions.len() * SESSION_RECORD);
    body.extend_from_slice(&file_len.to_be_bytes());
    body.extend_from_slice(&(sessions.len() as u32).to_be_bytes());
    for (id, d) in sessions {
        for v in [*id, d.processed, d.count, d.digest] {
            body.extend_from_slice(&v.to_be_bytes());
        }
    }
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&checksum(&body).to_be_bytes());
    out.extend_from_slice(&body);
}

/// Whole entries, and the length of the valid prefix.
fn parse_journal(bytes: &[u8]) -> (Vec<Entry>, usize) {
    let mut entries = Vec::new();
    let mut at = 0;
    while let Some((entry, len)) = parse_entry(&bytes[at..]) {
        entries.push(entry);
        at += len;
    }
    (entries, at)
}

fn parse_entry(bytes: &[u8]) -> Option<(Entry, usize)> {
    if bytes.len() < ENTRY_HEAD || &bytes[..4] != MAGIC {
        return None;
    }
    let body_len = u32::from_be_bytes(bytes[4..8].try_into().ok()?) as usize;
    let sum = u64::from_be_bytes(bytes[8..16].try_into().ok()?);
    let body = bytes.get(ENTRY_HEAD..ENTRY_HEAD + body_len)?;
    if checksum(body) != sum || body.len() < 12 {
        return None;
    }
    let file_len = u64::from_be_bytes(body[..8].try_into().ok()?);
    let n = u32::from_be_bytes(body[8..12].try_into().ok()?) as usize;
    if n > MAX_SESSIONS_PER_ENTRY || body.len() != 12 + n * SESSION_RECORD {
        return None;
    }
    let mut sessions = Vec::with_capacity(n);
    for rec in body[12..].chunks_exact(SESSION_RECORD) {
        let v = |i: usize| u64::from_be_bytes(rec[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        sessions.push((
            v(0),
            Durable {
                processed: v(1),
                count: v(2),
                digest: v(3),
            },
        ));
    }
    Some((Entry { file_len, sessions }, ENTRY_HEAD + body_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ack-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("out.txt")
    }

    #[test]
    fn durable_state_survives_reopen_and_unsynced_lines_are_cut() {
        let path = tmp("reopen");
        let mut store = Store::open(&path).unwrap();
        let c = store.claim(7);
        store.append(7, c.generation, 0, b"msg 0").unwrap();
        store.append(7, c.generation, 1, b"msg 1").unwrap();
        store.sync().unwrap();
        store.append(7, c.generation, 2, b"msg 2").unwrap();
        // Written to FILE but never journaled: as if killed between steps.
        store.file.write_all(&store.pending).unwrap();
        drop(store);
        let mut store = Store::open(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"msg 0\nmsg 1\n");
        let c = store.claim(7);
        assert_eq!(c.durable.processed, 2);
        assert_eq!(c.appended, 2);
        let mut d = Digest::default();
        d.update(b"msg 0");
        d.update(b"msg 1");
        assert_eq!(c.durable.digest, d.value());
    }

    #[test]
    fn a_journal_torn_at_any_byte_falls_back_to_the_previous_entry() {
        let path = tmp("torn");
        let mut store = Store::open(&path).unwrap();
        let c = store.claim(1);
        store.append(1, c.generation, 0, b"a").unwrap();
        store.sync().unwrap();
        let before = std::fs::read(journal_path(&path)).unwrap();
        store.append(1, c.generation, 1, b"b").unwrap();
        store.sync().unwrap();
        drop(store);
        let full = std::fs::read(journal_path(&path)).unwrap();
        let file = std::fs::read(&path).unwrap();
        for cut in before.len()..full.len() {
            std::fs::write(journal_path(&path), &full[..cut]).unwrap();
            std::fs::write(&path, &file).unwrap();
            let mut s = Store::open(&path).unwrap();
            assert_eq!(s.claim(1).durable.processed, 1, "cut at {cut}");
            assert_eq!(std::fs::read(&path).unwrap(), b"a\n", "cut at {cut}");
        }
    }

    #[test]
    fn stale_claims_newlines_and_gaps_are_refused_and_write_nothing() {
        let path = tmp("refuse");
        let mut store = Store::open(&path).unwrap();
        let old = store.claim(3);
        let new = store.claim(3);
        assert!(store.append(3, old.generation, 0, b"x").is_err());
        assert!(store.append(3, new.generation, 0, b"a\nb").is_err());
        assert!(store.append(3, new.generation, 5, b"x").is_err());
        store.sync().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }

    #[test]
    fn a_corrupt_last_entry_is_ignored_and_sessions_recover_independently() {
        let path = tmp("flip");
        let mut store = Store::open(&path).unwrap();
        let a = store.claim(1);
        let b = store.claim(2);
        store.append(1, a.generation, 0, b"a0").unwrap();
        store.append(2, b.generation, 0, b"b0").unwrap();
        store.sync().unwrap();
        let before = std::fs::read(journal_path(&path)).unwrap().len();
        store.append(2, b.generation, 1, b"b1").unwrap();
        store.append(1, a.generation, 1, b"a1").unwrap();
        store.sync().unwrap();
        drop(store);
        let full = std::fs::read(journal_path(&path)).unwrap();
        let file = std::fs::read(&path).unwrap();
        assert_eq!(file, b"a0\nb0\nb1\na1\n");
        for at in before..full.len() {
            let mut bad = full.clone();
            bad[at] ^= 0x10;
            std::fs::write(journal_path(&path), &bad).unwrap();
            std::fs::write(&path, &file).unwrap();
            let mut s = Store::open(&path).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), b"a0\nb0\n", "flip at {at}");
            assert_eq!(s.claim(1).durable.processed, 1);
            assert_eq!(s.claim(2).durable.processed, 1);
        }
        // Intact: both sessions at 2, and the state survives a second
        // reopen (the journal was compacted by the first).
        std::fs::write(journal_path(&path), &full).unwrap();
        std::fs::write(&path, &file).unwrap();
        drop(Store::open(&path).unwrap());
        let mut s = Store::open(&path).unwrap();
        let mut d = Digest::default();
        d.update(b"b0");
        d.update(b"b1");
        assert_eq!(
            s.claim(2).durable,
            Durable {
                processed: 2,
                count: 2,
                digest: d.value()
            }
        );
        assert_eq!(s.claim(1).durable.processed, 2);
        assert_eq!(s.durable(3), Durable::default());
    }

    #[test]
    fn a_file_shorter_than_its_journal_is_an_error() {
        let path = tmp("short");
        let mut store = Store::open(&path).unwrap();
        let c = store.claim(1);
        store.append(1, c.generation, 0, b"abc").unwrap();
        store.sync().unwrap();
        drop(store);
        std::fs::write(&path, b"ab").unwrap();
        let e = Store::open(&path).unwrap_err().to_string();
        assert!(e.contains("holds 2 bytes, its journal says 4"), "{e}");
    }
}
