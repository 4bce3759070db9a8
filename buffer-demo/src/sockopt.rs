//! Socket options and kernel counters that socket2 does not cover.
//!
//! - `SO_RCVBUF` / `SO_RCVBUFFORCE`: Linux doubles the value set (the
//!   kernel's bookkeeping overhead) and caps the request at
//!   `net.core.rmem_max` unless `SO_RCVBUFFORCE` (CAP_NET_ADMIN) is used;
//!   `getsockopt` returns the doubled value. [`set_rcvbuf`] reports both.
//! - `SO_RXQ_OVFL`: each received datagram carries a cmsg with the socket's
//!   drop count when that datagram was queued ([`enable_rxq_ovfl`]).
//! - `/proc/net/udp` (`drops`, the last column, matched by socket inode) and
//!   `/proc/net/snmp` (`Udp: RcvbufErrors`), read through
//!   `/proc/thread-self/net` so that a thread inside another network
//!   namespace reads that namespace's files.

use std::os::fd::{AsRawFd, RawFd};

use serde::Serialize;
use socket2::Socket;

use crate::error::{Error, Result};

/// What happened to an `SO_RCVBUFFORCE` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Force {
    /// `--force` not given: plain `SO_RCVBUF`.
    NotAsked,
    /// `SO_RCVBUFFORCE` accepted: the `rmem_max` cap did not apply.
    Applied,
    /// `SO_RCVBUFFORCE` refused (no CAP_NET_ADMIN); plain `SO_RCVBUF` used.
    Refused(String),
}

/// Requested and granted receive buffer sizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rcvbuf {
    /// Bytes asked for (`None`: the system default, nothing set).
    #[serde(rename = "requested_bytes")]
    pub requested: Option<usize>,
    /// What `getsockopt(SO_RCVBUF)` returns afterwards, bytes.
    #[serde(rename = "granted_bytes")]
    pub granted: usize,
    /// `net.core.rmem_max` when read, bytes.
    #[serde(rename = "rmem_max_bytes")]
    pub rmem_max: Option<usize>,
    /// The `SO_RCVBUFFORCE` outcome.
    pub force: Force,
}

impl std::fmt::Display for Rcvbuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.requested {
            Some(r) => write!(f, "SO_RCVBUF requested {r} B, granted {} B", self.granted)?,
            None => write!(f, "SO_RCVBUF default, granted {} B", self.granted)?,
        }
        if let Some(m) = self.rmem_max {
            write!(f, " (rmem_max {m}")?;
            if let Some(r) = self.requested
                && r > m
                && self.force != Force::Applied
            {
                write!(f, ": capped")?;
            }
            write!(f, ")")?;
        }
        match &self.force {
            Force::NotAsked => Ok(()),
            Force::Applied => write!(f, ", SO_RCVBUFFORCE applied"),
            Force::Refused(why) => {
                write!(f, ", SO_RCVBUFFORCE refused ({why}), capped request used")
            }
        }
    }
}

/// Sets the receive buffer (`requested: None` leaves the default) and
/// reports what the kernel granted.
///
/// # Notes
/// Linux stores twice the value (capped at `rmem_max` first, unless
/// `force` and the process has CAP_NET_ADMIN), with a floor of about 2 KiB.
pub fn set_rcvbuf(socket: &Socket, requested: Option<usize>, force: bool) -> Result<Rcvbuf> {
    let mut outcome = Force::NotAsked;
    if let Some(bytes) = requested {
        if force {
            let value = libc::c_int::try_from(bytes)
                .map_err(|_| Error::Config(format!("--rcvbuf {bytes} does not fit a C int")))?;
            match setsockopt_int(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                value,
            ) {
                Ok(()) => outcome = Force::Applied,
                Err(e) => outcome = Force::Refused(e.to_string()),
            }
        }
        if outcome != Force::Applied {
            socket
                .set_recv_buffer_size(bytes)
                .map_err(Error::socket("setsockopt(SO_RCVBUF)"))?;
        }
    }
    let granted = socket
        .recv_buffer_size()
        .map_err(Error::socket("getsockopt(SO_RCVBUF)"))?;
    Ok(Rcvbuf {
        requested,
        granted,
        rmem_max: rmem_max(),
        force: outcome,
    })
}

/// Asks the kernel to attach the socket's drop count to every datagram
/// (`SO_RXQ_OVFL`).
pub fn enable_rxq_ovfl(socket: &Socket) -> Result<()> {
    setsockopt_int(socket.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1)
        .map_err(Error::socket("setsockopt(SO_RXQ_OVFL)"))
}

/// Turns on `UDP_GRO`: the kernel hands over a GSO message (or datagrams
/// it coalesced) as one buffer with a `UDP_GRO` cmsg giving the segment size.
pub fn enable_gro(socket: &Socket) -> Result<()> {
    setsockopt_int(socket.as_raw_fd(), libc::SOL_UDP, crate::mmsg::UDP_GRO, 1)
        .map_err(Error::socket("setsockopt(UDP_GRO)"))
}

