//! Batched datagram I/O: `recvmmsg` with the `SO_RXQ_OVFL` cmsg, and
//! `sendmmsg`. Linux only (socket2 has neither call).
//!
//! Both structures own their buffers and rebuild the kernel-facing
//! `mmsghdr`/`iovec` pointers on every call, so a moved value never hands
//! the kernel a stale pointer.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Largest datagram a receive slot holds; longer ones arrive truncated (and
/// are counted as foreign).
pub const SLOT: usize = 9216;

/// Room for one `u32` cmsg (`SO_RXQ_OVFL`) plus a spare, in `u64`s so that
/// the buffer is aligned for `cmsghdr`.
const CMSG_WORDS: usize = 8;

/// A reusable `recvmmsg` batch.
pub struct RecvBatch {
    bufs: Vec<u8>,
    cmsgs: Vec<u64>,
    addrs: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    filled: usize,
}

impl RecvBatch {
    /// A batch of `n` slots of [`SLOT`] bytes.
    pub fn new(n: usize) -> RecvBatch {
        let n = n.max(1);
        // SAFETY: `iovec` and `mmsghdr` are plain C structs for which all-zero
        // bytes are a valid value (null pointers, zero lengths).
        let zero_iov: libc::iovec = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        // SAFETY: all-zero bytes are a valid `sockaddr_storage` (AF_UNSPEC).
        let zero_addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        RecvBatch {
            bufs: vec![0; n * SLOT],
            cmsgs: vec![0; n * CMSG_WORDS],
            addrs: vec![zero_addr; n],
            iovecs: vec![zero_iov; n],
            hdrs: vec![zero_hdr; n],
            filled: 0,
        }
    }

    /// Slots in the batch.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// One `recvmmsg` call with `MSG_WAITFORONE`: blocks (up to the socket's
    /// `SO_RCVTIMEO`) for the first datagram, then takes whatever else is
    /// queued, up to the batch size. Returns the number received.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let n = self.hdrs.len();
        let bufs = self.bufs.as_mut_ptr();
        let cmsgs = self.cmsgs.as_mut_ptr();
        for i in 0..n {
            // SAFETY: i < n and `bufs` holds n * SLOT bytes, `cmsgs` n * CMSG_WORDS words.
            let (buf, cmsg) = unsafe { (bufs.add(i * SLOT), cmsgs.add(i * CMSG_WORDS)) };
            self.iovecs[i] = libc::iovec {
                iov_base: buf.cast(),
                iov_len: SLOT,
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovecs[i];
            h.msg_iovlen = 1;
            h.msg_control = cmsg.cast();
            h.msg_controllen = CMSG_WORDS * 8;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        self.filled = 0;
        // SAFETY: `hdrs` holds n initialised headers whose iovecs, names and
        // control buffers point into `self.bufs`/`self.addrs`/`self.cmsgs`, which outlive the call
        // and are not otherwise borrowed; a null timeout is allowed.
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        self.filled = rc as usize;
        Ok(self.filled)
    }

    /// Datagram `i` of the last call: its bytes (at most [`SLOT`]) and its
    /// `SO_RXQ_OVFL` value, present once the socket has dropped something.
    pub fn get(&self, i: usize) -> (&[u8], Option<u32>) {
        assert!(i < self.filled, "datagram {i} of {}", self.filled);
        let len = (self.hdrs[i].msg_len as usize).min(SLOT);
        let bytes = &self.bufs[i * SLOT..i * SLOT + len];
        (bytes, self.ovfl(i))
    }

    /// Where datagram `i` of the last call came from (`None` for an address
    /// family other than IPv4/IPv6).
    pub fn source(&self, i: usize) -> Option<SocketAddr> {
        assert!(i < self.filled, "datagram {i} of {}", self.filled);
        let len = self.hdrs[i].msg_hdr.msg_namelen as usize;
        let storage = &self.addrs[i];
        match i32::from(storage.ss_family) {
            libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
                // SAFETY: the kernel wrote a `sockaddr_in` (family AF_INET,
                // length checked) into this storage, which is aligned for it.
                let a = unsafe {
                    &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()
                };
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
                // SAFETY: as above, a `sockaddr_in6`.
                let a = unsafe {
                    &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
                };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    fn ovfl(&self, i: usize) -> Option<u32> {
        let h = &self.hdrs[i].msg_hdr;
        let mut found = None;
        // SAFETY: `h` was filled by the kernel in the last recvmmsg: its
        // control pointer and (updated) length describe our aligned
        // `cmsgs` slot, so the CMSG_* macros stay inside it; the data of an
        // SO_RXQ_OVFL cmsg is one u32, read unaligned.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_RXQ_OVFL {
                    found = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<u32>()));
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        found
    }
}

/// A reusable `sendmmsg` batch of equal-sized datagrams on a connected socket.
pub struct SendBatch {
    bufs: Vec<u8>,
    size: usize,
    iovecs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl SendBatch {
    /// `n` datagrams of `size` bytes, zero-filled.
    pub fn new(n: usize, size: usize) -> SendBatch {
        let n = n.max(1);
        // SAFETY: all-zero `iovec`/`mmsghdr` are valid values.
        let zero_iov: libc::iovec = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        SendBatch {
            bufs: vec![0; n * size],
            size,
            iovecs: vec![zero_iov; n],
            hdrs: vec![zero_hdr; n],
        }
    }

    /// Datagrams in the batch.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// The bytes of datagram `i`, to fill before sending.
    pub fn slot(&mut self, i: usize) -> &mut [u8] {
        &mut self.bufs[i * self.size..(i + 1) * self.size]
    }

    /// One `sendmmsg` of datagrams `from..to`; returns how many the kernel
    /// accepted (it may take fewer than asked).
    pub fn send(&mut self, fd: RawFd, from: usize, to: usize) -> io::Result<usize> {
        assert!(from < to && to <= self.hdrs.len());
        let base = self.bufs.as_mut_ptr();
        for i in from..to {
            self.iovecs[i] = libc::iovec {
                // SAFETY: i < n, `bufs` holds n * size bytes.
                iov_base: unsafe { base.add(i * self.size) }.cast(),
                iov_len: self.size,
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = std::ptr::null_mut();
            h.msg_namelen = 0;
            h.msg_iov = &mut self.iovecs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        // SAFETY: headers from..to are initialised and point into `bufs`,
        // which outlives the call; the socket is connected, so no address.
        let rc = unsafe {
            libc::sendmmsg(
                fd,
                self.hdrs.as_mut_ptr().add(from),
                (to - from) as libc::c_uint,
                0,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc as usize)
        }
    }
}

/// `WouldBlock` or `TimedOut`: `SO_RCVTIMEO` expired with nothing queued.
pub fn timed_out(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// `EINTR`: a signal interrupted the call; retry.
pub fn interrupted(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::Interrupted
}
