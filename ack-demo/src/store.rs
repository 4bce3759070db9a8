//! The server's durable state: the out file and its journal.
//!
//! Processing a message means appending its payload as one line to the out
//! FILE (every session shares it). A batch is made durable by one *commit*:
//!
//! 1. the batch's lines are written to FILE at the last durable length
//!    (positioned writes, never `O_APPEND`);
//! 2. one commit entry is written at the end of `FILE.journal`: the new
//!    length of FILE, the checksum of the FILE bytes it covers (from the
//!    previous entry's length to its own) and, for every session in the
//!    batch, its `processed` count, stored `count`, digest, token and time
//!    of last activity;
//! 3. FILE and the journal are `fdatasync`ed *at the same time*
//!    ([`Disk::sync_both`]: the journal's on a helper thread), so a commit
//!    waits for one sync's latency, not two in a row.
//!
//! Only when both syncs succeed are the messages acknowledged. Because the
//! two syncs race, a crash may leave the entry on disk without its lines
//! (or with some of them): the entry's checksum of the covered bytes is
//! what tells. On open the journal is replayed, every commit's covered
//! bytes are read back and verified, and FILE is cut to the length in the
//! last entry that verifies: lines written after it were never
//! acknowledged and their clients send them again. A SIGKILL or power loss
//! at any point therefore loses no acknowledged line and repeats none.
//!
//! Why two files synced together rather than one file: FILE stays the
//! plain output (lines only) that a user reads, and the journal stays small
//! enough to compact at every open. Commits are made one at a time (the
//! next one starts after the previous one's syncs returned), so only the
//! *last* entry can cover bytes that are not durable; the checksum makes
//! that case detectable instead of trusted.
//!
//! # The write-ahead log ([`StoreOptions::wal`], `server --wal`)
//!
//! Two files synced at the same time still cost two device flushes on a
//! disk that does not merge them (measured by `ack-demo bench`: about twice
//! one `fdatasync` on this project's VM). With the write-ahead log a commit
//! (kind 4) carries its lines *in the journal entry*, after the records;
//! the lines are written to FILE too, but only the journal is synced: one
//! flush per commit. After a crash FILE may lack or garble any of those
//! lines: recovery writes every logged commit's lines again, even where
//! FILE's bytes verify (pages whose background writeback failed read back
//! right but are not on the disk, and a later sync does not write them),
//! and FILE is synced before the new base (which forgets the lines)
//! replaces the journal. That sync also reports a writeback error of FILE
//! from the previous run, before anything relies on it. When writing the
//! lines again fails (a full disk) the open refuses and changes nothing:
//! they are acknowledged, so the commit is never dropped as a torn one.
//! The journal grows by the lines until the next start.
//!
//! # Failed writes and syncs
//!
//! The store never trusts bytes whose write or sync failed. Lines not yet
//! journaled stay in memory; after a failed (or short) write or a failed
//! `fdatasync` of FILE, FILE is cut back to its last durable length and the
//! next [`Store::sync`] writes *all* of them again from memory, at that
//! length, before syncing: after a failed `fsync` the kernel may have
//! dropped the dirty pages ("fsyncgate"), so a later `fsync` that succeeds
//! proves nothing about bytes written before the failure, but it does prove
//! the bytes written again after it. A failed journal write or sync is cut
//! back the same way, so that a torn entry is never left in the middle of
//! the journal. If cutting back fails too, the store is *poisoned*: every
//! later append and sync fails until the server is restarted and recovers
//! from the journal. Nothing is acknowledged before both syncs succeed; when
//! either fails, *both* files are cut back (the journal first) and the next
//! commit writes the lines and the entry again.
//!
//! # Journal layout (`AKJ2`)
//!
//! ```text
//! entry:
//! +--------+----------+--------------+------+-----------+----------+----+-----------+
//! | "AKJ2" | body len | checksum of  | kind | parts     | FILE len | n  | n records |
//! | 4 B    | u32      | body, u64    | u8   | after, u32| u64      | u32| 64 B each |
//! +--------+----------+--------------+------+-----------+----------+----+-----------+
//!                                    '------------------ body ------------------------'
//! record: session u64 | processed u64 | count u64 | digest u64 | token 16 B |
//!         last active u64 (Unix seconds) | 8 B reserved (zero)
//! ```
//!
//! A commit (kind 3) has 8 more bytes after `n`, before the records: the
//! checksum of the FILE bytes it covers (the same word-wise FNV-1a as the
//! entries'). Appends of kind 2 (written by earlier versions, whose FILE
//! was synced before the entry was written) are still read.
//!
//! The journal is a *base* followed by *appends*. The base is the whole
//! state at open, split in parts of at most [`BASE_PART_SESSIONS`] sessions
//! (kind 1; `parts after` counts down to 0 on the last part), so any number
//! of sessions fits. It is written to `FILE.journal.tmp`, synced and renamed
//! over the journal: it is never torn. Each [`Store::sync`] appends one
//! commit (kind 3) for its batch.
//!
//! # What recovery accepts, and what it refuses
//!
//! - *A torn tail* (a crash while appending the last entry: a short or
//!   damaged entry with no valid entry after it) is the normal crash case:
//!   it is dropped silently (a warning in the log) and FILE is cut to the
//!   previous entry's length. That batch was never acknowledged. (A damaged
//!   *last* append cannot be told from a torn one; it is folded into the
//!   base at the next open, which keeps that window short.)
//! - *A last commit whose covered bytes do not verify* (FILE shorter than
//!   it says, or those bytes different: the crash came before FILE's sync
//!   finished) is dropped the same way, and FILE cut to the entry before.
//!   That commit was never acknowledged.
//! - *Corruption* makes [`Store::open`] refuse, naming the file, the byte
//!   offset and the recovering command, and changing nothing: a damaged
//!   base, a damaged entry followed by a valid one (lost acknowledged state
//!   in the middle), a commit whose covered bytes do not verify followed by
//!   a valid entry (acknowledged lines damaged), a journal that is missing or empty while FILE holds
//!   bytes, a journal of another format, or FILE shorter than its base.
//! - `--repair` ([`StoreOptions::repair`]) keeps the longest state that
//!   verifies: the whole base and the valid appends before the first bad
//!   entry (nothing when the base is bad or the journal is missing). The
//!   bytes of FILE past that state's length are *moved* to
//!   `FILE.unverified-<unix time>`, never deleted; FILE is cut there and a
//!   fresh journal written. Sessions resume from the kept state.
//!
//! # Sessions
//!
//! A session is bound to the token of the client that first claimed it
//! ([`Store::claim`]); a claim with another token is refused and changes
//! nothing. Sessions with lines are journaled (with their token, so it
//! survives restarts). A session that never stored a line lives only in
//! memory, while a connection holds it ([`Store::release`] forgets it).
//! Sessions idle (no connection, no new line) for longer than
//! [`StoreOptions::session_expiry`] are forgotten; a client that resumes one
//! afterwards starts it again from seq 0. At most
//! [`StoreOptions::max_sessions`] sessions are held; a new one beyond that
//! is refused (`TooManySessions`) once expired ones are dropped.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use crate::error::{Error, ErrorCode};
use crate::receiver::Durable;
use crate::wire::{Digest, Token};

const MAGIC: &[u8; 4] = b"AKJ2";
const OLD_MAGIC: &[u8; 4] = b"AKJ1";
const ENTRY_HEAD: usize = 4 + 4 + 8;
/// kind, parts after, FILE len, n.
const BODY_HEAD: usize = 1 + 4 + 8 + 4;
const SESSION_RECORD: usize = 64;
const KIND_BASE: u8 = 1;
const KIND_APPEND: u8 = 2;
/// An append that carries the checksum of the FILE bytes it covers (from
/// the previous entry's FILE length to its own), so that FILE and the
/// journal are synced at the same time: see the module docs.
const KIND_COMMIT: u8 = 3;
/// The covered bytes' checksum in a commit's body, after its head.
const COVERED_LEN: usize = 8;
/// A commit that also carries the lines it covers, after its records
/// ([`StoreOptions::wal`]): only the journal is synced.
const KIND_LOGGED: u8 = 4;
/// Sessions in one part of the base at most.
pub const BASE_PART_SESSIONS: usize = 16 * 1024;
/// Largest append entry: its body length must fit the u32 field.
const MAX_APPEND_SESSIONS: usize = (u32::MAX as usize - BODY_HEAD) / SESSION_RECORD;

/// Which of the store's files an operation is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The out file.
    File,
    /// `FILE.journal`.
    Journal,
}

