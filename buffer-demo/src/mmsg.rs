//! Batched datagram I/O: `recvmmsg` with the `SO_RXQ_OVFL` and `UDP_GRO`
//! cmsgs, and `sendmmsg`, optionally with UDP GSO (`UDP_SEGMENT`: one
//! message of up to [`MAX_GSO_SEGMENTS`] datagrams that the kernel splits).
//! Linux only (socket2 has none of these calls).
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

/// Receive slot for a socket with `UDP_GRO` on: a coalesced datagram is at
/// most one IP packet (64 KiB).
pub const GRO_SLOT: usize = 65536;

/// Most segments in one GSO message (the kernel's `UDP_MAX_SEGMENTS` is 64
/// on older kernels, 128 on newer ones).
pub const MAX_GSO_SEGMENTS: usize = 64;

/// Largest GSO message: the UDP payload of one IPv4 packet.
pub const MAX_GSO_BYTES: usize = 65507;

/// `SOL_UDP` options (not in every libc target).
pub const UDP_SEGMENT: libc::c_int = 103;
/// See [`UDP_SEGMENT`].
pub const UDP_GRO: libc::c_int = 104;

/// Room for one `u32` cmsg (`SO_RXQ_OVFL`) plus a spare, in `u64`s so that
/// the buffer is aligned for `cmsghdr`.
const CMSG_WORDS: usize = 8;

/// A reusable `recvmmsg` batch.
pub struct RecvBatch {
    slot: usize,
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
        RecvBatch::with_slot(n, SLOT)
    }

    /// A batch of `n` slots of `slot` bytes (at least 1; [`GRO_SLOT`] for a
    /// socket with `UDP_GRO`).
    pub fn with_slot(n: usize, slot: usize) -> RecvBatch {
        let n = n.max(1);
        let slot = slot.max(1);
        // SAFETY: `iovec` and `mmsghdr` are plain C structs for which all-zero
        // bytes are a valid value (null pointers, zero lengths).
        let zero_iov: libc::iovec = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        // SAFETY: all-zero bytes are a valid `sockaddr_storage` (AF_UNSPEC).
        let zero_addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        RecvBatch {
            slot,
            bufs: vec![0; n * slot],
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
        self.recv_flags(fd, libc::MSG_WAITFORONE)
    }

    /// One `recvmmsg` that does not block: `WouldBlock` when nothing is queued.
    pub fn recv_nowait(&mut self, fd: RawFd) -> io::Result<usize> {
        self.recv_flags(fd, libc::MSG_DONTWAIT)
    }

    fn recv_flags(&mut self, fd: RawFd, flags: libc::c_int) -> io::Result<usize> {
        let n = self.hdrs.len();
        let slot = self.slot;
        let bufs = self.bufs.as_mut_ptr();
        let cmsgs = self.cmsgs.as_mut_ptr();
        for i in 0..n {
            // SAFETY: i < n and `bufs` holds n * slot bytes, `cmsgs` n * CMSG_WORDS words.
            let (buf, cmsg) = unsafe { (bufs.add(i * slot), cmsgs.add(i * CMSG_WORDS)) };
            self.iovecs[i] = libc::iovec {
                iov_base: buf.cast(),
                iov_len: slot,
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
                flags,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        self.filled = rc as usize;
        Ok(self.filled)
    }

    /// Datagram `i` of the last call: its bytes (at most the slot size) and
    /// its `SO_RXQ_OVFL` value, present once the socket has dropped something.
    pub fn get(&self, i: usize) -> (&[u8], Option<u32>) {
        assert!(i < self.filled, "datagram {i} of {}", self.filled);
        let len = (self.hdrs[i].msg_len as usize).min(self.slot);
        let bytes = &self.bufs[i * self.slot..i * self.slot + len];
        (bytes, self.cmsg_u32(i, libc::SOL_SOCKET, libc::SO_RXQ_OVFL))
    }

    /// The `UDP_GRO` segment size of buffer `i` of the last call: present
    /// when the kernel coalesced several datagrams of that size (the last
    /// one may be shorter) into it. Split it with [`segments`].
    pub fn gro_size(&self, i: usize) -> Option<usize> {
        assert!(i < self.filled, "datagram {i} of {}", self.filled);
        self.cmsg_u32(i, libc::SOL_UDP, UDP_GRO)
            .map(|v| v as usize)
            .filter(|&v| v > 0)
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

    fn cmsg_u32(&self, i: usize, level: libc::c_int, kind: libc::c_int) -> Option<u32> {
        let h = &self.hdrs[i].msg_hdr;
        let mut found = None;
        // SAFETY: `h` was filled by the kernel in the last recvmmsg: its
        // control pointer and (updated) length describe our aligned
        // `cmsgs` slot, so the CMSG_* macros stay inside it; the data of an
        // SO_RXQ_OVFL or UDP_GRO cmsg is one 32-bit integer, read unaligned.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                if (*c).cmsg_level == level && (*c).cmsg_type == kind {
                    found = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<u32>()));
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        found
    }
}

/// Splits a buffer received with `UDP_GRO` into the datagrams the kernel
/// coalesced: `gro_size` bytes each, the last one possibly shorter; without
/// a segment size (`None`, or one not below the length) the buffer is one
/// datagram (an empty buffer yields nothing: take it as it is).
pub fn segments(buf: &[u8], gro_size: Option<usize>) -> std::slice::Chunks<'_, u8> {
    let size = match gro_size {
        Some(s) if s > 0 && s < buf.len() => s,
        _ => buf.len().max(1),
    };
    buf.chunks(size)
}

/// Room for one `u16` cmsg (`UDP_SEGMENT`), in `u64`s for alignment.
const GSO_CMSG_WORDS: usize = 4;

