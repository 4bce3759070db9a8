//! The lab's one TCP bulk transfer, A to B: a real sender and receiver on
//! the kernel's stack, each socket created in its namespace.
//!
//! The sender writes `bytes` of a seeded pseudo-random stream, half-closes,
//! and waits for the receiver's FIN; the receiver hashes what it reads
//! (sha256), half-closes after the sender's FIN. Both then wait until their
//! socket is `TCP_CLOSE` (every FIN sent and acknowledged), so that no
//! segment of the connection is still to come when the kernel's counters
//! are read and the captures stopped.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::error::Error;

/// Longest a read, a write or the closing handshake may take.
pub const STALL: Duration = Duration::from_secs(30);
/// Bytes per write and per read.
const CHUNK: usize = 64 * 1024;
/// Linux's `TCP_CLOSE` state (`include/net/tcp_states.h`).
const TCP_CLOSE: u8 = 7;

/// One end's account of the transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    /// Payload bytes written or read.
    pub bytes: u64,
    /// sha256 of them, lowercase hex.
    pub sha256: String,
}

/// Writes `bytes` of stream `seed` to `stream`; after `bytes / 2`, when
/// `halfway` is given, sends on it and waits for the reply (so the lab can
/// blackhole the path with data still to send).
pub fn send(
    mut stream: TcpStream,
    bytes: u64,
    seed: u64,
    halfway: Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>,
) -> Result<End, Error> {
    let io = |what: &str, e: std::io::Error| Error::Settings(format!("lab sender: {what}: {e}"));
    stream
        .set_write_timeout(Some(STALL))
        .map_err(|e| io("timeout", e))?;
    stream
        .set_read_timeout(Some(STALL))
        .map_err(|e| io("timeout", e))?;
    let mut rng = SplitMix(seed);
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut write = |mut left: u64| -> Result<(), Error> {
        while left > 0 {
            let n = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
            rng.fill(&mut buf[..n]);
            stream.write_all(&buf[..n]).map_err(|e| io("write", e))?;
            hash.update(&buf[..n]);
            left -= n as u64;
        }
        Ok(())
    };
    write(bytes / 2)?;
    if let Some((tell, wait)) = halfway {
        // Either side gone means no pause: go on writing.
        let _ = tell.send(());
        let _ = wait.recv();
    }
    write(bytes - bytes / 2)?;
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| io("shutdown", e))?;
    // The receiver sends nothing but its FIN: read until it.
    let mut rest = [0u8; 64];
    while stream.read(&mut rest).map_err(|e| io("read", e))? > 0 {}
    wait_closed(&stream).map_err(|e| io("closing", e))?;
    Ok(End {
        bytes,
        sha256: hex(&hash.finalize()),
    })
}

/// Accepts one connection on `listener`, reads it to its end, hashing.
pub fn receive(listener: TcpListener) -> Result<End, Error> {
    let io = |what: &str, e: std::io::Error| Error::Settings(format!("lab receiver: {what}: {e}"));
    let (mut stream, _) = listener.accept().map_err(|e| io("accept", e))?;
    stream
        .set_read_timeout(Some(STALL))
        .map_err(|e| io("timeout", e))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    loop {
        let n = stream.read(&mut buf).map_err(|e| io("read", e))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        got += n as u64;
    }
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| io("shutdown", e))?;
    wait_closed(&stream).map_err(|e| io("closing", e))?;
    Ok(End {
        bytes: got,
        sha256: hex(&hash.finalize()),
    })
}

/// Connects to `to` (call it on a thread inside the sender's namespace).
pub fn connect(to: SocketAddr) -> Result<TcpStream, Error> {
    TcpStream::connect_timeout(&to, STALL)
        .map_err(|e| Error::Settings(format!("lab sender: connect to {to}: {e}")))
}

/// Waits until the socket's state is `TCP_CLOSE`: its FIN was acknowledged
/// and the peer's received (a `TIME_WAIT` socket has left the descriptor,
/// which reads `TCP_CLOSE` then). Polls `TCP_INFO`: no event says this.
fn wait_closed(stream: &TcpStream) -> std::io::Result<()> {
    let deadline = Instant::now() + STALL;
    loop {
        if tcp_state(stream)? == TCP_CLOSE {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the connection did not close",
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `tcpi_state` of `TCP_INFO` (tcp(7)).
fn tcp_state(stream: &TcpStream) -> std::io::Result<u8> {
    // SAFETY: tcp_info is plain data; zeroed is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` and `len` are valid for writes of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(info.tcpi_state)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SplitMix64: incompressible payload, reproducible from its seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn loopback_transfer_hashes_the_same_at_both_ends() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let to = listener.local_addr().unwrap();
        let rx = std::thread::spawn(move || receive(listener));
        let sent = send(connect(to).unwrap(), 300_001, 7, None).unwrap();
        let got = rx.join().unwrap().unwrap();
        assert_eq!(sent, got);
        assert_eq!(sent.bytes, 300_001);
        assert_eq!(sent.sha256.len(), 64);
    }

    #[test]
    fn the_sender_pauses_halfway_when_asked() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let to = listener.local_addr().unwrap();
        let rx = std::thread::spawn(move || receive(listener));
        let (tell, told) = mpsc::channel();
        let (go, wait) = mpsc::channel();
        let tx =
            std::thread::spawn(move || send(connect(to).unwrap(), 100_000, 1, Some((tell, wait))));
        told.recv().unwrap();
        go.send(()).unwrap();
        let sent = tx.join().unwrap().unwrap();
        assert_eq!(sent, rx.join().unwrap().unwrap());
        assert_eq!(sent.bytes, 100_000);
    }

    #[test]
    fn hex_and_stream_are_stable() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
        let (mut x, mut y) = (SplitMix(3), SplitMix(3));
        let (mut a, mut b) = ([0u8; 13], [0u8; 13]);
        x.fill(&mut a);
        y.fill(&mut b);
        assert_eq!(a, b);
        assert_ne!(a, [0u8; 13]);
    }
}