/// `SO_REUSEPORT`: several sockets bound to one address, the kernel picking
/// one per datagram.
pub fn enable_reuseport(socket: &Socket) -> Result<()> {
    setsockopt_int(socket.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)
        .map_err(Error::socket("setsockopt(SO_REUSEPORT)"))
}

/// `SO_ATTACH_REUSEPORT_CBPF` (not in every libc target).
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// The classic BPF program that picks one of `n` reuseport sockets for a
/// datagram (the kernel runs it with the data at the UDP payload): a hash
/// of the low 32 bits of the header's seq (bytes 20..24), modulo `n`. One
/// sender's stream (one 4-tuple, which the default hash would keep on one
/// socket) spreads over every socket; a GSO message goes whole to the
/// socket its first datagram picks, and every sentinel copy (same total)
/// to one socket. A payload too short to hold the seq goes to socket 0.
pub fn reuseport_program(n: u32) -> [libc::sock_filter; 5] {
    let op = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    [
        op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 20),
        op(libc::BPF_ALU | libc::BPF_MUL | libc::BPF_K, 0x9e37_79b1),
        op(libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K, 16),
        op(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, n.max(1)),
        op(libc::BPF_RET | libc::BPF_A, 0),
    ]
}

/// Attaches [`reuseport_program`] for `n` sockets to the reuseport group of
/// `socket` (the sockets are numbered in the order they were bound).
pub fn attach_reuseport_program(socket: &Socket, n: u32) -> Result<()> {
    let mut prog = reuseport_program(n);
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: the socket is open; `fprog` points to `prog`, which lives
    // until the call returns (the kernel copies the program), and its exact
    // size is passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::socket("setsockopt(SO_ATTACH_REUSEPORT_CBPF)")(
            std::io::Error::last_os_error(),
        ))
    }
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> std::io::Result<()> {
    // SAFETY: `fd` is an open socket owned by the caller; the option value
    // points to a live `c_int` and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `net.core.rmem_max`, when readable.
pub fn rmem_max() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The socket's inode number, the key of its line in `/proc/net/udp`.
pub fn socket_inode(socket: &Socket) -> Result<u64> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: the fd is open for the call's duration; `st` is a writable
    // `stat` that fstat fills completely when it returns 0.
    let rc = unsafe { libc::fstat(socket.as_raw_fd(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(Error::socket("fstat")(std::io::Error::last_os_error()));
    }
    // SAFETY: fstat returned 0, so it initialised `st`.
    Ok(unsafe { st.assume_init() }.st_ino)
}

/// Parses `/proc/net/udp`-format text and returns the `drops` column of the
/// socket with this inode.
pub fn parse_proc_udp_drops(text: &str, inode: u64) -> Option<u64> {
    text.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:tm retrnsmt uid timeout inode ref pointer drops
        if cols.len() >= 13 && cols[9].parse::<u64>().ok()? == inode {
            cols[12].parse().ok()
        } else {
            None
        }
    })
}

/// The socket's `drops` from `/proc/net/udp` (or `udp6`) of the calling
/// thread's network namespace.
pub fn proc_udp_drops(socket: &Socket) -> Result<u64> {
    let inode = socket_inode(socket)?;
    for path in ["/proc/thread-self/net/udp", "/proc/thread-self/net/udp6"] {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Proc {
            path: path.into(),
            reason: e.to_string(),
        })?;
        if let Some(d) = parse_proc_udp_drops(&text, inode) {
            return Ok(d);
        }
    }
    Err(Error::Proc {
        path: "/proc/thread-self/net/udp".into(),
        reason: format!("no socket with inode {inode}"),
    })
}

/// Parses `/proc/net/snmp`-format text and returns `Udp: RcvbufErrors`.
pub fn parse_snmp_rcvbuf_errors(text: &str) -> Option<u64> {
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let names = udp.next()?;
    let values = udp.next()?;
    let i = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// `Udp: RcvbufErrors` of the calling thread's network namespace.
pub fn snmp_rcvbuf_errors() -> Result<u64> {
    let path = "/proc/thread-self/net/snmp";
    let text = std::fs::read_to_string(path).map_err(|e| Error::Proc {
        path: path.into(),
        reason: e.to_string(),
    })?;
    parse_snmp_rcvbuf_errors(&text).ok_or_else(|| Error::Proc {
        path: path.into(),
        reason: "no Udp RcvbufErrors".into(),
    })
}

/// Peak resident memory of this process (`VmHWM`), KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn proc_udp_line() {
        let text = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  483: 0100007F:A1B2 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 424242 2 0000000000000000 17\n\
  484: 0100007F:A1B3 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 424243 2 0000000000000000 0\n";
        assert_eq!(parse_proc_udp_drops(text, 424242), Some(17));
        assert_eq!(parse_proc_udp_drops(text, 424243), Some(0));
        assert_eq!(parse_proc_udp_drops(text, 1), None);
    }

    #[test]
    fn snmp_lines() {
        let text = "Ip: Forwarding\nIp: 1\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\nUdp: 10 0 4 9 3 0\nUdpLite: InDatagrams\nUdpLite: 0\n";
        assert_eq!(parse_snmp_rcvbuf_errors(text), Some(3));
    }
}