/// Writes a `SOL_UDP`/`UDP_SEGMENT` cmsg carrying `size` into `space`
/// and returns its length.
fn put_segment_cmsg(space: &mut [u64; GSO_CMSG_WORDS], size: u16) -> usize {
    // SAFETY: CMSG_SPACE of two bytes is 24 on every Linux ABI, within the
    // 32 bytes of `space`.
    let len = unsafe { libc::CMSG_SPACE(2) } as usize;
    debug_assert!(len <= GSO_CMSG_WORDS * 8);
    // SAFETY: a zeroed `msghdr` whose control buffer is `space` (aligned
    // for cmsghdr, `len` bytes): CMSG_FIRSTHDR points at its start, and the
    // header plus two data bytes fit within `len`.
    unsafe {
        let mut m: libc::msghdr = std::mem::zeroed();
        m.msg_control = space.as_mut_ptr().cast();
        m.msg_controllen = len as _;
        let c = libc::CMSG_FIRSTHDR(&m);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(2) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), size);
    }
    len
}

/// One `sendmsg` of `buf` on a connected socket with `UDP_SEGMENT`: the
/// kernel sends it as datagrams of `segment` bytes, the last one shorter
/// when the length is not a multiple. Returns the bytes accepted.
pub fn send_segmented(fd: RawFd, buf: &[u8], segment: u16) -> io::Result<usize> {
    let mut space = [0u64; GSO_CMSG_WORDS];
    let clen = put_segment_cmsg(&mut space, segment);
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: all-zero is a valid `msghdr`; the iovec and control buffer
    // it points to live until the call returns, and the kernel only reads
    // them for a send.
    let rc = unsafe {
        let mut m: libc::msghdr = std::mem::zeroed();
        m.msg_iov = &mut iov;
        m.msg_iovlen = 1;
        m.msg_control = space.as_mut_ptr().cast();
        m.msg_controllen = clen as _;
        libc::sendmsg(fd, &m, 0)
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// A reusable `sendmmsg` batch of equal-sized datagrams on a connected
/// socket; with `segments > 1` every message carries that many datagrams
/// as one GSO send (`UDP_SEGMENT`).
pub struct SendBatch {
    bufs: Vec<u8>,
    size: usize,
    segments: usize,
    iovecs: Vec<libc::iovec>,
    cmsgs: Vec<[u64; GSO_CMSG_WORDS]>,
    hdrs: Vec<libc::mmsghdr>,
}

impl SendBatch {
    /// `n` datagrams of `size` bytes, zero-filled, one per message.
    pub fn new(n: usize, size: usize) -> SendBatch {
        SendBatch::with_gso(n, size, 1)
    }

    /// `n` messages of `segments` datagrams of `size` bytes (GSO when
    /// `segments > 1`; `segments * size` should stay within
    /// [`MAX_GSO_BYTES`], the caller checks).
    pub fn with_gso(n: usize, size: usize, segments: usize) -> SendBatch {
        let n = n.max(1);
        let segments = segments.max(1);
        // SAFETY: all-zero `iovec`/`mmsghdr` are valid values.
        let zero_iov: libc::iovec = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        SendBatch {
            bufs: vec![0; n * segments * size],
            size,
            segments,
            iovecs: vec![zero_iov; n],
            cmsgs: vec![[0; GSO_CMSG_WORDS]; n],
            hdrs: vec![zero_hdr; n],
        }
    }

    /// Datagrams in the batch (messages x segments).
    pub fn capacity(&self) -> usize {
        self.hdrs.len() * self.segments
    }

    /// Datagrams per message.
    pub fn segments(&self) -> usize {
        self.segments
    }

    /// The bytes of datagram `i`, to fill before sending.
    pub fn slot(&mut self, i: usize) -> &mut [u8] {
        &mut self.bufs[i * self.size..(i + 1) * self.size]
    }

    /// One `sendmmsg` of datagrams `from..to` (`from` a multiple of the
    /// segments per message; the last message may hold fewer); returns how
    /// many datagrams the kernel accepted (it may take fewer messages than
    /// asked, never part of one).
    pub fn send(&mut self, fd: RawFd, from: usize, to: usize) -> io::Result<usize> {
        let g = self.segments;
        assert!(from < to && to <= self.capacity() && from % g == 0);
        let (m0, m1) = (from / g, to.div_ceil(g));
        let base = self.bufs.as_mut_ptr();
        for m in m0..m1 {
            let first = m * g;
            let count = (to - first).min(g);
            self.iovecs[m] = libc::iovec {
                // SAFETY: first < capacity, `bufs` holds capacity * size bytes.
                iov_base: unsafe { base.add(first * self.size) }.cast(),
                iov_len: count * self.size,
            };
            let clen = if count > 1 {
                put_segment_cmsg(&mut self.cmsgs[m], self.size as u16)
            } else {
                0
            };
            let h = &mut self.hdrs[m].msg_hdr;
            h.msg_name = std::ptr::null_mut();
            h.msg_namelen = 0;
            h.msg_iov = &mut self.iovecs[m];
            h.msg_iovlen = 1;
            h.msg_control = if clen > 0 {
                self.cmsgs[m].as_mut_ptr().cast()
            } else {
                std::ptr::null_mut()
            };
            h.msg_controllen = clen as _;
            h.msg_flags = 0;
        }
        // SAFETY: headers m0..m1 are initialised and point into `bufs` and
        // `cmsgs`, which outlive the call; the socket is connected, so no address.
        let rc = unsafe {
            libc::sendmmsg(
                fd,
                self.hdrs.as_mut_ptr().add(m0),
                (m1 - m0) as libc::c_uint,
                0,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok((rc as usize * g).min(to - from))
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