/// The store's file operations after open: a seam for fault injection.
/// [`RealDisk`] does them; a test can make a write short, a sync fail, or
/// the disk full.
pub trait Disk: Send + fmt::Debug {
    /// `pwrite(2)`: writes some of `buf` at `offset`, returns how much.
    fn write_at(
        &mut self,
        target: Target,
        file: &File,
        buf: &[u8],
        offset: u64,
    ) -> io::Result<usize>;
    /// `fdatasync(2)`.
    fn sync_data(&mut self, target: Target, file: &File) -> io::Result<()>;
    /// `ftruncate(2)`.
    fn set_len(&mut self, target: Target, file: &File, len: u64) -> io::Result<()>;
    /// `fsync(2)`: data and metadata. Used by [`Store::open_with`] before
    /// the new base forgets the journal's lines; the default calls
    /// [`File::sync_all`].
    fn sync_all(&mut self, _target: Target, file: &File) -> io::Result<()> {
        file.sync_all()
    }
    /// `fdatasync(2)` of FILE and of the journal, at the same time where
    /// the disk can: a commit then costs one sync's latency, not two in a
    /// row. Both are always attempted; each result is returned. The default
    /// does them one after the other through [`Disk::sync_data`].
    fn sync_both(&mut self, file: &File, journal: &File) -> (io::Result<()>, io::Result<()>) {
        let f = self.sync_data(Target::File, file);
        let j = self.sync_data(Target::Journal, journal);
        (f, j)
    }
}

/// The operating system's file operations.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealDisk;

impl Disk for RealDisk {
    fn write_at(&mut self, _: Target, file: &File, buf: &[u8], offset: u64) -> io::Result<usize> {
        file.write_at(buf, offset)
    }
    fn sync_data(&mut self, _: Target, file: &File) -> io::Result<()> {
        file.sync_data()
    }
    fn set_len(&mut self, _: Target, file: &File, len: u64) -> io::Result<()> {
        file.set_len(len)
    }
    fn sync_both(&mut self, file: &File, journal: &File) -> (io::Result<()>, io::Result<()>) {
        // The journal's sync on the helper thread while this one syncs
        // FILE: a disk that can take both at once does.
        let j = match journal.try_clone() {
            Ok(j) => j,
            Err(e) => return (file.sync_data(), Err(e)),
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let sent = syncer()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send((j, tx))
            .is_ok();
        let f = file.sync_data();
        let j = if sent {
            rx.recv()
                .unwrap_or_else(|_| Err(io::Error::other("the sync thread ended")))
        } else {
            journal.sync_data()
        };
        (f, j)
    }
}

type SyncJob = (File, std::sync::mpsc::SyncSender<io::Result<()>>);

/// The process's helper thread for [`RealDisk::sync_both`], started at the
/// first commit (a thread per commit cost ~30 us, more than tmpfs's sync).
fn syncer() -> &'static std::sync::Mutex<std::sync::mpsc::Sender<SyncJob>> {
    static SYNCER: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<SyncJob>>> =
        std::sync::OnceLock::new();
    SYNCER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<SyncJob>();
        let spawned = std::thread::Builder::new()
            .name("ack-sync".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                for (file, done) in rx {
                    let _ = done.send(file.sync_data());
                }
            });
        if let Err(e) = spawned {
            warn!(error = %e, "no sync helper thread: syncing one file after the other");
        }
        std::sync::Mutex::new(tx)
    })
}

/// How the store treats sessions and a damaged journal.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Forget a session idle (no connection, no new line) this long.
    pub session_expiry: Duration,
    /// Sessions held at most (with lines or connected).
    pub max_sessions: usize,
    /// Recover from a damaged or missing journal by keeping the state that
    /// verifies and moving the rest of FILE aside (see the module docs).
    pub repair: bool,
    /// Write-ahead log: each commit carries its lines in the journal and
    /// only the journal is synced (one flush per commit); FILE is written
    /// without a sync and restored from the journal after a crash.
    pub wal: bool,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            session_expiry: DEFAULT_SESSION_EXPIRY,
            max_sessions: DEFAULT_MAX_SESSIONS,
            repair: false,
            wal: false,
        }
    }
}

/// Default for [`StoreOptions::session_expiry`]: 24 hours.
pub const DEFAULT_SESSION_EXPIRY: Duration = Duration::from_secs(24 * 3600);
/// Default for [`StoreOptions::max_sessions`].
pub const DEFAULT_MAX_SESSIONS: usize = 1 << 20;

/// A session's state in the store.
#[derive(Debug, Clone, Copy)]
struct Session {
    durable: Durable,
    /// Next seq to append (durable or not).
    appended: u64,
    count: u64,
    digest: Digest,
    /// Bumped by every [`Store::claim`]; appends from an older claim fail.
    generation: u64,
    token: Token,
    /// Unix seconds of the last claim, line or release.
    last_active: u64,
    /// A connection holds the latest claim.
    attached: bool,
}

impl Session {
    fn new(token: Token, now: u64) -> Session {
        Session {
            durable: Durable::default(),
            appended: 0,
            count: 0,
            digest: Digest::default(),
            generation: 0,
            token,
            last_active: now,
            attached: false,
        }
    }

    fn from_record(r: &Record) -> Session {
        Session {
            durable: r.durable,
            appended: r.durable.processed,
            count: r.durable.count,
            digest: Digest::from_value(r.durable.digest),
            generation: 0,
            token: r.token,
            last_active: r.last_active,
            attached: false,
        }
    }

    fn holds_nothing(&self) -> bool {
        self.appended == 0 && self.durable.processed == 0
    }
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

/// One commit's I/O, taken out of the store by [`Store::begin_commit`] so
/// that it runs without holding the store; see the module docs.
#[derive(Debug)]
pub struct Commit {
    disk: Box<dyn Disk>,
    file: Arc<File>,
    journal: Arc<File>,
    lines: Vec<u8>,
    entry: Vec<u8>,
    file_at: u64,
    journal_at: u64,
    records: Vec<(u64, Record)>,
    /// The entry carries the lines: only the journal is synced.
    logged: bool,
    failed: Option<(Target, io::Error)>,
}

impl Commit {
    /// Writes the lines to FILE and the entry to the journal, then syncs
    /// both at the same time. The outcome goes back to the store with
    /// [`Store::finish_commit`].
    pub fn run(&mut self) {
        let disk = &mut *self.disk;
        self.failed = match write_all_at(disk, Target::File, &self.file, &self.lines, self.file_at)
        {
            Err(e) => Some((Target::File, e)),
            Ok(()) => match write_all_at(
                disk,
                Target::Journal,
                &self.journal,
                &self.entry,
                self.journal_at,
            ) {
                Err(e) => Some((Target::Journal, e)),
                // Both syncs at once: the entry vouches only for bytes
                // that verify, so it may reach the disk before them.
                Ok(()) if self.logged => disk
                    .sync_data(Target::Journal, &self.journal)
                    .err()
                    .map(|e| (Target::Journal, e)),
                Ok(()) => match disk.sync_both(&self.file, &self.journal) {
                    (Err(e), _) => Some((Target::File, e)),
                    (Ok(()), Err(e)) => Some((Target::Journal, e)),
                    (Ok(()), Ok(())) => None,
                },
            },
        };
    }

    /// Lines (bytes of FILE) in this commit.
    pub fn bytes(&self) -> usize {
        self.lines.len()
    }
}

/// The out file and its journal. See the module docs.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    journal_path: PathBuf,
    file: Arc<File>,
    journal: Arc<File>,
    /// `None` while a [`Commit`] holds it.
    disk: Option<Box<dyn Disk>>,
    options: StoreOptions,
    /// FILE length in the last journal entry.
    durable_len: u64,
    /// Bytes of whole entries in the journal.
    journal_len: u64,
    /// Lines appended after `durable_len`, not yet journaled.
    unsynced: Vec<u8>,
    sessions: HashMap<u64, Session>,
    dirty: HashSet<u64>,
    /// Why the store refuses to write (a failure it could not undo).
    poisoned: Option<String>,
    /// Unix seconds of the next scan for expired sessions.
    next_expiry_scan: u64,
    syncs: u64,
}

fn store_err(path: &Path, detail: impl Into<String>) -> Error {
    Error::Store {
        path: path.display().to_string(),
        detail: detail.into(),
    }
}

/// The journal's checksum: FNV-1a over 64-bit big-endian words (the last
/// one zero-padded), then the length. Every single-bit error changes it
/// (each step is a bijection of the state); a word at a time keeps a
/// million-session base cheap to verify.
fn checksum(bytes: &[u8]) -> u64 {
    let mut sum = Sum::default();
    sum.update(bytes);
    sum.finish()
}

/// [`checksum`] fed in pieces (FILE's bytes are verified in chunks).
#[derive(Debug, Clone)]
struct Sum {
    h: u64,
    len: u64,
    pending: [u8; 8],
    held: usize,
}

const SUM_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Default for Sum {
    fn default() -> Sum {
        Sum {
            h: 0xcbf2_9ce4_8422_2325,
            len: 0,
            pending: [0; 8],
            held: 0,
        }
    }
}

