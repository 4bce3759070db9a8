//! Writes every stream's two directions to files (`DIR/<id>.c2s`,
//! `DIR/<id>.s2c`) as the reassembler delivers them, and the index
//! `DIR/streams.json`, entry by entry as streams end: one pass, memory
//! bounded by the open files' buffers, never by the capture.
//!
//! A hole is never silently filled: with [`GapFill::Skip`] (the default)
//! the bytes after it follow at once and the index gives both the stream
//! offset and the file offset of each gap; [`GapFill::Zeros`] and
//! [`GapFill::Marker`] keep every byte at its stream offset, for tools that
//! need the original offsets (the index still lists the gaps).
//!
//! At most `max_open` files are open at once: the least recently written
//! is flushed and closed, and reopened to append when its stream writes
//! again, so thousands of concurrent streams need no more descriptors than
//! that.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::StreamReport;
use crate::error::Error;
use crate::lab::transfer::hex;
use crate::reassembly::{Dir, Gap};
use crate::segment::FastMap;

/// Buffer per open file.
const FILE_BUFFER: usize = 32 * 1024;

/// What an extracted file holds where the stream has a hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GapFill {
    /// Nothing: the bytes after the hole follow at once.
    #[default]
    Skip,
    /// As many zero bytes as the hole is long.
    Zeros,
    /// The hole's length in bytes: a text marker
    /// (`[tcp-watch gap: N bytes at offset O, cause C]`, cut to the hole's
    /// length), then zero bytes.
    Marker,
}

impl GapFill {
    /// The name used on the command line and in `streams.json`.
    pub fn name(self) -> &'static str {
        match self {
            GapFill::Skip => "skip",
            GapFill::Zeros => "zeros",
            GapFill::Marker => "marker",
        }
    }
}

/// One direction's file.
struct Out {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    /// Whether the file was created (later opens append).
    created: bool,
    len: u64,
    hash: Sha256,
    /// Key in the LRU while open.
    used: u64,
}

/// The extraction of one run.
pub struct Extractor {
    dir: PathBuf,
    fill: GapFill,
    max_open: usize,
    outs: FastMap<(u64, Dir), Out>,
    /// Open files by last use.
    lru: BTreeMap<u64, (u64, Dir)>,
    clock: u64,
    index: BufWriter<File>,
    entries: u64,
}

impl std::fmt::Debug for Extractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extractor")
            .field("dir", &self.dir)
            .field("open", &self.lru.len())
            .finish()
    }
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// File name suffix of a direction.
pub fn suffix(dir: Dir) -> &'static str {
    match dir {
        Dir::ClientToServer => "c2s",
        Dir::ServerToClient => "s2c",
    }
}

