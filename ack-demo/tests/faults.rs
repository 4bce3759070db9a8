//! Faults injected into the store's file operations through its [`Disk`]
//! seam: a disk that fills (writes cut short, then `ENOSPC`), an
//! `fdatasync` that fails with `EIO` and loses what it should have written
//! (the kernel may drop the dirty pages: "fsyncgate"), a truncate that
//! fails. After every fault, and after a "SIGKILL" (the store dropped
//! without any cleanup, then reopened), every acknowledged line is in FILE
//! exactly once and in order, and FILE holds nothing the journal does not
//! vouch for. (With a real full disk under the real server and client:
//! ack-demo-cli's `tests/full_disk.rs`.)

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use ack_demo::store::{Disk, Store, StoreOptions, Target};
use ack_demo::wire::Token;
use proptest::prelude::*;

mod common;

const SESSIONS: u64 = 3;
const TOKEN: Token = Token([0x42; 16]);

/// What the next operations do wrong.
#[derive(Debug, Default)]
struct Plan {
    /// FILE may not grow past this length (a full disk).
    file_limit: Option<u64>,
    /// The journal may not grow past this length.
    journal_limit: Option<u64>,
    /// The next sync of this file fails with `EIO`, and the bytes written
    /// since its last good sync are lost (zeroed).
    fail_sync: Option<Target>,
    /// The next truncate fails with `EIO`.
    fail_set_len: bool,
    /// Per file, the lowest offset written since its last good sync.
    dirty_from: [Option<u64>; 2],
    /// FILE's bytes in this range failed their writeback in the
    /// background: the pages are clean, reads still return them, but the
    /// disk does not hold them (a later sync succeeds without writing
    /// them). Written again, they leave the range. Disk state: kept
    /// across restarts, lost at a power loss.
    unwritten: Option<(u64, u64)>,
    /// The next sync of FILE reports that writeback error (`EIO`) once.
    report_writeback_error: bool,
}

#[derive(Debug, Clone, Default)]
struct FaultyDisk(Arc<Mutex<Plan>>);

impl FaultyDisk {
    fn plan(&self) -> MutexGuard<'_, Plan> {
        self.0.lock().unwrap()
    }
}

fn index(target: Target) -> usize {
    match target {
        Target::File => 0,
        Target::Journal => 1,
    }
}

