//! Opening the files the programs read and write without ever blocking in `open`.
//!
//! `open(2)` on a FIFO waits for the other end: a reader blocks until some process opens it
//! for writing, a writer until one opens it for reading, so `udp-audio send fifo` would hang
//! for ever. Both functions here open with `O_NONBLOCK` (a FIFO opens at once, or fails
//! with `ENXIO` for a writer without a reader), look at what was opened with `fstat`, and
//! only then clear `O_NONBLOCK`:
//!
//! - inputs must be regular files (a WAV or SDP file is read with seeks and a known length);
//! - outputs may be regular files or character devices such as `/dev/null`, never a FIFO or
//!   socket (the WAV header is rewritten at the end, which needs a seek).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::{Error, Result};

/// What kind of file `t` is, in words.
fn kind_of(t: std::fs::FileType) -> &'static str {
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

fn clear_nonblock(file: &File, shown: &str) -> Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(Error::io(
            format!("opening {shown}"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Opens `path` for reading; refuses anything but a regular file ([`Error::NotRegularFile`])
/// without waiting for a FIFO's writer.
pub fn open_input(path: &Path) -> Result<File> {
    let shown = path.display().to_string();
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io(format!("opening {shown}"), e))?;
    let t = file
        .metadata()
        .map_err(|e| Error::io(format!("reading {shown}"), e))?
        .file_type();
    if !t.is_file() {
        return Err(Error::NotRegularFile {
            path: shown,
            found: kind_of(t),
        });
    }
    clear_nonblock(&file, &shown)?;
    Ok(file)
}

/// Creates (or truncates) `path` for writing; refuses FIFOs, sockets and directories
/// ([`Error::NotRegularFile`]) without waiting for a FIFO's reader.
pub fn create_output(path: &Path) -> Result<File> {
    let shown = path.display().to_string();
    let refuse = |found| Error::NotRegularFile {
        path: shown.clone(),
        found,
    };
    // Checked before opening, so that a FIFO with a reader is not opened (and the reader
    // sent an end of file) only to be refused.
    if let Ok(m) = std::fs::metadata(path) {
        let t = m.file_type();
        if !(t.is_file() || t.is_char_device()) {
            return Err(refuse(kind_of(t)));
        }
    }
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            // O_NONBLOCK|O_WRONLY on a FIFO without a reader (created since the check).
            Some(libc::ENXIO) => refuse("a FIFO"),
            _ => Error::io(format!("creating {shown}"), e),
        })?;
    let t = file
        .metadata()
        .map_err(|e| Error::io(format!("creating {shown}"), e))?
        .file_type();
    if !(t.is_file() || t.is_char_device()) {
        return Err(refuse(kind_of(t)));
    }
    clear_nonblock(&file, &shown)?;
    Ok(file)
}

/// Reads a whole text file (an SDP description) through [`open_input`], at most `limit`
/// bytes.
pub fn read_text(path: &Path, limit: u64) -> Result<String> {
    use std::io::Read;
    let shown = path.display().to_string();
    let file = open_input(path)?;
    let mut text = String::new();
    file.take(limit + 1)
        .read_to_string(&mut text)
        .map_err(|e| Error::io(format!("reading {shown}"), e))?;
    if text.len() as u64 > limit {
        return Err(Error::Config {
            what: format!("{shown} is longer than {limit} bytes"),
        });
    }
    Ok(text)
}

#[cfg(test)]
mod test {
    use super::*;

    fn fifo(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("udp-audio-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        path
    }

    #[test]
    fn a_fifo_is_refused_at_once_both_ways() {
        let p = fifo("in");
        let e = open_input(&p).unwrap_err();
        assert!(
            matches!(
                e,
                Error::NotRegularFile {
                    found: "a FIFO",
                    ..
                }
            ),
            "{e}"
        );
        let e = create_output(&p).unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");
        let e = open_input(p.parent().unwrap()).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn regular_files_and_dev_null_are_fine() {
        let dir = std::env::temp_dir().join(format!("udp-audio-files-r-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.txt");
        std::fs::write(&p, "v=0\n").unwrap();
        assert_eq!(read_text(&p, 100).unwrap(), "v=0\n");
        assert!(read_text(&p, 2).is_err());
        assert!(create_output(&p).is_ok());
        assert!(create_output(Path::new("/dev/null")).is_ok());
        assert!(open_input(Path::new("/dev/null")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
