//! What the kernel knows about a TCP socket, beside what the application
//! knows.
//!
//! `send()` returning means the local kernel took the bytes. These counters
//! say where the bytes are now: still in our send queue (`outq`), sent but
//! not acknowledged by the peer kernel (`outq - notsent`), unread in our
//! receive queue (`inq`), and the connection's TCP state. None of them says
//! what the peer *application* did: that is what application ACKs are for.
//!
//! Linux only: `ioctl(SIOCOUTQ)`, `ioctl(SIOCOUTQNSD)`, `ioctl(FIONREAD)`
//! and `getsockopt(TCP_INFO)`.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;

use serde::Serialize;

/// One sample of a socket's kernel state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KernelView {
    /// Bytes in the send queue not yet acknowledged by the peer kernel
    /// (unsent + unacked), `SIOCOUTQ`.
    pub outq: u32,
    /// Bytes in the send queue not yet sent at all, `SIOCOUTQNSD`.
    pub outq_notsent: u32,
    /// Bytes received and not yet read by this application, `FIONREAD`.
    pub inq: u32,
    /// TCP state from `TCP_INFO` (`ESTABLISHED`, `CLOSE_WAIT`, ...).
    pub state: &'static str,
    /// Segments sent and not yet acknowledged, `tcpi_unacked`.
    pub unacked_segments: u32,
    /// Bytes not yet sent, `tcpi_notsent_bytes`.
    pub notsent_bytes: u32,
    /// Smoothed round-trip time in microseconds, `tcpi_rtt`.
    pub rtt_us: u32,
}

impl std::fmt::Display for KernelView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kernel: {} outq={} B (not sent {} B) unacked={} seg inq={} B rtt={} us",
            self.state, self.outq, self.outq_notsent, self.unacked_segments, self.inq, self.rtt_us
        )
    }
}

/// Reads the kernel's view of `socket`.
///
/// # Errors
/// The `ioctl` or `getsockopt` error (e.g. `ENOTCONN` on a socket that was
/// never connected).
pub fn sample(socket: &impl AsRawFd) -> io::Result<KernelView> {
    let fd = socket.as_raw_fd();
    let outq = ioctl_int(fd, libc::TIOCOUTQ as _)?;
    let outq_notsent = ioctl_int(fd, libc::SIOCOUTQNSD as _)?;
    let inq = ioctl_int(fd, libc::FIONREAD as _)?;
    let info = tcp_info(fd)?;
    Ok(KernelView {
        outq,
        outq_notsent,
        inq,
        state: state_name(info.tcpi_state),
        unacked_segments: info.tcpi_unacked,
        notsent_bytes: info.tcpi_notsent_bytes,
        rtt_us: info.tcpi_rtt,
    })
}

fn ioctl_int(fd: libc::c_int, request: libc::Ioctl) -> io::Result<u32> {
    let mut value: libc::c_int = 0;
    // SAFETY: these requests write one c_int through the pointer, which
    // points at a live local.
    let rc = unsafe { libc::ioctl(fd, request, &mut value as *mut libc::c_int) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u32::try_from(value).unwrap_or(0))
}

fn tcp_info(fd: libc::c_int) -> io::Result<libc::tcp_info> {
    let mut info = MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `info`, which is
    // that large and zero-initialised (older kernels fill less).
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zero-initialised and partly overwritten by the kernel; every
    // field is a plain integer, valid for any bit pattern.
    Ok(unsafe { info.assume_init() })
}

/// Linux `tcp_states.h` names.
fn state_name(state: u8) -> &'static str {
    match state {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        _ => "UNKNOWN",
    }
}

/// Raises this process's soft limit on open files to its hard limit and
/// returns the limit now in force.
///
/// Each session holds a socket (and a test or bench that runs clients in the
/// same process, two): 1000 sessions need more than the 1024 many systems
/// start a process with, while the hard limit is usually far higher.
///
/// # Errors
/// The `getrlimit`/`setrlimit` error.
pub fn raise_open_file_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable `rlimit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid `rlimit`; raising the soft limit up to
        // the hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        lim = raised;
    }
    Ok(lim.rlim_cur)
}