impl Sum {
    fn update(&mut self, mut bytes: &[u8]) {
        self.len += bytes.len() as u64;
        if self.held > 0 {
            let take = (8 - self.held).min(bytes.len());
            self.pending[self.held..self.held + take].copy_from_slice(&bytes[..take]);
            self.held += take;
            bytes = &bytes[take..];
            if self.held < 8 {
                return;
            }
            self.h = (self.h ^ u64::from_be_bytes(self.pending)).wrapping_mul(SUM_PRIME);
            self.held = 0;
        }
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            self.h = (self.h ^ u64::from_be_bytes(a)).wrapping_mul(SUM_PRIME);
        }
        let rest = words.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.held = rest.len();
    }

    fn finish(&self) -> u64 {
        let mut a = [0u8; 8];
        a[..self.held].copy_from_slice(&self.pending[..self.held]);
        let h = (self.h ^ u64::from_be_bytes(a)).wrapping_mul(SUM_PRIME);
        (h ^ self.len).wrapping_mul(SUM_PRIME)
    }
}

/// Unix seconds (0 before 1970).
fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

/// Writes all of `buf` at `offset`, through `disk`.
fn write_all_at(
    disk: &mut dyn Disk,
    target: Target,
    file: &File,
    mut buf: &[u8],
    mut offset: u64,
) -> io::Result<()> {
    while !buf.is_empty() {
        match disk.write_at(target, file, buf, offset) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if interrupted(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Store {
    /// [`open_with`](Store::open_with) with default options, the real disk
    /// and the current time.
    ///
    /// # Errors
    /// As `open_with`.
    pub fn open(path: &Path) -> Result<Store, Error> {
        Store::open_with(
            path,
            StoreOptions::default(),
            Box::new(RealDisk),
            SystemTime::now(),
        )
    }

    /// Opens (or creates) FILE and `FILE.journal`, recovering the state of
    /// every session, cutting FILE back to its last durable length and
    /// forgetting sessions idle since before `now - session_expiry`. Then
    /// rewrites the journal as a base.
    ///
    /// # Errors
    /// [`Error::Store`] when a file cannot be opened, read or synced, or the
    /// journal is damaged in a way that could hide acknowledged data (see
    /// the module docs): the message names the file, the byte offset and
    /// how to recover; nothing has been changed.
    pub fn open_with(
        path: &Path,
        options: StoreOptions,
        disk: Box<dyn Disk>,
        now: SystemTime,
    ) -> Result<Store, Error> {
        let journal_path = journal_path(path);
        let mut bytes = Vec::new();
        let journal_exists = match File::open(&journal_path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)
                    .map_err(|e| store_err(&journal_path, format!("reading: {e}")))?;
                true
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(store_err(&journal_path, format!("opening: {e}"))),
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| store_err(path, format!("opening: {e}")))?;

        // A logged commit's lines are acknowledged and FILE was never
        // synced for them: they are written again from the journal, even
        // where FILE's bytes verify. Those bytes may come from pages whose
        // writeback failed (marked clean, not on the disk: a later fsync
        // succeeds without writing them), so reading them proves nothing;
        // written again, the sync below proves them. A rewrite that fails
        // refuses to open: dropping the commit would lose acknowledged lines.
        let mut disk = disk;
        let mut rewrite_failed = None;
        let parsed = parse_journal(&bytes, &mut |from, to, sum, lines| {
            let Some(l) = lines else {
                return covered_bytes_verify(&file, from, to, sum);
            };
            if l.len() as u64 != to - from || checksum(l) != sum {
                return false;
            }
            if !covered_bytes_verify(&file, from, to, sum) {
                warn!(file = %path.display(), from, to,
                    "restoring acknowledged lines from the journal");
            }
            match write_all_at(&mut *disk, Target::File, &file, l, from) {
                Ok(()) => true,
                Err(e) => {
                    rewrite_failed.get_or_insert((from, to, e));
                    false
                }
            }
        });
        if let Some((from, to, e)) = rewrite_failed {
            return Err(store_err(
                path,
                format!(
                    "writing acknowledged lines (bytes {from} up to {to}) again from the journal: \
                     {e}; the journal still holds them and nothing was cut. Fix the cause \
                     (free space on the disk) and start again"
                ),
            ));
        }
        // Lines written again from the journal may have grown FILE.
        let len = file
            .metadata()
            .map_err(|e| store_err(path, format!("reading its size: {e}")))?
            .len();
        let problem = match &parsed.problem {
            _ if bytes.is_empty() && len > 0 => Some(Damage {
                at: 0,
                reason: if journal_exists {
                    format!("is empty while {} holds {len} bytes", path.display())
                } else {
                    format!("is missing while {} holds {len} bytes", path.display())
                },
            }),
            Some(Problem::Corrupt(d)) => Some(d.clone()),
            Some(Problem::Torn { at }) => {
                warn!(
                    journal = %journal_path.display(),
                    at,
                    torn_bytes = bytes.len() - at,
                    "ignoring a torn journal entry at its end (crash while writing it)"
                );
                None
            }
            Some(Problem::Uncovered { at, from, to }) => {
                warn!(
                    journal = %journal_path.display(),
                    at,
                    from,
                    to,
                    "ignoring the last journal entry: the FILE bytes it covers do not verify \
                     (crash before FILE's sync finished; never acknowledged)"
                );
                None
            }
            None => None,
        };
        // A damaged base leaves no state that verifies.
        let state = if parsed.base_damaged {
            State::default()
        } else {
            parsed.state
        };
        if let Some(d) = &problem {
            if !options.repair {
                return Err(store_err(
                    &journal_path,
                    format!(
                        "{} at byte {}: acknowledged state may be lost, refusing to start. \
                         Restart with `--repair` to keep the state that verifies ({} sessions, \
                         {} of {len} bytes of {}) and move the rest of {} aside",
                        d.reason,
                        d.at,
                        state.sessions.len(),
                        state.file_len,
                        path.display(),
                        path.display()
                    ),
                ));
            }
            warn!(journal = %journal_path.display(), at = d.at, reason = %d.reason,
                "repairing: keeping the state that verifies");
        }
        let durable_len = state.file_len;
        if len < durable_len {
            return Err(store_err(
                path,
                format!(
                    "holds {len} bytes, its journal says {durable_len} are durable: \
                     acknowledged lines were lost outside this program; restore {} from a backup",
                    path.display()
                ),
            ));
        }
        if len > durable_len {
            if problem.is_some() {
                let aside = move_aside(path, &file, durable_len, len, now)?;
                warn!(file = %path.display(), moved = len - durable_len, aside = %aside.display(),
                    "moved the bytes that do not verify aside");
            } else {
                info!(
                    file = %path.display(),
                    cut = len - durable_len,
                    "cutting lines that were never acknowledged"
                );
            }
            file.set_len(durable_len)
                .map_err(|e| store_err(path, format!("truncating: {e}")))?;
        }
        // The new base forgets the journal's lines: FILE must hold them
        // durably first (this also reports a writeback error of lines
        // written by the last run).
        disk.sync_all(Target::File, &file)
            .map_err(|e| store_err(path, format!("syncing: {e}")))?;

        let now_s = unix_secs(now);
        let expiry = options.session_expiry.as_secs();
        let mut state = state;
        let before = state.sessions.len();
        state
            .sessions
            .retain(|_, r| r.last_active.saturating_add(expiry) > now_s);
        if state.sessions.len() < before {
            info!(
                expired = before - state.sessions.len(),
                "forgot sessions idle longer than the expiry"
            );
        }
        let sessions: HashMap<u64, Session> = state
            .sessions
            .iter()
            .map(|(&id, r)| (id, Session::from_record(r)))
            .collect();

        let journal_len = write_base(&journal_path, durable_len, &state.sessions)?;
        let journal = OpenOptions::new()
            .write(true)
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
            journal_path,
            file: Arc::new(file),
            journal: Arc::new(journal),
            disk: Some(disk),
            next_expiry_scan: now_s.saturating_add(expiry_scan_interval(&options)),
            options,
            durable_len,
            journal_len,
            unsynced: Vec::new(),
            sessions,
            dirty: HashSet::new(),
            poisoned: None,
            syncs: 0,
        })
    }

    /// Takes `session` for a new connection presenting `token`. A session
    /// the store does not know is created and bound to `token`.
    ///
    /// # Errors
    /// [`Error::Protocol`] with [`ErrorCode::TokenMismatch`] when the
    /// session is bound to another token (nothing changes: the owner's
    /// connection goes on), [`ErrorCode::TooManySessions`] when the store
    /// is full.
    pub fn claim(&mut self, session: u64, token: Token, now: SystemTime) -> Result<Claim, Error> {
        let now_s = unix_secs(now);
        if now_s >= self.next_expiry_scan {
            self.expire(now);
        }
        if !self.sessions.contains_key(&session) {
            // Expired sessions were dropped above, at most once a scan
            // interval: a flood of new ids while full costs no scan each.
            if self.sessions.len() >= self.options.max_sessions {
                return Err(Error::protocol(
                    ErrorCode::TooManySessions,
                    format!(
                        "the server holds {} sessions, its limit; try again later",
                        self.sessions.len()
                    ),
                ));
            }
            self.sessions.insert(session, Session::new(token, now_s));
        }
        let s = self
            .sessions
            .get_mut(&session)
            .expect("inserted just above");
        if s.token != token {
            return Err(Error::protocol(
                ErrorCode::TokenMismatch,
                format!(
                    "session {session} belongs to another client (its token differs); \
                     resume it with the token it began with (`ack-demo client --token HEX`)"
                ),
            ));
        }
        s.generation += 1;
        s.attached = true;
        s.last_active = s.last_active.max(now_s);
        Ok(Claim {
            generation: s.generation,
            durable: s.durable,
            appended: s.appended,
        })
    }

    /// The connection holding claim `generation` of `session` is gone. A
    /// session that never stored a line is forgotten; others wait for
    /// their client (until they expire).
    pub fn release(&mut self, session: u64, generation: u64, now: SystemTime) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        if s.generation != generation {
            return;
        }
        s.attached = false;
        s.last_active = s.last_active.max(unix_secs(now));
        if s.holds_nothing() && !self.dirty.contains(&session) {
            self.sessions.remove(&session);
        }
    }

    /// Forgets sessions without a connection and without unsynced lines
    /// that were last active `session_expiry` or more before `now`.
    /// Returns how many.
    pub fn expire(&mut self, now: SystemTime) -> usize {
        let now_s = unix_secs(now);
        let expiry = self.options.session_expiry.as_secs();
        let before = self.sessions.len();
        let dirty = &self.dirty;
        self.sessions.retain(|id, s| {
            s.attached || dirty.contains(id) || s.last_active.saturating_add(expiry) > now_s
        });
        self.next_expiry_scan = now_s.saturating_add(expiry_scan_interval(&self.options));
        let gone = before - self.sessions.len();
        if gone > 0 {
            info!(expired = gone, "forgot idle sessions");
        }
        gone
    }

    /// Processes message `seq` of `session`: appends its payload as a line
    /// (written and made durable by the next [`sync`](Store::sync)).
    ///
    /// # Errors
    /// [`Error::Protocol`] when another connection claimed the session since
    /// (`SessionTakenOver`), the payload holds a newline (`Malformed`: it
    /// would not be one line), or `seq` is not the next one;
    /// [`Error::Store`] when the store is poisoned.
    pub fn append(
        &mut self,
        session: u64,
        generation: u64,
        seq: u64,
        payload: &[u8],
    ) -> Result<(), Error> {
        self.check_poisoned()?;
        let Some(s) = self.sessions.get_mut(&session) else {
            return Err(Error::protocol(
                ErrorCode::UnexpectedMessage,
                format!("session {session} is not claimed"),
            ));
        };
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
        self.unsynced.extend_from_slice(payload);
        self.unsynced.push(b'\n');
        s.appended += 1;
        s.count += 1;
        s.digest.update(payload);
        self.dirty.insert(session);
        Ok(())
    }

    fn check_poisoned(&self) -> Result<(), Error> {
        match &self.poisoned {
            Some(why) => Err(store_err(
                &self.path,
                format!(
                    "refusing to write after a failure that could not be undone ({why}); \
                     restart the server to recover from the journal"
                ),
            )),
            None => Ok(()),
        }
    }

    /// Makes every appended line durable: one commit (FILE and journal
    /// written, then synced at the same time).
    /// Cheap when nothing is pending. Afterwards [`durable`](Store::durable)
    /// says, per session, what may be acknowledged: hand it to
    /// [`Receiver::on_durable`](crate::receiver::Receiver::on_durable).
    ///
    /// # Errors
    /// [`Error::Store`] when writing or syncing fails; nothing is then
    /// acknowledged, FILE and journal are cut back to their durable lengths
    /// and the next call writes every pending line again (see the module
    /// docs); when cutting back fails the store is poisoned.
    pub fn sync(&mut self) -> Result<(), Error> {
        match self.begin_commit()? {
            None => Ok(()),
            Some(mut commit) => {
                commit.run();
                self.finish_commit(commit)
            }
        }
    }

    /// Takes every line appended so far into one [`Commit`], whose I/O
    /// ([`Commit::run`]) can then run without holding the store (other
    /// connections go on appending: their lines go into the next commit).
    /// Hand it back with [`finish_commit`](Store::finish_commit). `None`
    /// when nothing is pending or a commit is already out (one at a time:
    /// only the last journal entry may then cover bytes not yet durable).
    ///
    /// # Errors
    /// [`Error::Store`] when the store is poisoned.
    pub fn begin_commit(&mut self) -> Result<Option<Commit>, Error> {
        self.check_poisoned()?;
        if self.dirty.is_empty() || self.unsynced.is_empty() {
            return Ok(None);
        }
        let Some(disk) = self.disk.take() else {
            return Ok(None);
        };
        let lines = std::mem::take(&mut self.unsynced);
        let file_len = self.durable_len + lines.len() as u64;
        let mut records = Vec::with_capacity(self.dirty.len());
        for &id in &self.dirty {
            let s = &self.sessions[&id];
            records.push((
                id,
                Record {
                    durable: Durable {
                        processed: s.appended,
                        count: s.count,
                        digest: s.digest.value(),
                    },
                    token: s.token,
                    last_active: s.last_active,
                },
            ));
        }
        debug_assert!(records.len() <= MAX_APPEND_SESSIONS);
        let mut entry = Vec::with_capacity(
            ENTRY_HEAD + BODY_HEAD + COVERED_LEN + records.len() * SESSION_RECORD,
        );
        let logged = self.options.wal
            && (BODY_HEAD + COVERED_LEN + records.len() * SESSION_RECORD)
                .checked_add(lines.len())
                .is_some_and(|n| n <= u32::MAX as usize);
        encode_entry_covering(
            if logged { KIND_LOGGED } else { KIND_COMMIT },
            0,
            file_len,
            Some(checksum(&lines)),
            &records,
            &mut entry,
        );
        if logged {
            // The body grows by the lines: fix its length and checksum.
            entry.extend_from_slice(&lines);
            let body_len = (entry.len() - ENTRY_HEAD) as u32;
            entry[4..8].copy_from_slice(&body_len.to_be_bytes());
            let sum = checksum(&entry[ENTRY_HEAD..]);
            entry[8..16].copy_from_slice(&sum.to_be_bytes());
        }
        Ok(Some(Commit {
            disk,
            file: Arc::clone(&self.file),
            journal: Arc::clone(&self.journal),
            lines,
            entry,
            file_at: self.durable_len,
            journal_at: self.journal_len,
            records,
            logged,
            failed: None,
        }))
    }

    /// Whether a [`Commit`] is out (between `begin_commit` and
    /// `finish_commit`).
    pub fn commit_in_flight(&self) -> bool {
        self.disk.is_none()
    }

    /// Takes back a commit after [`Commit::run`]: on success its sessions'
    /// lines are durable ([`durable`](Store::durable) says so); on failure
    /// both files are cut back and its lines go back in front of those
    /// appended since, to be written again by the next commit.
    ///
    /// # Errors
    /// [`Error::Store`] when the commit's write or sync failed (nothing of
    /// it may be acknowledged); when cutting back failed too the store is
    /// poisoned.
    pub fn finish_commit(&mut self, commit: Commit) -> Result<(), Error> {
        let Commit {
            disk,
            mut lines,
            entry,
            records,
            failed,
            ..
        } = commit;
        self.disk = Some(disk);
        if let Some((target, e)) = failed {
            // Neither file keeps bytes of this commit: the journal first, so
            // that no entry is left pointing at bytes cut from FILE.
            self.cut_back(Target::Journal, &e);
            self.cut_back(Target::File, &e);
            lines.extend_from_slice(&self.unsynced);
            self.unsynced = lines;
            let path = match target {
                Target::File => &self.path,
                Target::Journal => &self.journal_path,
            };
            return Err(store_err(path, format!("writing or syncing a commit: {e}")));
        }
        self.journal_len += entry.len() as u64;
        self.durable_len += lines.len() as u64;
        for (id, r) in records {
            if let Some(s) = self.sessions.get_mut(&id) {
                s.durable = r.durable;
                if s.appended == r.durable.processed {
                    self.dirty.remove(&id);
                }
            }
        }
        self.syncs += 1;
        Ok(())
    }

    /// After a failed write or sync of `target`: cut it back to its durable
    /// length, or poison the store when that fails too.
    fn cut_back(&mut self, target: Target, error: &io::Error) {
        let (file, len, path) = match target {
            Target::File => (&self.file, self.durable_len, &self.path),
            Target::Journal => (&self.journal, self.journal_len, &self.journal_path),
        };
        warn!(file = %path.display(), error = %error, "write or sync failed; nothing acknowledged, cutting back to the durable length");
        let Some(disk) = self.disk.as_mut() else {
            return;
        };
        if let Err(e) = disk.set_len(target, file, len) {
            warn!(file = %path.display(), error = %e, "cannot cut back: store poisoned until restart");
            self.poisoned = Some(format!(
                "{}: {error}, then cutting it back to {len} bytes: {e}",
                path.display()
            ));
        }
    }

    /// Messages of `session` appended (durable or not).
    pub fn appended(&self, session: u64) -> u64 {
        self.sessions.get(&session).map_or(0, |s| s.appended)
    }

    /// What is durable for `session`.
    pub fn durable(&self, session: u64) -> Durable {
        self.sessions
            .get(&session)
            .map(|s| s.durable)
            .unwrap_or_default()
    }

    /// Sessions held (with lines, or connected).
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Batches made durable since open (each one commit: FILE and journal
    /// synced at the same time).
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// Whether a failure that could not be undone stops every write.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// The out file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Whether FILE's bytes `from..to` are all there and have checksum `sum`.
fn covered_bytes_verify(file: &File, from: u64, to: u64, sum: u64) -> bool {
    let mut s = Sum::default();
    let mut buf = vec![0u8; 1 << 16];
    let mut at = from;
    while at < to {
        let want = usize::try_from(to - at).map_or(buf.len(), |n| n.min(buf.len()));
        match file.read_at(&mut buf[..want], at) {
            Ok(0) => return false,
            Ok(n) => {
                s.update(&buf[..n]);
                at += n as u64;
            }
            Err(e) if interrupted(&e) => {}
            Err(_) => return false,
        }
    }
    s.finish() == sum
}

fn expiry_scan_interval(options: &StoreOptions) -> u64 {
    (options.session_expiry.as_secs() / 16).clamp(1, 60)
}

/// Copies FILE's bytes `from..to` to `FILE.unverified-<unix time>`, synced.
fn move_aside(
    path: &Path,
    file: &File,
    from: u64,
    to: u64,
    now: SystemTime,
) -> Result<PathBuf, Error> {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".unverified-{}", unix_secs(now)));
    let aside = PathBuf::from(name);
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&aside)
        .map_err(|e| store_err(&aside, format!("creating: {e}")))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut at = from;
    while at < to {
        let want = usize::try_from(to - at).map_or(buf.len(), |n| n.min(buf.len()));
        let n = match file.read_at(&mut buf[..want], at) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if interrupted(&e) => continue,
            Err(e) => return Err(store_err(path, format!("reading: {e}"))),
        };
        out.write_all(&buf[..n])
            .map_err(|e| store_err(&aside, format!("writing: {e}")))?;
        at += n as u64;
    }
    out.sync_all()
        .map_err(|e| store_err(&aside, format!("syncing: {e}")))?;
    Ok(aside)
}