fn os_error(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

impl Disk for FaultyDisk {
    fn write_at(
        &mut self,
        target: Target,
        file: &File,
        buf: &[u8],
        offset: u64,
    ) -> io::Result<usize> {
        let mut p = self.plan();
        let limit = match target {
            Target::File => p.file_limit,
            Target::Journal => p.journal_limit,
        };
        let n = match limit {
            Some(l) if offset >= l => return Err(os_error(libc::ENOSPC)),
            Some(l) => buf.len().min((l - offset) as usize),
            None => buf.len(),
        };
        let n = file.write_at(&buf[..n], offset)?;
        if let (Target::File, Some((from, to))) = (target, p.unwritten) {
            if offset <= from && from < offset + n as u64 {
                let from = offset + n as u64;
                p.unwritten = (from < to).then_some((from, to));
            }
        }
        let d = &mut p.dirty_from[index(target)];
        *d = Some(d.map_or(offset, |d| d.min(offset)));
        Ok(n)
    }

    fn sync_data(&mut self, target: Target, file: &File) -> io::Result<()> {
        let mut p = self.plan();
        if target == Target::File && p.report_writeback_error {
            p.report_writeback_error = false;
            return Err(os_error(libc::EIO));
        }
        if p.fail_sync == Some(target) {
            p.fail_sync = None;
            if let Some(from) = p.dirty_from[index(target)].take() {
                let len = file.metadata()?.len();
                if len > from {
                    file.write_at(&vec![0; (len - from) as usize], from)?;
                }
            }
            return Err(os_error(libc::EIO));
        }
        file.sync_data()?;
        p.dirty_from[index(target)] = None;
        Ok(())
    }

    fn sync_all(&mut self, target: Target, file: &File) -> io::Result<()> {
        self.sync_data(target, file)
    }

    fn set_len(&mut self, _: Target, file: &File, len: u64) -> io::Result<()> {
        let mut p = self.plan();
        if p.fail_set_len {
            p.fail_set_len = false;
            return Err(os_error(libc::EIO));
        }
        file.set_len(len)
    }
}

fn payload(session: u64, seq: u64) -> String {
    format!("s{session} m{seq} ......")
}

/// A store under test with the model of what it was told and what it
/// acknowledged.
struct Harness {
    path: PathBuf,
    disk: FaultyDisk,
    /// The store runs with the write-ahead log (`--wal`).
    wal: bool,
    store: Option<Store>,
    generations: [u64; SESSIONS as usize],
    /// Lines the store took, per session.
    appended: [u64; SESSIONS as usize],
    /// Lines acknowledged (a sync succeeded after they were appended).
    acked: [u64; SESSIONS as usize],
}

impl Harness {
    fn with(name: &str, wal: bool) -> Harness {
        let path = common::temp_dir(name).join("out.txt");
        let mut h = Harness {
            path,
            disk: FaultyDisk::default(),
            wal,
            store: None,
            generations: [0; SESSIONS as usize],
            appended: [0; SESSIONS as usize],
            acked: [0; SESSIONS as usize],
        };
        h.restart();
        h
    }

    fn store(&mut self) -> &mut Store {
        self.store.as_mut().unwrap()
    }

    /// "SIGKILL" and restart: the store is dropped as is and reopened;
    /// every acknowledged line must be there, and FILE must hold exactly
    /// what the recovered state says.
    fn restart(&mut self) {
        {
            let mut p = self.disk.plan();
            let unwritten = p.unwritten;
            *p = Plan::default();
            p.unwritten = unwritten;
        }
        self.reopen().unwrap();
    }

    /// Reopens with the faults planned so far (a restart clears them);
    /// on success checks what was recovered, as [`Harness::restart`].
    fn reopen(&mut self) -> Result<(), String> {
        drop(self.store.take());
        let store = Store::open_with(
            &self.path,
            StoreOptions {
                wal: self.wal,
                ..StoreOptions::default()
            },
            Box::new(self.disk.clone()),
            SystemTime::now(),
        )
        .map_err(|e| e.to_string())?;
        self.store = Some(store);
        for s in 0..SESSIONS {
            let c = self.store().claim(s, TOKEN, SystemTime::now()).unwrap();
            let i = s as usize;
            assert!(
                c.durable.processed >= self.acked[i],
                "session {s}: {} acknowledged, {} recovered",
                self.acked[i],
                c.durable.processed
            );
            assert!(c.durable.processed <= self.appended[i]);
            self.generations[i] = c.generation;
            // Clients resend what was not durable; what is durable is what
            // they are told (WELCOME), so it counts as acknowledged now.
            self.appended[i] = c.durable.processed;
            self.acked[i] = c.durable.processed;
        }
        self.check_file();
        Ok(())
    }

    /// Power loss, then restart: every byte written since its file's last
    /// good sync is gone (FILE cut there, or zeroed from there when
    /// `zero`: its size reached the disk, its data did not; the journal
    /// cut there). In WAL mode FILE is never synced between opens.
    /// Returns how many of FILE's bytes were lost.
    fn power_loss(&mut self, zero: bool) -> u64 {
        let lost = self.lose_unsynced(zero);
        self.restart();
        lost
    }

    /// The store dropped, then the bytes a power loss takes are gone (see
    /// [`Harness::power_loss`]); no restart. Returns FILE's bytes lost.
    fn lose_unsynced(&mut self, zero: bool) -> u64 {
        drop(self.store.take());
        let [file_from, journal_from] = self.disk.plan().dirty_from;
        let unwritten = self.disk.plan().unwritten.take().map(|(from, _)| from);
        let file_from = match (file_from, unwritten) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let len = self.file_len();
        let lost = file_from.map_or(0, |from| len.saturating_sub(from));
        if lost > 0 {
            let from = len - lost;
            let f = File::options().write(true).open(&self.path).unwrap();
            if zero {
                f.write_all_at(&vec![0; lost as usize], from).unwrap();
            } else {
                f.set_len(from).unwrap();
            }
        }
        if let Some(from) = journal_from {
            if self.journal_len() > from {
                File::options()
                    .write(true)
                    .open(ack_demo::store::journal_path(&self.path))
                    .unwrap()
                    .set_len(from)
                    .unwrap();
            }
        }
        lost
    }

    /// FILE's bytes written since its last good sync fail their writeback
    /// in the background: still read back, not on the disk; the next sync
    /// of FILE reports `EIO` once.
    fn writeback_fails(&mut self) {
        let len = self.file_len();
        let mut p = self.disk.plan();
        if let Some(from) = p.dirty_from[0].take() {
            if from < len {
                let from = p.unwritten.map_or(from, |(f, _)| f.min(from));
                p.unwritten = Some((from, len));
                p.report_writeback_error = true;
            }
        }
    }

    /// A crash (a power loss when `power` is `Some(zero)`), then an open
    /// with `fault`: it either refuses (and the next clean open recovers)
    /// or recovers every acknowledged line.
    fn crash(&mut self, power: Option<bool>, fault: OpenFault) {
        match power {
            Some(zero) => {
                self.lose_unsynced(zero);
            }
            None => drop(self.store.take()),
        }
        {
            let len = self.file_len();
            let mut p = self.disk.plan();
            let (unwritten, report) = (p.unwritten, p.report_writeback_error);
            *p = Plan::default();
            p.unwritten = unwritten;
            p.report_writeback_error = report;
            match fault {
                OpenFault::None => {}
                OpenFault::FileFull(k) => p.file_limit = Some(len + k),
                OpenFault::SyncFails => p.fail_sync = Some(Target::File),
            }
        }
        if self.reopen().is_err() {
            self.restart();
        }
    }

    fn append(&mut self, session: u64, lines: u64) {
        let i = session as usize;
        for _ in 0..lines {
            let seq = self.appended[i];
            let g = self.generations[i];
            match self
                .store()
                .append(session, g, seq, payload(session, seq).as_bytes())
            {
                Ok(()) => self.appended[i] += 1,
                Err(e) => {
                    assert!(self.store().is_poisoned(), "append refused: {e}");
                    return;
                }
            }
        }
    }

    /// Syncs; on success everything appended is acknowledged and FILE holds
    /// exactly it.
    fn sync(&mut self) -> bool {
        let ok = self.store().sync().is_ok();
        if ok {
            self.acked = self.appended;
            self.check_file();
        }
        ok
    }

    /// FILE holds, per session, lines `0..acked` in order, each once, and
    /// nothing else (no partial or foreign line).
    fn check_file(&self) {
        let bytes = std::fs::read(&self.path).unwrap();
        let text = String::from_utf8(bytes).expect("FILE is text");
        assert!(text.is_empty() || text.ends_with('\n'), "partial last line");
        let mut next = [0u64; SESSIONS as usize];
        for line in text.lines() {
            let (s, seq) = parse(line).unwrap_or_else(|| panic!("malformed line {line:?}"));
            assert_eq!(
                seq, next[s as usize],
                "session {s}: line {line:?} out of order or twice"
            );
            next[s as usize] += 1;
        }
        assert_eq!(next, self.acked, "lines in FILE vs acknowledged");
    }

    fn file_len(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    fn journal_len(&self) -> u64 {
        std::fs::metadata(ack_demo::store::journal_path(&self.path)).map_or(0, |m| m.len())
    }
}

fn parse(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix('s')?;
    let (s, rest) = rest.split_once(" m")?;
    let (seq, dots) = rest.split_once(' ')?;
    let (s, seq) = (s.parse().ok()?, seq.parse().ok()?);
    (s < SESSIONS && dots == "......" && line == payload(s, seq)).then_some((s, seq))
}

#[test]
fn disk_full_mid_line_then_freed_writes_each_line_once() {
    disk_full_mid_line_then_freed_writes_each_line_once_in(false);
}

/// The same with the write-ahead log (`--wal`).
#[test]
fn wal_disk_full_mid_line_then_freed_writes_each_line_once() {
    disk_full_mid_line_then_freed_writes_each_line_once_in(true);
}

fn disk_full_mid_line_then_freed_writes_each_line_once_in(wal: bool) {
    let mut h = Harness::with("full-file", wal);
    h.append(0, 40);
    assert!(h.sync());
    let durable = h.file_len();
    h.append(0, 23);
    h.append(1, 5);
    // Room for a few lines and half of one, then ENOSPC.
    h.disk.plan().file_limit = Some(h.file_len() + 70);
    assert!(!h.sync(), "a full disk fails the sync");
    assert!(!h.store().is_poisoned());
    assert_eq!(h.file_len(), durable, "cut back to the durable length");
    h.disk.plan().file_limit = None; // space freed
    assert!(h.sync(), "the same lines are written again, once");
    h.append(0, 3);
    assert!(h.sync());
    h.restart();
    assert_eq!(h.acked, [66, 5, 0]);
    h.append(1, 2);
    assert!(h.sync());
    let lost = h.power_loss(true);
    assert!(!wal || lost > 0, "WAL: FILE's lines were never synced");
    assert_eq!(
        h.acked,
        [66, 7, 0],
        "acknowledged lines survive a power loss"
    );
}

#[test]
fn disk_full_while_appending_a_journal_entry_leaves_no_torn_entry_in_the_middle() {
    disk_full_while_appending_a_journal_entry_leaves_no_torn_entry_in_the_middle_in(false);
}

/// The same with the write-ahead log (`--wal`).
#[test]
fn wal_disk_full_while_appending_a_journal_entry_leaves_no_torn_entry_in_the_middle() {
    disk_full_while_appending_a_journal_entry_leaves_no_torn_entry_in_the_middle_in(true);
}

fn disk_full_while_appending_a_journal_entry_leaves_no_torn_entry_in_the_middle_in(wal: bool) {
    let mut h = Harness::with("full-journal", wal);
    h.append(0, 10);
    assert!(h.sync());
    h.append(0, 33);
    h.disk.plan().journal_limit = Some(h.journal_len() + 20);
    assert!(!h.sync());
    h.disk.plan().journal_limit = None;
    for _ in 0..5 {
        h.append(1, 3);
        h.append(2, 1);
        assert!(h.sync());
    }
    h.restart();
    assert_eq!(
        h.acked,
        [43, 15, 5],
        "nothing after the failed entry is lost"
    );
    h.append(2, 1);
    assert!(h.sync());
    let lost = h.power_loss(false);
    assert!(!wal || lost > 0, "WAL: FILE's lines were never synced");
    assert_eq!(h.acked, [43, 15, 6]);
}

#[test]
fn a_failed_fdatasync_of_lines_is_never_acked_and_the_retry_rewrites_them() {
    a_failed_fdatasync_of_lines_is_never_acked_and_the_retry_rewrites_them_in(false);
}

/// The same with the write-ahead log (`--wal`).
#[test]
fn wal_a_failed_fdatasync_of_lines_is_never_acked_and_the_retry_rewrites_them() {
    a_failed_fdatasync_of_lines_is_never_acked_and_the_retry_rewrites_them_in(true);
}

fn a_failed_fdatasync_of_lines_is_never_acked_and_the_retry_rewrites_them_in(wal: bool) {
    // With the write-ahead log a commit syncs only the journal.
    let targets: &[Target] = if wal {
        &[Target::Journal]
    } else {
        &[Target::File, Target::Journal]
    };
    for &target in targets {
        let mut h = Harness::with("eio", wal);
        h.append(0, 10);
        assert!(h.sync());
        h.append(0, 32);
        h.append(1, 2);
        h.disk.plan().fail_sync = Some(target);
        assert!(!h.sync(), "{target:?}: EIO fails the sync");
        assert_eq!(h.acked, [10, 0, 0], "{target:?}: nothing more acknowledged");
        // The pages that fsync lost are written again from memory.
        assert!(h.sync(), "{target:?}");
        h.append(2, 4);
        assert!(h.sync());
        h.restart();
        assert_eq!(h.acked, [42, 2, 4], "{target:?}");
        h.append(0, 1);
        assert!(h.sync());
        let lost = h.power_loss(true);
        assert!(!wal || lost > 0, "WAL: FILE's lines were never synced");
        assert_eq!(h.acked, [43, 2, 4], "{target:?}: after a power loss");
    }
}

#[test]
fn a_failure_that_cannot_be_cut_back_poisons_the_store_until_restart() {
    a_failure_that_cannot_be_cut_back_poisons_the_store_until_restart_in(false);
}

/// The same with the write-ahead log (`--wal`).
#[test]
fn wal_a_failure_that_cannot_be_cut_back_poisons_the_store_until_restart() {
    a_failure_that_cannot_be_cut_back_poisons_the_store_until_restart_in(true);
}

fn a_failure_that_cannot_be_cut_back_poisons_the_store_until_restart_in(wal: bool) {
    let mut h = Harness::with("poison", wal);
    h.append(0, 10);
    assert!(h.sync());
    h.append(0, 5);
    {
        let mut p = h.disk.plan();
        p.journal_limit = Some(0);
        p.fail_set_len = true;
    }
    assert!(!h.sync());
    assert!(h.store().is_poisoned());
    h.disk.plan().journal_limit = None;
    let e = h.store().sync().unwrap_err().to_string();
    assert!(e.contains("restart the server"), "{e}");
    let g = h.generations[0];
    assert!(h.store().append(0, g, 15, b"x").is_err());
    h.restart();
    assert_eq!(h.acked[0], 10, "the unacknowledged batch is cut at restart");
    h.append(0, 5);
    assert!(h.sync());
    h.restart();
    assert_eq!(h.acked[0], 15);
    h.append(0, 1);
    assert!(h.sync());
    let lost = h.power_loss(true);
    assert!(!wal || lost > 0, "WAL: FILE's lines were never synced");
    assert_eq!(h.acked[0], 16);
}

/// With the write-ahead log FILE is written again from the journal at
/// open. A full disk then must refuse to open (the journal keeps the
/// lines), not drop the last commit as one that was never acknowledged;
/// once space is freed every acknowledged line is back, once.
#[test]
fn wal_a_full_disk_while_restoring_file_at_open_refuses_and_loses_nothing() {
    for (room, commits) in [(0, 1), (0, 2), (30, 2), (100, 2)] {
        let mut h = Harness::with("wal-restore-full", true);
        h.append(0, 10);
        assert!(h.sync());
        h.restart(); // FILE synced: the 10 lines are in the base
        h.append(0, 7);
        h.append(1, 3);
        assert!(h.sync());
        let last = if commits == 2 {
            h.append(2, 4);
            assert!(h.sync());
            4
        } else {
            0
        };
        // Power loss: FILE's lines since the open are gone, the journal's
        // commits are not.
        drop(h.store.take());
        let durable = h.disk.plan().dirty_from[0].expect("FILE written since its sync");
        File::options()
            .write(true)
            .open(&h.path)
            .unwrap()
            .set_len(durable)
            .unwrap();
        *h.disk.plan() = Plan {
            file_limit: Some(durable + room),
            ..Plan::default()
        };
        let e = h.reopen().unwrap_err();
        assert!(e.contains("again from the journal"), "room {room}: {e}");
        assert!(e.contains("free space"), "room {room}: {e}");
        assert!(!e.contains("  "), "room {room}: one line: {e}");
        // Refusing twice changes nothing either.
        assert!(h.reopen().is_err(), "room {room}");
        h.restart(); // space freed
        assert_eq!(h.acked, [17, 3, last], "room {room}");
        let lost = h.power_loss(false);
        assert_eq!(lost, 0, "room {room}: FILE was synced at open");
        assert_eq!(h.acked, [17, 3, last], "room {room}");
    }
}

/// "fsyncgate" at open: FILE's lines were written but their writeback
/// failed in the background (pages clean, not on the disk, reads still
/// return them). The open's sync reports it and the open refuses; the
/// next open's sync succeeds without writing those pages, so recovery
/// must not trust FILE's bytes because they read back right: it writes the
/// journal's lines again before syncing. A power loss then loses nothing.
#[test]
fn wal_lines_whose_writeback_failed_are_written_again_at_open() {
    let mut h = Harness::with("wal-writeback", true);
    h.append(0, 5);
    assert!(h.sync());
    h.restart();
    h.append(0, 6);
    h.append(1, 2);
    assert!(h.sync());
    h.append(2, 1);
    assert!(h.sync());
    drop(h.store.take());
    {
        let mut p = h.disk.plan();
        let from = p.dirty_from[0].take().expect("FILE written since its sync");
        let to = std::fs::metadata(&h.path).unwrap().len();
        p.unwritten = Some((from, to));
        p.report_writeback_error = true;
    }
    let e = h.reopen().unwrap_err();
    assert!(e.contains("syncing"), "{e}");
    h.restart();
    assert_eq!(h.acked, [11, 2, 1]);
    h.power_loss(true);
    assert_eq!(
        h.acked,
        [11, 2, 1],
        "acknowledged lines survive the power loss"
    );
}

/// A failed sync of FILE at open (its pages dropped) refuses to open;
/// the next open writes the lines again from the journal.
#[test]
fn wal_a_failed_sync_of_file_at_open_refuses_and_the_next_open_restores_it() {
    let mut h = Harness::with("wal-open-eio", true);
    h.append(0, 4);
    h.append(1, 4);
    assert!(h.sync());
    h.append(0, 2);
    assert!(h.sync());
    drop(h.store.take());
    h.disk.plan().fail_sync = Some(Target::File);
    let e = h.reopen().unwrap_err();
    assert!(e.contains("syncing"), "{e}");
    h.restart();
    assert_eq!(h.acked, [6, 4, 0]);
    h.power_loss(false);
    assert_eq!(h.acked, [6, 4, 0]);
}

#[derive(Debug, Clone)]
enum Fault {
    None,
    FileFull(u64),
    JournalFull(u64),
    SyncFails(bool),
    FullAndCannotCut,
}

#[derive(Debug, Clone)]
enum Op {
    Append(u64, u64),
    Sync(Fault),
    Kill,
    /// Power loss, FILE's unsynced bytes zeroed (or cut).
    PowerLoss(bool),
    /// FILE's writeback fails in the background.
    WritebackFails,
    /// A kill (or power loss), then a faulty open.
    Crash(Option<bool>, OpenFault),
}

/// What goes wrong while the store opens.
#[derive(Debug, Clone)]
enum OpenFault {
    None,
    /// FILE may grow this many bytes.
    FileFull(u64),
    /// FILE's sync fails (its dirty pages dropped).
    SyncFails,
}

fn op() -> impl Strategy<Value = Op> {
    let fault = prop_oneof![
        4 => Just(Fault::None),
        1 => (0u64..200).prop_map(Fault::FileFull),
        1 => (0u64..200).prop_map(Fault::JournalFull),
        1 => any::<bool>().prop_map(Fault::SyncFails),
        1 => Just(Fault::FullAndCannotCut),
    ];
    prop_oneof![
        4 => (0..SESSIONS, 1u64..6).prop_map(|(s, n)| Op::Append(s, n)),
        3 => fault.prop_map(Op::Sync),
        1 => Just(Op::Kill),
        1 => any::<bool>().prop_map(Op::PowerLoss),
        1 => Just(Op::WritebackFails),
        1 => (
            prop::option::of(any::<bool>()),
            prop_oneof![
                Just(OpenFault::None),
                (0u64..120).prop_map(OpenFault::FileFull),
                Just(OpenFault::SyncFails),
            ]
        )
            .prop_map(|(power, fault)| Op::Crash(power, fault)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any sequence of appends, faulty syncs and kills: after each
    /// successful sync and each restart FILE holds exactly the acknowledged
    /// lines (checked inside the harness), and nothing acknowledged is
    /// ever lost.
    #[test]
    fn any_faults_and_kills_keep_every_acked_line_once_in_order(ops in prop::collection::vec(op(), 1..40)) {
        model(ops, false)?;
    }

    /// The same with the write-ahead log (`--wal`), whose FILE is never
    /// synced between opens: a power loss takes all of its lines since the
    /// last open, and recovery writes them again from the journal.
    #[test]
    fn wal_any_faults_and_kills_keep_every_acked_line_once_in_order(ops in prop::collection::vec(op(), 1..40)) {
        model(ops, true)?;
    }
}

fn model(ops: Vec<Op>, wal: bool) -> Result<(), TestCaseError> {
    let mut h = Harness::with("model", wal);
    for op in ops {
        match op {
            Op::Append(s, n) => h.append(s, n),
            Op::Sync(fault) => {
                {
                    let (file_len, journal_len) = (h.file_len(), h.journal_len());
                    let mut p = h.disk.plan();
                    match fault {
                        Fault::None => {}
                        Fault::FileFull(k) => p.file_limit = Some(file_len + k),
                        Fault::JournalFull(k) => p.journal_limit = Some(journal_len + k),
                        Fault::SyncFails(file) => {
                            p.fail_sync = Some(if file { Target::File } else { Target::Journal });
                        }
                        Fault::FullAndCannotCut => {
                            p.file_limit = Some(file_len);
                            p.fail_set_len = true;
                        }
                    }
                }
                let before = h.acked;
                if !h.sync() {
                    prop_assert_eq!(h.acked, before);
                }
                // The fault passes (space freed, disk healthy again).
                let mut p = h.disk.plan();
                p.file_limit = None;
                p.journal_limit = None;
                p.fail_sync = None;
                p.fail_set_len = false;
            }
            Op::Kill => h.restart(),
            Op::WritebackFails => h.writeback_fails(),
            Op::Crash(power, fault) => h.crash(power, fault),
            Op::PowerLoss(zero) => {
                h.power_loss(zero);
            }
        }
    }
    h.restart();
    Ok(())
}