impl Extractor {
    /// Creates `dir` if needed and starts `dir/streams.json`.
    pub fn new(dir: &Path, fill: GapFill, max_open: usize) -> Result<Extractor, Error> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let index_path = dir.join("streams.json");
        let file = File::create(&index_path).map_err(|e| io(&index_path, e))?;
        let mut index = BufWriter::new(file);
        write!(
            index,
            "{{\"program\":\"tcp-watch\",\"version\":\"{}\",\"schema\":{},\"gaps\":\"{}\",\"streams\":[",
            env!("CARGO_PKG_VERSION"),
            crate::output::SCHEMA,
            fill.name()
        )
        .map_err(|e| io(&index_path, e))?;
        Ok(Extractor {
            dir: dir.to_path_buf(),
            fill,
            max_open: max_open.max(1),
            outs: FastMap::default(),
            lru: BTreeMap::new(),
            clock: 0,
            index,
            entries: 0,
        })
    }

    /// Where a stream direction's file is.
    fn path(&self, stream: u64, dir: Dir) -> PathBuf {
        self.dir.join(format!("{stream}.{}", suffix(dir)))
    }

    /// The path of a stream direction's file, as reports give it.
    pub fn file_name(&self, stream: u64, dir: Dir) -> String {
        self.path(stream, dir).display().to_string()
    }

    /// The direction's file, open for writing and the most recently used.
    fn out(&mut self, stream: u64, dir: Dir) -> Result<&mut Out, Error> {
        let key = (stream, dir);
        self.clock += 1;
        let now = self.clock;
        // The common case, an open file: one lookup.
        if let Some(o) = self.outs.get_mut(&key) {
            if o.file.is_some() {
                self.lru.remove(&o.used);
                o.used = now;
                self.lru.insert(now, key);
                return Ok(self.outs.get_mut(&key).expect("present"));
            }
        } else {
            let path = self.path(stream, dir);
            self.outs.insert(
                key,
                Out {
                    path,
                    file: None,
                    created: false,
                    len: 0,
                    hash: Sha256::new(),
                    used: 0,
                },
            );
        }
        {
            while self.lru.len() >= self.max_open {
                let Some((_, victim)) = self.lru.pop_first() else {
                    break;
                };
                if let Some(v) = self.outs.get_mut(&victim) {
                    if let Some(mut f) = v.file.take() {
                        f.flush().map_err(|e| io(&v.path, e))?;
                    }
                }
            }
            let o = self.outs.get_mut(&key).expect("present");
            let file = if o.created {
                OpenOptions::new().append(true).open(&o.path)
            } else {
                File::create(&o.path)
            }
            .map_err(|e| io(&o.path, e))?;
            o.created = true;
            o.file = Some(BufWriter::with_capacity(FILE_BUFFER, file));
            o.used = now;
            self.lru.insert(now, key);
        }
        Ok(self.outs.get_mut(&key).expect("present"))
    }

    /// In-order bytes of a direction.
    pub fn data(&mut self, stream: u64, dir: Dir, bytes: &[u8]) -> Result<(), Error> {
        let o = self.out(stream, dir)?;
        o.hash.update(bytes);
        o.len += bytes.len() as u64;
        let path = &o.path;
        o.file
            .as_mut()
            .expect("opened")
            .write_all(bytes)
            .map_err(|e| io(path, e))
    }

    /// A hole: fills it as configured; returns the file offset where it is.
    pub fn gap(&mut self, gap: &Gap) -> Result<u64, Error> {
        let fill = self.fill;
        let o = self.out(gap.stream, gap.dir)?;
        let at = o.len;
        if fill == GapFill::Skip {
            return Ok(at);
        }
        let marker = match fill {
            GapFill::Marker => format!(
                "[tcp-watch gap: {} bytes at offset {}, cause {}]",
                gap.len,
                gap.offset,
                super::cause_name(gap.cause)
            ),
            _ => String::new(),
        };
        let head = &marker.as_bytes()[..marker.len().min(gap.len as usize)];
        const ZEROS: [u8; 8192] = [0; 8192];
        let Out {
            path, file, hash, ..
        } = o;
        let f = file.as_mut().expect("opened");
        f.write_all(head).map_err(|e| io(path, e))?;
        hash.update(head);
        let mut left = gap.len - head.len() as u64;
        while left > 0 {
            let k = left.min(ZEROS.len() as u64) as usize;
            f.write_all(&ZEROS[..k]).map_err(|e| io(path, e))?;
            hash.update(&ZEROS[..k]);
            left -= k as u64;
        }
        o.len += gap.len;
        Ok(at)
    }

    /// The stream ended: its files are flushed and closed (their state is
    /// kept until [`Extractor::finish`]).
    pub fn close_stream(&mut self, stream: u64) -> Result<(), Error> {
        for dir in [Dir::ClientToServer, Dir::ServerToClient] {
            if let Some(o) = self.outs.get_mut(&(stream, dir)) {
                if let Some(mut f) = o.file.take() {
                    self.lru.remove(&o.used);
                    f.flush().map_err(|e| io(&o.path, e))?;
                }
            }
        }
        Ok(())
    }

    /// A direction is done: its file exists (empty if no byte came), and
    /// its length and sha256 are returned.
    pub fn finish(&mut self, stream: u64, dir: Dir) -> Result<(u64, String), Error> {
        if !self.outs.contains_key(&(stream, dir)) {
            self.out(stream, dir)?;
        }
        let mut o = self.outs.remove(&(stream, dir)).expect("present");
        if let Some(mut f) = o.file.take() {
            self.lru.remove(&o.used);
            f.flush().map_err(|e| io(&o.path, e))?;
        }
        if !o.created {
            File::create(&o.path).map_err(|e| io(&o.path, e))?;
        }
        Ok((o.len, hex(&o.hash.finalize())))
    }

    /// Adds a finished stream to `streams.json`.
    pub fn index(&mut self, report: &StreamReport) -> Result<(), Error> {
        let path = self.dir.join("streams.json");
        let dir_entry = |d: &super::DirectionOut| {
            serde_json::json!({
                "file": d.reassembly.file,
                "bytes": d.reassembly.file_bytes,
                "delivered": d.reassembly.delivered,
                "sha256": d.reassembly.sha256,
                "start_known": d.reassembly.start_known,
                "isn": d.reassembly.isn,
                "base_seq": d.reassembly.base_seq,
                "end": d.reassembly.end,
                "fin": d.reassembly.fin,
                "gaps_total": d.reassembly.gaps_total,
                "gap_bytes": d.reassembly.gap_bytes,
                "gaps": d.reassembly.gaps,
                "conflicts_total": d.reassembly.conflicts_total,
                "conflicts": d.reassembly.conflicts,
            })
        };
        let entry = serde_json::json!({
            "id": report.id,
            "client": report.client,
            "server": report.server,
            "start_known": report.start_known,
            "first_frame": report.first_frame,
            "last_frame": report.last_frame,
            "close": report.close,
            "client_to_server": dir_entry(&report.directions.client_to_server),
            "server_to_client": dir_entry(&report.directions.server_to_client),
        });
        let sep = if self.entries == 0 { "\n" } else { ",\n" };
        self.entries += 1;
        self.index
            .write_all(sep.as_bytes())
            .and_then(|()| serde_json::to_writer(&mut self.index, &entry).map_err(Into::into))
            .map_err(|e| io(&path, e))
    }

    /// Flushes every file and ends `streams.json`.
    pub fn close(mut self) -> Result<(), Error> {
        let path = self.dir.join("streams.json");
        for o in self.outs.values_mut() {
            if let Some(mut f) = o.file.take() {
                f.flush().map_err(|e| io(&o.path, e))?;
            }
        }
        self.index
            .write_all(b"\n]}\n")
            .and_then(|()| self.index.flush())
            .map_err(|e| io(&path, e))
    }
}