/// Writes the base for `sessions` beside the journal, syncs it and renames
/// it over the journal. Returns its length.
fn write_base(
    journal_path: &Path,
    file_len: u64,
    sessions: &HashMap<u64, Record>,
) -> Result<u64, Error> {
    let mut all: Vec<(u64, Record)> = sessions.iter().map(|(&id, r)| (id, *r)).collect();
    all.sort_unstable_by_key(|&(id, _)| id);
    let parts: Vec<&[(u64, Record)]> = if all.is_empty() {
        vec![&[]]
    } else {
        all.chunks(BASE_PART_SESSIONS).collect()
    };
    let tmp = journal_path.with_extension("journal.tmp");
    let mut t = File::create(&tmp).map_err(|e| store_err(&tmp, format!("creating: {e}")))?;
    let mut len = 0u64;
    let mut entry = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        entry.clear();
        let after = u32::try_from(parts.len() - 1 - i).unwrap_or(u32::MAX);
        encode_entry(KIND_BASE, after, file_len, part, &mut entry);
        t.write_all(&entry)
            .map_err(|e| store_err(&tmp, format!("writing: {e}")))?;
        len += entry.len() as u64;
    }
    t.sync_all()
        .map_err(|e| store_err(&tmp, format!("syncing: {e}")))?;
    std::fs::rename(&tmp, journal_path)
        .map_err(|e| store_err(journal_path, format!("replacing: {e}")))?;
    if let Some(dir) = journal_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(len)
}

/// `FILE.journal` beside FILE.
pub fn journal_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".journal");
    PathBuf::from(p)
}

/// One session's journaled state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    durable: Durable,
    token: Token,
    last_active: u64,
}

struct Entry {
    kind: u8,
    parts_after: u32,
    file_len: u64,
    /// A commit's checksum of the FILE bytes it covers.
    covered: Option<u64>,
    sessions: Vec<(u64, Record)>,
    /// A logged commit's lines.
    lines: Option<Vec<u8>>,
}

fn encode_entry(
    kind: u8,
    parts_after: u32,
    file_len: u64,
    sessions: &[(u64, Record)],
    out: &mut Vec<u8>,
) {
    encode_entry_covering(kind, parts_after, file_len, None, sessions, out);
}

/// An entry; `covered` (the checksum of the FILE bytes a [`KIND_COMMIT`]
/// covers) is written after the body's head when given.
fn encode_entry_covering(
    kind: u8,
    parts_after: u32,
    file_len: u64,
    covered: Option<u64>,
    sessions: &[(u64, Record)],
    out: &mut Vec<u8>,
) {
    let mut body = Vec::with_capacity(BODY_HEAD + COVERED_LEN + sessions.len() * SESSION_RECORD);
    body.push(kind);
    body.extend_from_slice(&parts_after.to_be_bytes());
    body.extend_from_slice(&file_len.to_be_bytes());
    body.extend_from_slice(&(sessions.len() as u32).to_be_bytes());
    if let Some(sum) = covered {
        body.extend_from_slice(&sum.to_be_bytes());
    }
    for (id, r) in sessions {
        let mut rec = [0u8; SESSION_RECORD];
        rec[0..8].copy_from_slice(&id.to_be_bytes());
        rec[8..16].copy_from_slice(&r.durable.processed.to_be_bytes());
        rec[16..24].copy_from_slice(&r.durable.count.to_be_bytes());
        rec[24..32].copy_from_slice(&r.durable.digest.to_be_bytes());
        rec[32..48].copy_from_slice(&r.token.0);
        rec[48..56].copy_from_slice(&r.last_active.to_be_bytes());
        body.extend_from_slice(&rec);
    }
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&checksum(&body).to_be_bytes());
    out.extend_from_slice(&body);
}

/// Where and why the journal does not verify.
#[derive(Debug, Clone)]
struct Damage {
    at: usize,
    reason: String,
}

enum Problem {
    /// A damaged entry at the end, nothing valid after it.
    Torn {
        at: usize,
    },
    /// The last entry is whole but the FILE bytes it covers do not verify:
    /// the crash came before FILE's sync finished (never acknowledged).
    Uncovered {
        at: usize,
        from: u64,
        to: u64,
    },
    Corrupt(Damage),
}

/// The state the journal's valid prefix describes.
#[derive(Default)]
struct State {
    file_len: u64,
    sessions: HashMap<u64, Record>,
}

struct Parsed {
    /// The state through the last valid entry (the base complete or not).
    state: State,
    problem: Option<Problem>,
    /// The base did not verify: `state` is partial.
    base_damaged: bool,
}

/// Replays the journal; see the module docs for what counts as torn.
/// `verify(from, to, sum)` says whether FILE's bytes `from..to` have the
/// checksum `sum` (for commit entries).
/// `verify(from, to, sum, lines)`: whether FILE's bytes `from..to` have
/// checksum `sum`, after writing them from a logged commit's `lines` where
/// they did not.
type Verify<'a> = dyn FnMut(u64, u64, u64, Option<&[u8]>) -> bool + 'a;

fn parse_journal(bytes: &[u8], verify: &mut Verify<'_>) -> Parsed {
    let mut state = State::default();
    let mut at = 0;
    // Parts of the base still expected (None before the first).
    let mut base_left: Option<u32> = None;
    let corrupt = |state, at, reason: String| Parsed {
        state,
        problem: Some(Problem::Corrupt(Damage { at, reason })),
        base_damaged: true,
    };
    while at < bytes.len() {
        let in_base = base_left != Some(0);
        match parse_entry(&bytes[at..]) {
            Ok((entry, len)) => {
                let expected = match base_left {
                    None => None,
                    Some(0) => Some(KIND_APPEND),
                    Some(_) => Some(KIND_BASE),
                };
                let order_ok = match (base_left, entry.kind) {
                    (None, KIND_BASE) => true,
                    (Some(n), KIND_BASE) => n > 0 && entry.parts_after == n - 1,
                    (Some(0), KIND_APPEND | KIND_COMMIT | KIND_LOGGED) => true,
                    _ => false,
                };
                if !order_ok {
                    let reason = format!(
                        "entry of kind {} (parts after {}) where {} was expected",
                        entry.kind,
                        entry.parts_after,
                        match expected {
                            None | Some(KIND_BASE) => "a part of the base",
                            _ => "an append",
                        }
                    );
                    return Parsed {
                        state,
                        problem: Some(Problem::Corrupt(Damage { at, reason })),
                        base_damaged: in_base,
                    };
                }
                if entry.kind == KIND_BASE {
                    base_left = Some(entry.parts_after);
                    if state.file_len != 0 && entry.file_len != state.file_len {
                        return corrupt(
                            state,
                            at,
                            "parts of the base disagree on the FILE length".into(),
                        );
                    }
                } else if entry.file_len < state.file_len {
                    let reason = format!(
                        "an entry says FILE is {} bytes after one said {}",
                        entry.file_len, state.file_len
                    );
                    return Parsed {
                        state,
                        problem: Some(Problem::Corrupt(Damage { at, reason })),
                        base_damaged: false,
                    };
                }
                if let Some(sum) = entry.covered {
                    if !verify(state.file_len, entry.file_len, sum, entry.lines.as_deref()) {
                        let (from, to) = (state.file_len, entry.file_len);
                        let problem = match next_valid_entry(bytes, at + len) {
                            None => Problem::Uncovered { at, from, to },
                            Some(next) => Problem::Corrupt(Damage {
                                at,
                                reason: format!(
                                    "the FILE bytes from {from} up to {to} this entry covers do not verify \
                                     (FILE damaged or cut), and a valid entry follows at byte {next}"
                                ),
                            }),
                        };
                        return Parsed {
                            state,
                            problem: Some(problem),
                            base_damaged: false,
                        };
                    }
                }
                state.file_len = entry.file_len;
                state.sessions.extend(entry.sessions);
                at += len;
            }
            Err(reason) => {
                if in_base {
                    let reason = if at == 0 && bytes.starts_with(OLD_MAGIC) {
                        "is in the older AKJ1 format (before session tokens)".to_owned()
                    } else {
                        format!(
                            "base damaged ({reason}); the base is written whole and renamed \
                             into place, so it cannot be torn"
                        )
                    };
                    return corrupt(state, at, reason);
                }
                if let Some(next) = next_valid_entry(bytes, at + 1) {
                    return Parsed {
                        state,
                        problem: Some(Problem::Corrupt(Damage {
                            at,
                            reason: format!(
                                "damaged entry ({reason}) followed by a valid entry at byte {next}"
                            ),
                        })),
                        base_damaged: false,
                    };
                }
                return Parsed {
                    state,
                    problem: Some(Problem::Torn { at }),
                    base_damaged: false,
                };
            }
        }
    }
    if !bytes.is_empty() && base_left != Some(0) {
        return corrupt(
            state,
            bytes.len(),
            "ends inside its base (parts are missing)".into(),
        );
    }
    Parsed {
        state,
        problem: None,
        base_damaged: false,
    }
}

/// The first offset at or after `from` where a whole valid entry starts.
fn next_valid_entry(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while at + MAGIC.len() <= bytes.len() {
        let i = bytes[at..].windows(MAGIC.len()).position(|w| w == MAGIC)?;
        at += i;
        if parse_entry(&bytes[at..]).is_ok() {
            return Some(at);
        }
        at += 1;
    }
    None
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

/// One entry and its length, or why the bytes are not one.
fn parse_entry(bytes: &[u8]) -> Result<(Entry, usize), String> {
    if bytes.len() < ENTRY_HEAD {
        return Err(format!(
            "{} bytes left, an entry header is {ENTRY_HEAD}",
            bytes.len()
        ));
    }
    if &bytes[..4] != MAGIC {
        return Err(format!("no \"AKJ2\" magic (found {:02x?})", &bytes[..4]));
    }
    let body_len = be_u32(bytes, 4) as usize;
    let sum = be_u64(bytes, 8);
    let Some(body) = bytes.get(ENTRY_HEAD..ENTRY_HEAD.saturating_add(body_len)) else {
        return Err(format!(
            "a body of {body_len} bytes, {} left",
            bytes.len() - ENTRY_HEAD
        ));
    };
    if checksum(body) != sum {
        return Err("checksum mismatch".into());
    }
    if body.len() < BODY_HEAD {
        return Err(format!(
            "a body of {} bytes, at least {BODY_HEAD}",
            body.len()
        ));
    }
    let kind = body[0];
    if !matches!(kind, KIND_BASE | KIND_APPEND | KIND_COMMIT | KIND_LOGGED) {
        return Err(format!("unknown entry kind {kind}"));
    }
    let parts_after = be_u32(body, 1);
    let file_len = be_u64(body, 5);
    let n = be_u32(body, 13) as usize;
    let mut lines = None;
    let (covered, records) = if kind == KIND_LOGGED {
        let records_end = n
            .checked_mul(SESSION_RECORD)
            .and_then(|r| r.checked_add(BODY_HEAD + COVERED_LEN))
            .filter(|&end| end <= body.len())
            .ok_or_else(|| {
                format!(
                    "{n} sessions do not fit a logged commit of {} bytes",
                    body.len()
                )
            })?;
        lines = Some(body[records_end..].to_vec());
        (
            Some(be_u64(body, BODY_HEAD)),
            &body[BODY_HEAD + COVERED_LEN..records_end],
        )
    } else if kind == KIND_COMMIT {
        if body.len() < BODY_HEAD + COVERED_LEN {
            return Err(format!(
                "a commit body of {} bytes, at least {}",
                body.len(),
                BODY_HEAD + COVERED_LEN
            ));
        }
        (
            Some(be_u64(body, BODY_HEAD)),
            &body[BODY_HEAD + COVERED_LEN..],
        )
    } else {
        (None, &body[BODY_HEAD..])
    };
    if records.len() / SESSION_RECORD != n || records.len() % SESSION_RECORD != 0 {
        return Err(format!(
            "{n} sessions in {} bytes of records ({SESSION_RECORD} each)",
            records.len()
        ));
    }
    // `n` is bounded by the bytes present: no allocation beyond them.
    let mut sessions = Vec::with_capacity(n);
    for rec in records.chunks_exact(SESSION_RECORD) {
        let mut token = [0u8; 16];
        token.copy_from_slice(&rec[32..48]);
        sessions.push((
            be_u64(rec, 0),
            Record {
                durable: Durable {
                    processed: be_u64(rec, 8),
                    count: be_u64(rec, 16),
                    digest: be_u64(rec, 24),
                },
                token: Token(token),
                last_active: be_u64(rec, 48),
            },
        ));
    }
    Ok((
        Entry {
            kind,
            parts_after,
            file_len,
            covered,
            sessions,
            lines,
        },
        ENTRY_HEAD + body_len,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Token = Token([7; 16]);

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ack-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("out.txt")
    }

    fn now() -> SystemTime {
        SystemTime::now()
    }

    fn opts() -> StoreOptions {
        StoreOptions::default()
    }

    fn open(path: &Path) -> Result<Store, Error> {
        Store::open(path)
    }

    /// Opens `path` on the real disk with `o`.
    fn open_as(path: &Path, o: StoreOptions) -> Result<Store, Error> {
        Store::open_with(path, o, Box::new(RealDisk), now())
    }

    fn repair(path: &Path) -> Result<Store, Error> {
        open_as(
            path,
            StoreOptions {
                repair: true,
                ..opts()
            },
        )
    }

    #[test]
    fn durable_state_survives_reopen_and_unsynced_lines_are_cut() {
        let path = tmp("reopen");
        let mut store = open(&path).unwrap();
        let c = store.claim(7, T, now()).unwrap();
        store.append(7, c.generation, 0, b"msg 0").unwrap();
        store.append(7, c.generation, 1, b"msg 1").unwrap();
        store.sync().unwrap();
        store.append(7, c.generation, 2, b"msg 2").unwrap();
        // Written to FILE but never journaled: as if killed between steps.
        store
            .file
            .write_at(&store.unsynced, store.durable_len)
            .unwrap();
        drop(store);
        let mut store = open(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"msg 0\nmsg 1\n");
        let c = store.claim(7, T, now()).unwrap();
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
        let mut store = open(&path).unwrap();
        let c = store.claim(1, T, now()).unwrap();
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
            let mut s = open(&path).unwrap();
            assert_eq!(
                s.claim(1, T, now()).unwrap().durable.processed,
                1,
                "cut at {cut}"
            );
            assert_eq!(std::fs::read(&path).unwrap(), b"a\n", "cut at {cut}");
        }
    }

    #[test]
    fn stale_claims_newlines_and_gaps_are_refused_and_write_nothing() {
        let path = tmp("refuse");
        let mut store = open(&path).unwrap();
        let old = store.claim(3, T, now()).unwrap();
        let new = store.claim(3, T, now()).unwrap();
        assert!(store.append(3, old.generation, 0, b"x").is_err());
        assert!(store.append(3, new.generation, 0, b"a\nb").is_err());
        assert!(store.append(3, new.generation, 5, b"x").is_err());
        assert!(store.append(4, 1, 0, b"unclaimed").is_err());
        store.sync().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }

    #[test]
    fn a_damaged_last_append_is_taken_for_torn_and_sessions_recover_independently() {
        let path = tmp("flip");
        let mut store = open(&path).unwrap();
        let a = store.claim(1, T, now()).unwrap();
        let b = store.claim(2, T, now()).unwrap();
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
            let mut s = open(&path).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), b"a0\nb0\n", "flip at {at}");
            assert_eq!(s.claim(1, T, now()).unwrap().durable.processed, 1);
            assert_eq!(s.claim(2, T, now()).unwrap().durable.processed, 1);
        }
        // Intact: both sessions at 2, and the state survives a second
        // reopen (the journal was compacted by the first).
        std::fs::write(journal_path(&path), &full).unwrap();
        std::fs::write(&path, &file).unwrap();
        drop(open(&path).unwrap());
        let mut s = open(&path).unwrap();
        let mut d = Digest::default();
        d.update(b"b0");
        d.update(b"b1");
        assert_eq!(
            s.claim(2, T, now()).unwrap().durable,
            Durable {
                processed: 2,
                count: 2,
                digest: d.value()
            }
        );
        assert_eq!(s.claim(1, T, now()).unwrap().durable.processed, 2);
        assert_eq!(s.durable(3), Durable::default());
    }

    #[test]
    fn a_file_shorter_than_its_base_is_an_error() {
        let path = tmp("short");
        let mut store = open(&path).unwrap();
        let c = store.claim(1, T, now()).unwrap();
        store.append(1, c.generation, 0, b"abc").unwrap();
        store.sync().unwrap();
        drop(store);
        drop(open(&path).unwrap()); // the base now says 4 bytes
        std::fs::write(&path, b"ab").unwrap();
        let e = open(&path).unwrap_err().to_string();
        assert!(e.contains("holds 2 bytes, its journal says 4"), "{e}");
    }

    /// FILE and the journal are synced at the same time, so a crash can
    /// leave the last commit whole in the journal and its lines cut or
    /// garbled in FILE: that commit was never acknowledged and recovery
    /// goes back to the entry before it, whatever byte FILE was cut at.
    #[test]
    fn a_last_commit_whose_file_bytes_are_cut_or_damaged_is_dropped() {
        let path = tmp("uncovered");
        let (file, _) = three_batches(&path);
        let journal = std::fs::read(journal_path(&path)).unwrap();
        let before = b"a0\nb0\na1\nb1\n".len();
        assert_eq!(&file[..before], b"a0\nb0\na1\nb1\n");
        let check = |what: String| {
            let mut s = open(&path).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), &file[..before], "{what}");
            assert_eq!(s.claim(1, T, now()).unwrap().durable.processed, 2, "{what}");
            assert_eq!(s.claim(2, T, now()).unwrap().durable.processed, 2, "{what}");
        };
        for cut in before..file.len() {
            std::fs::write(journal_path(&path), &journal).unwrap();
            std::fs::write(&path, &file[..cut]).unwrap();
            check(format!("FILE cut at {cut}"));
        }
        for at in before..file.len() {
            let mut bad = file.clone();
            bad[at] ^= 0x02;
            std::fs::write(journal_path(&path), &journal).unwrap();
            std::fs::write(&path, &bad).unwrap();
            check(format!("FILE byte {at} flipped"));
        }
        // Intact, the last commit is kept.
        std::fs::write(journal_path(&path), &journal).unwrap();
        std::fs::write(&path, &file).unwrap();
        assert_eq!(open(&path).unwrap().durable(1).processed, 3);
    }

    /// Covered bytes that do not verify under a commit that is followed by
    /// a valid one are acknowledged lines lost: refuse, and `--repair`
    /// keeps the commits before it.
    #[test]
    fn file_bytes_damaged_under_an_earlier_commit_refuse_to_start() {
        let path = tmp("uncovered-middle");
        let (file, offsets) = three_batches(&path);
        let mut bad = file.clone();
        bad[7] ^= 0x02; // in "a1\nb1\n", the second commit's bytes
        std::fs::write(&path, &bad).unwrap();
        let e = open(&path).unwrap_err().to_string();
        assert!(e.contains(&format!("at byte {}", offsets[2])), "{e}");
        assert!(e.contains("do not verify"), "{e}");
        assert!(e.contains("--repair"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), bad, "nothing changed");
        let mut s = repair(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"a0\nb0\n");
        assert_eq!(s.claim(1, T, now()).unwrap().durable.processed, 1);
    }

    /// One commit takes every session's pending lines; lines appended while
    /// it is out wait for the next, and nothing of it is durable before it
    /// is handed back.
    #[test]
    fn one_commit_covers_every_session_and_appends_go_on_while_it_runs() {
        let path = tmp("group");
        let mut store = open(&path).unwrap();
        let claims: Vec<_> = (0..5)
            .map(|id| store.claim(id, T, now()).unwrap())
            .collect();
        for (id, c) in claims.iter().enumerate() {
            store
                .append(id as u64, c.generation, 0, format!("s{id} 0").as_bytes())
                .unwrap();
        }
        let mut commit = store.begin_commit().unwrap().expect("lines pending");
        assert!(store.commit_in_flight());
        assert!(store.begin_commit().unwrap().is_none(), "one at a time");
        // Appends go on while the commit is out.
        store.append(0, claims[0].generation, 1, b"s0 1").unwrap();
        commit.run();
        assert_eq!(
            store.durable(3).processed,
            0,
            "not durable before it is back"
        );
        store.finish_commit(commit).unwrap();
        for id in 0..5 {
            assert_eq!(store.durable(id).processed, 1, "session {id}");
        }
        assert_eq!(store.appended(0), 2);
        assert_eq!(store.syncs(), 1, "five sessions, one commit");
        store.sync().unwrap();
        assert_eq!(store.durable(0).processed, 2);
        assert_eq!(store.syncs(), 2);
        drop(store);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"s0 0\ns1 0\ns2 0\ns3 0\ns4 0\ns0 1\n"
        );
        assert_eq!(open(&path).unwrap().durable(0).processed, 2);
    }

    fn open_wal(path: &Path) -> Result<Store, Error> {
        open_as(
            path,
            StoreOptions {
                wal: true,
                ..opts()
            },
        )
    }

    /// With the write-ahead log FILE is not synced by a commit: after a
    /// crash it may hold any prefix (or garbage) of the commits' lines, and
    /// recovery writes them again from the journal; a journal torn at any
    /// byte of its last commit falls back to the commit before.
    #[test]
    fn wal_commits_restore_file_cut_or_damaged_anywhere_and_torn_ones_are_dropped() {
        let path = tmp("wal");
        let mut store = open_wal(&path).unwrap();
        let a = store.claim(1, T, now()).unwrap();
        let b = store.claim(2, T, now()).unwrap();
        let mut offsets = Vec::new();
        for seq in 0..3 {
            offsets.push(std::fs::metadata(journal_path(&path)).unwrap().len() as usize);
            store
                .append(1, a.generation, seq, format!("a{seq}").as_bytes())
                .unwrap();
            store
                .append(2, b.generation, seq, format!("b{seq}").as_bytes())
                .unwrap();
            store.sync().unwrap();
        }
        drop(store);
        let file = std::fs::read(&path).unwrap();
        let journal = std::fs::read(journal_path(&path)).unwrap();
        assert_eq!(file, b"a0\nb0\na1\nb1\na2\nb2\n");
        for cut in 0..file.len() {
            for flip in [false, true] {
                let mut bad = file[..cut].to_vec();
                if flip && cut > 0 {
                    bad[cut / 2] ^= 0x04;
                }
                std::fs::write(&path, &bad).unwrap();
                std::fs::write(journal_path(&path), &journal).unwrap();
                let mut s = open_wal(&path).unwrap();
                assert_eq!(std::fs::read(&path).unwrap(), file, "cut {cut} flip {flip}");
                assert_eq!(s.claim(1, T, now()).unwrap().durable.processed, 3);
            }
        }
        for cut in offsets[2]..journal.len() {
            std::fs::write(&path, &file[..cut.min(file.len()) % 13]).unwrap();
            std::fs::write(journal_path(&path), &journal[..cut]).unwrap();
            let mut s = open_wal(&path).unwrap();
            assert_eq!(
                std::fs::read(&path).unwrap(),
                b"a0\nb0\na1\nb1\n",
                "journal cut at {cut}"
            );
            assert_eq!(s.claim(2, T, now()).unwrap().durable.processed, 2);
        }
        // The restored state is a base now: FILE was synced before it.
        std::fs::write(&path, &file).unwrap();
        std::fs::write(journal_path(&path), &journal).unwrap();
        drop(open_wal(&path).unwrap());
        assert_eq!(open(&path).unwrap().durable(2).processed, 3);
    }

    #[test]
    fn the_streaming_sum_is_the_checksum() {
        let data: Vec<u8> = (0..100u8).collect();
        for split in 0..data.len() {
            for second in split..data.len() {
                let mut s = Sum::default();
                s.update(&data[..split]);
                s.update(&data[split..second]);
                s.update(&data[second..]);
                assert_eq!(s.finish(), checksum(&data), "{split} {second}");
            }
        }
    }

    /// Two sessions with three synced batches; returns FILE's bytes and the
    /// journal's entry offsets (base, append 1, 2, 3).
    fn three_batches(path: &Path) -> (Vec<u8>, Vec<usize>) {
        let mut store = open(path).unwrap();
        let a = store.claim(1, T, now()).unwrap();
        let b = store.claim(2, T, now()).unwrap();
        let mut offsets = vec![0];
        for seq in 0..3 {
            offsets.push(std::fs::metadata(journal_path(path)).unwrap().len() as usize);
            store
                .append(1, a.generation, seq, format!("a{seq}").as_bytes())
                .unwrap();
            store
                .append(2, b.generation, seq, format!("b{seq}").as_bytes())
                .unwrap();
            store.sync().unwrap();
        }
        (std::fs::read(path).unwrap(), offsets)
    }

    #[test]
    fn a_damaged_entry_followed_by_valid_ones_refuses_to_start_and_repair_keeps_the_prefix() {
        let path = tmp("middle");
        let (file, offsets) = three_batches(&path);
        let journal = std::fs::read(journal_path(&path)).unwrap();
        let mut bad = journal.clone();
        bad[offsets[2] + ENTRY_HEAD + 3] ^= 1;
        std::fs::write(journal_path(&path), &bad).unwrap();
        let e = open(&path).unwrap_err().to_string();
        assert!(e.contains(&format!("at byte {}", offsets[2])), "{e}");
        assert!(e.contains("followed by a valid entry"), "{e}");
        assert!(e.contains("--repair"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), file, "nothing changed");
        assert_eq!(std::fs::read(journal_path(&path)).unwrap(), bad);

        let mut s = repair(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"a0\nb0\n");
        assert_eq!(s.claim(1, T, now()).unwrap().durable.processed, 1);
        let aside: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".unverified-"))
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(std::fs::read(aside[0].path()).unwrap(), b"a1\nb1\na2\nb2\n");
        drop(s);
        drop(open(&path).unwrap());
    }

    #[test]
    fn a_flipped_byte_anywhere_in_the_base_refuses_to_start() {
        let path = tmp("base");
        let mut store = open(&path).unwrap();
        let c = store.claim(1, T, now()).unwrap();
        for seq in 0..20 {
            store.append(1, c.generation, seq, b"line").unwrap();
        }
        store.sync().unwrap();
        drop(store);
        drop(open(&path).unwrap()); // compacted: the journal is one base part
        let base = std::fs::read(journal_path(&path)).unwrap();
        let file = std::fs::read(&path).unwrap();
        for at in 0..base.len() {
            let mut bad = base.clone();
            bad[at] ^= 0x01;
            std::fs::write(journal_path(&path), &bad).unwrap();
            let e = open(&path).unwrap_err().to_string();
            assert!(
                e.contains("at byte 0") && e.contains("--repair"),
                "flip at {at}: {e}"
            );
            assert_eq!(std::fs::read(&path).unwrap(), file, "flip at {at}");
        }
        std::fs::write(journal_path(&path), &base).unwrap();
        assert_eq!(open(&path).unwrap().durable(1).processed, 20);
    }

    #[test]
    fn a_missing_or_empty_journal_beside_lines_refuses_and_repair_moves_the_lines_aside() {
        let path = tmp("missing");
        three_batches(&path);
        std::fs::remove_file(journal_path(&path)).unwrap();
        let e = open(&path).unwrap_err().to_string();
        assert!(
            e.contains("is missing while") && e.contains("--repair"),
            "{e}"
        );
        std::fs::write(journal_path(&path), b"").unwrap();
        let e = open(&path).unwrap_err().to_string();
        assert!(e.contains("is empty while"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap().len(), 18);
        let s = repair(&path).unwrap();
        assert_eq!(s.sessions(), 0);
        assert_eq!(std::fs::read(&path).unwrap(), b"");
        // A fresh store (no FILE, no journal) is no problem.
        let fresh = tmp("fresh");
        assert_eq!(open(&fresh).unwrap().sessions(), 0);
    }

    #[test]
    fn tokens_bind_sessions_and_survive_reopen() {
        let path = tmp("tokens");
        let other = Token([9; 16]);
        let mut store = open(&path).unwrap();
        let c = store.claim(5, T, now()).unwrap();
        store.append(5, c.generation, 0, b"x").unwrap();
        store.sync().unwrap();
        let e = store.claim(5, other, now()).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Protocol {
                    code: ErrorCode::TokenMismatch,
                    ..
                }
            ),
            "{e}"
        );
        // The owner's claim is still current.
        store.append(5, c.generation, 1, b"y").unwrap();
        store.sync().unwrap();
        drop(store);
        let mut store = open(&path).unwrap();
        assert!(store.claim(5, other, now()).is_err());
        assert_eq!(store.claim(5, T, now()).unwrap().durable.processed, 2);
    }

    #[test]
    fn empty_sessions_are_forgotten_on_release_and_idle_ones_expire() {
        let path = tmp("expire");
        let o = StoreOptions {
            session_expiry: Duration::from_secs(3600),
            max_sessions: 3,
            repair: false,
            wal: false,
        };
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut store = Store::open_with(&path, o.clone(), Box::new(RealDisk), t0).unwrap();
        for id in 0..40_000 {
            let c = store.claim(id, T, t0).unwrap();
            store.release(id, c.generation, t0);
        }
        assert_eq!(store.sessions(), 0, "empty sessions cost nothing once gone");
        let c = store.claim(1, T, t0).unwrap();
        store.append(1, c.generation, 0, b"kept").unwrap();
        store.sync().unwrap();
        store.release(1, c.generation, t0);
        let held: Vec<_> = (10..12).map(|id| store.claim(id, T, t0).unwrap()).collect();
        let e = store.claim(99, T, t0).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Protocol {
                    code: ErrorCode::TooManySessions,
                    ..
                }
            ),
            "{e}"
        );
        // An hour later the idle session 1 is gone; connected ones stay.
        let later = t0 + Duration::from_secs(3601);
        store.claim(99, T, later).unwrap();
        assert_eq!(store.durable(1).processed, 0);
        assert_eq!(store.sessions(), 3);
        drop((store, held));
        // Expiry holds across a restart too.
        let store = Store::open_with(&path, o.clone(), Box::new(RealDisk), t0).unwrap();
        assert_eq!(store.durable(1).processed, 1);
        drop(store);
        let store = Store::open_with(&path, o, Box::new(RealDisk), later).unwrap();
        assert_eq!(store.sessions(), 0);
    }

    #[test]
    fn a_base_of_many_parts_round_trips() {
        let path = tmp("parts");
        let mut store = open(&path).unwrap();
        let n = BASE_PART_SESSIONS as u64 * 2 + 5;
        for id in 0..n {
            let c = store.claim(id, T, now()).unwrap();
            store.append(id, c.generation, 0, b"l").unwrap();
        }
        store.sync().unwrap();
        drop(store);
        drop(open(&path).unwrap());
        let bytes = std::fs::read(journal_path(&path)).unwrap();
        let parsed = parse_journal(&bytes, &mut |_, _, _, _| true);
        assert!(parsed.problem.is_none());
        assert_eq!(parsed.state.sessions.len() as u64, n);
        let s = open(&path).unwrap();
        assert_eq!(s.sessions() as u64, n);
        assert_eq!(s.durable(n - 1).processed, 1);
    }

    /// The old parser refused an entry of more than 2^20 sessions, and the
    /// compacted journal was one entry: a million sessions made the next
    /// start take the whole journal for torn. Entries now take any count
    /// their length allows (and the base is split in parts: above).
    #[test]
    fn more_than_2_pow_20_sessions_in_one_entry_parse() {
        let n = (1u64 << 20) + 10;
        let record = |id: u64| Record {
            durable: Durable {
                processed: id % 7 + 1,
                count: id % 7 + 1,
                digest: id,
            },
            token: T,
            last_active: 1,
        };
        let records: Vec<(u64, Record)> = (0..n).map(|id| (id, record(id))).collect();
        let mut bytes = Vec::new();
        encode_entry(KIND_APPEND, 0, 12345, &records, &mut bytes);
        let (entry, len) = parse_entry(&bytes).unwrap();
        assert_eq!(len, bytes.len());
        assert_eq!(entry.sessions.len() as u64, n);
        assert_eq!(entry.file_len, 12345);
        assert_eq!(entry.sessions[n as usize - 1], (n - 1, record(n - 1)));
    }
}
