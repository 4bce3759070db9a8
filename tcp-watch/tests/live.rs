//! Live capture (`tcp_watch::live`): the filter through its public API,
//! and, as root, real TCP connections on the loopback device of a network
//! namespace the test makes (and removes, even on failure), captured with
//! a port filter and read back as a pcap stream by the same reader,
//! decoder and reassembler as a file. Root-only tests say why they were
//! skipped.

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tcp_watch::capture::{CaptureReader, LinkType};
use tcp_watch::lab::netns::{in_netns, run};
use tcp_watch::live::{Filter, LiveCapture, LiveStats, Tee};
use tcp_watch::packet::{Decoder, for_each_segment};
use tcp_watch::reassembly::{CloseReason, Config, Dir, Event, GapCause, Reassembler};
use tcp_watch::{Error, FlowKey, Segment};
use test_support::{Netns, is_root};

/// How long a condition is polled before the test gives up on it: far
/// beyond what a loaded 2-core machine needs.
const DEADLINE: Duration = Duration::from_secs(30);

/// One TCP segment as the test compares a stream with its `--write` copy.
type SegmentId = (FlowKey, u32, u32, u8, u32, u16, Option<(u32, u32)>);

fn id(s: &Segment<'_>) -> SegmentId {
    let t = s.options.timestamps;
    (s.key, s.seq, s.ack, s.flags.0, s.payload_len, s.window, t)
}

/// What the reading side of a capture produced.
struct Captured {
    linktype: LinkType,
    events: Vec<Event>,
    segments: Vec<SegmentId>,
    timestamps: Vec<u64>,
    /// Each frame's bytes.
    frames: Vec<Vec<u8>>,
    /// The `--write` copy of the stream.
    copy: Vec<u8>,
    stats: LiveStats,
    old_bytes: u64,
}

/// Reads `live` to its end as the pipeline would (through a [`Tee`] into a
/// buffer), setting `closed` once a stream ended with both FINs.
fn read_all(live: LiveCapture, closed: &AtomicBool) -> Captured {
    let mut tee = Tee::new(live, Vec::new());
    let mut reader = CaptureReader::new("live", &mut tee).unwrap();
    let mut decoder = Decoder::new();
    let mut reassembler = Reassembler::new(Config::default());
    let mut events = Vec::new();
    let mut segments = Vec::new();
    let mut timestamps = Vec::new();
    let mut frames = Vec::new();
    let mut linktype = None;
    while let Some(frame) = reader.next_frame().unwrap() {
        linktype = Some(frame.linktype);
        timestamps.push(frame.ts.0);
        frames.push(frame.captured.to_vec());
        let Some(seg) = decoder.decode(&frame) else {
            continue;
        };
        segments.push(id(&seg));
        let before = events.len();
        reassembler.segment(&seg, &mut events);
        if events[before..]
            .iter()
            .any(|e| matches!(e, Event::Closed(end) if end.reason == CloseReason::Fin))
        {
            closed.store(true, Ordering::Relaxed);
        }
    }
    let old_bytes = reassembler.stats().old_bytes;
    reassembler.finish(&mut events);
    drop(reader);
    let (live, copy) = tee.into_inner();
    Captured {
        linktype: linktype.unwrap_or(live.linktype()),
        events,
        segments,
        timestamps,
        frames,
        copy,
        stats: live.stats(),
        old_bytes,
    }
}

/// Polls `done` until it holds or [`DEADLINE`] passes.
fn wait_for(done: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > DEADLINE {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// A connection from a client to `listener`: the client sends `payload`
/// and closes; the server reads it all and closes. Returns what the server
/// read.
fn exchange(listener: TcpListener, payload: &[u8]) -> Vec<u8> {
    let to = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    let mut c = TcpStream::connect(to).unwrap();
    c.write_all(payload).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    server.join().unwrap()
}

/// What one run of [`capture_two_connections`] shows.
struct Run {
    payload: Vec<u8>,
    kept_port: u16,
    other_port: u16,
    /// Whether the capture's socket filter was left in place.
    kernel_filter: bool,
    captured: Captured,
}

/// In namespace `ns`: two listeners on `ip`; a capture on `interface`
/// keeping only the first one's port (`extra` ANDed to the filter); a
/// connection to the second, then one to the first carrying a known
/// payload; the capture stopped once the reader saw that stream close.
/// Without `kernel_filter`, the socket filter that skips loopback copies
/// is detached, so that the capture skips them itself.
fn capture_two_connections(
    ns: &Netns,
    interface: &str,
    ip: IpAddr,
    extra: &str,
    kernel_filter: bool,
) -> Run {
    in_netns(ns.name(), || {
        let kept = TcpListener::bind(SocketAddr::new(ip, 0)).unwrap();
        let other = TcpListener::bind(SocketAddr::new(ip, 0)).unwrap();
        let (kept_port, other_port) = (
            kept.local_addr().unwrap().port(),
            other.local_addr().unwrap().port(),
        );
        let filter = Filter::parse(&format!("tcp and port {kept_port}{extra}")).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let live = LiveCapture::open(interface, filter, 0, stop.clone()).unwrap();
        if !kernel_filter {
            let none: libc::c_int = 0;
            // SAFETY: a valid socket and an option value of the size given.
            let rc = unsafe {
                libc::setsockopt(
                    live.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_DETACH_FILTER,
                    (&none as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        }
        let closed = Arc::new(AtomicBool::new(false));
        let reader = {
            let closed = closed.clone();
            std::thread::spawn(move || read_all(live, &closed))
        };
        // The excluded connection goes first: the kept one's close then
        // proves the capture has looked at every frame of it.
        assert_eq!(exchange(other, b"not this one"), b"not this one");
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        assert_eq!(exchange(kept, &payload), payload);
        let seen = wait_for(|| closed.load(Ordering::Relaxed));
        stop.store(true, Ordering::Relaxed);
        let captured = reader.join().unwrap();
        assert!(seen, "the capture never saw the stream close");
        Run {
            payload,
            kept_port,
            other_port,
            kernel_filter,
            captured,
        }
    })
    .unwrap()
}

/// The checks every run must pass: the payload reassembles exactly from
/// the stream (and from its `--write` copy), each segment was captured
/// once, and the other connection was filtered out.
fn assert_run(test: &str, run: &Run) {
    let c = &run.captured;
    eprintln!(
        "{test}: {} segments, {:?}, {} bytes of pcap, {} bytes sent again by TCP",
        c.segments.len(),
        c.stats,
        c.copy.len(),
        c.old_bytes
    );
    let mut c2s = Vec::new();
    let mut streams = Vec::new();
    for e in &c.events {
        match e {
            Event::Opened(info) => streams.push(*info),
            Event::Data {
                dir, offset, bytes, ..
            } => {
                assert_eq!(*dir, Dir::ClientToServer, "the server sent nothing");
                assert_eq!(*offset as usize, c2s.len());
                c2s.extend_from_slice(bytes);
            }
            Event::Gap(g) => panic!("{test}: a gap in a loopback capture: {g:?}"),
            _ => {}
        }
    }
    assert_eq!(
        streams.len(),
        1,
        "{test}: only the kept connection: {streams:?}"
    );
    assert_eq!(streams[0].server.port(), run.kept_port);
    assert!(
        c2s == run.payload,
        "{test}: {} bytes reassembled of {}",
        c2s.len(),
        run.payload.len()
    );
    for (key, ..) in &c.segments {
        let ports = [key.src.port(), key.dst.port()];
        assert!(
            ports.contains(&run.kept_port),
            "{test}: {key:?} passed the filter"
        );
        assert!(!ports.contains(&run.other_port));
    }

    // Once each: loopback hands every packet over twice, as two identical
    // frames. (Distinct transmissions differ: in the IPv4 id, the TCP
    // timestamps, the window or the SACK blocks; a repeated segment may
    // still be a real retransmission, such as a tail-loss probe on a
    // loaded machine.)
    let mut distinct = c.frames.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        c.frames.len(),
        "{test}: a frame captured twice"
    );
    // A connection is at least SYN, SYN-ACK, ACK, data, FIN, ACK, FIN, ACK.
    assert!(c.segments.len() >= 8, "{test}: {:?}", c.segments);
    assert_eq!(c.stats.matched, c.segments.len() as u64);
    if run.kernel_filter {
        assert_eq!(
            c.stats.loopback_copies, 0,
            "{test}: the socket filter skips them"
        );
    } else {
        assert!(
            c.stats.loopback_copies >= c.stats.matched,
            "{test}: the outgoing copies were not the ones skipped: {:?}",
            c.stats
        );
    }
    assert!(c.stats.frames >= c.stats.matched + c.stats.loopback_copies);
    assert_eq!(c.stats.kernel_drops, 0);
    assert_eq!(
        c.stats.truncated, 0,
        "{test}: 64 KiB loopback frames fit the default snap length"
    );

    // Kernel timestamps: in order and now-ish.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    assert!(
        c.timestamps.windows(2).all(|w| w[0] <= w[1]),
        "{test}: time went back"
    );
    assert!(
        c.timestamps
            .iter()
            .all(|&t| t <= now && now - t < 600_000_000_000)
    );

    // The `--write` copy is a pcap file of the same segments.
    let mut again = CaptureReader::new("copy", &c.copy[..]).unwrap();
    let mut copied = Vec::new();
    let stats = for_each_segment(&mut again, |s| {
        copied.push(id(s));
    })
    .unwrap();
    assert_eq!(copied, c.segments);
    assert_eq!(stats.capture.truncated + stats.capture.corrupt, 0);
}

#[test]
fn a_loopback_connection_is_captured_once_and_filtered() {
    let test = "a_loopback_connection_is_captured_once_and_filtered";
    let Some(ns) = Netns::new(test) else { return };
    let run = capture_two_connections(&ns, "lo", "127.0.0.1".parse().unwrap(), "", true);
    assert_eq!(run.captured.linktype, LinkType::ETHERNET);
    assert_run(test, &run);
}

#[test]
fn any_gives_cooked_frames_over_ipv6_and_loopback_copies_are_skipped_without_the_kernel() {
    let test =
        "any_gives_cooked_frames_over_ipv6_and_loopback_copies_are_skipped_without_the_kernel";
    let Some(ns) = Netns::new(test) else { return };
    let run = capture_two_connections(
        &ns,
        "any",
        "::1".parse().unwrap(),
        " and ip6 and host ::1",
        false,
    );
    assert_eq!(run.captured.linktype, LinkType::LINUX_SLL);
    assert_run(test, &run);
}

/// Sends `frame` as it is on device `interface` of the calling thread's
/// namespace, through a packet socket.
fn send_raw(interface: &str, frame: &[u8]) {
    let name = std::ffi::CString::new(interface).unwrap();
    // SAFETY: plain calls with valid arguments; `addr` and `frame` outlive
    // them, and the socket is closed once.
    unsafe {
        let index = libc::if_nametoindex(name.as_ptr());
        assert_ne!(index, 0, "{interface}");
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = index as libc::c_int;
        addr.sll_halen = 6;
        let n = libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        );
        assert_eq!(
            n,
            frame.len() as isize,
            "{}",
            std::io::Error::last_os_error()
        );
        libc::close(fd);
    }
}

/// An Ethernet frame (802.1Q tag `vlan`, when given) carrying an IPv4
/// header and a bare TCP header from port 40000 to `port`.
fn tcp_frame(vlan: Option<u16>, port: u16) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    if let Some(id) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&(0x2000 | id).to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&[0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&[10, 99, 0, 1, 10, 99, 0, 2]);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&port.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    f
}

#[test]
fn vlan_tags_taken_off_by_the_kernel_are_put_back() {
    let test = "vlan_tags_taken_off_by_the_kernel_are_put_back";
    let (Some(a), Some(b)) = (Netns::new(test), Netns::new(test)) else {
        return;
    };
    // A's v0 <-> B's v1. The receiving kernel moves an 802.1Q tag out of
    // the frame (into the packet's metadata) before packet sockets see it,
    // whether or not a VLAN device exists; the capture must put it back.
    for args in [
        vec![
            "ip",
            "-n",
            a.name(),
            "link",
            "add",
            "v0",
            "type",
            "veth",
            "peer",
            "name",
            "v1",
            "netns",
            b.name(),
        ],
        vec!["ip", "-n", a.name(), "link", "set", "v0", "up"],
        vec!["ip", "-n", b.name(), "link", "set", "v1", "up"],
    ] {
        run(&args).unwrap();
    }
    let sent = [
        tcp_frame(Some(100), 5555),
        tcp_frame(None, 5555),
        tcp_frame(Some(7), 5556),
    ];
    let (bytes, stats) = in_netns(b.name(), || {
        let stop = Arc::new(AtomicBool::new(false));
        let live = LiveCapture::open("v1", Filter::parse("port 5555").unwrap(), 0, stop.clone());
        let live = live.unwrap();
        let handle = live.stats_handle();
        let reader = read_raw(live);
        in_netns(a.name(), || sent.iter().for_each(|f| send_raw("v0", f))).unwrap();
        let arrived = wait_for(|| handle.get().frames >= 3);
        stop.store(true, Ordering::Relaxed);
        let bytes = reader.join().unwrap();
        assert!(arrived, "{:?}", handle.get());
        (bytes, handle.get())
    })
    .unwrap();
    eprintln!("{test}: {stats:?}");
    let mut reader = CaptureReader::new("vlan", &bytes[..]).unwrap();
    let mut got = Vec::new();
    while let Some(frame) = reader.next_frame().unwrap() {
        assert_eq!(frame.original_len as usize, frame.captured.len());
        got.push(frame.captured.to_vec());
    }
    // The frames of port 5555, byte for byte as sent; port 5556's left out.
    assert_eq!(got, sent[..2].to_vec());
}

/// Reads `live` to its end on a thread of its own.
fn read_raw(live: LiveCapture) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut live = live;
        live.read_to_end(&mut bytes).unwrap();
        bytes
    })
}

#[test]
fn snap_length_cuts_frames_and_a_filter_can_keep_nothing() {
    let test = "snap_length_cuts_frames_and_a_filter_can_keep_nothing";
    let Some(ns) = Netns::new(test) else { return };
    let ((none, none_stats), (cut, cut_stats)) = in_netns(ns.name(), || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        // Two captures at once on one device, each with its own filter.
        let none = LiveCapture::open("lo", Filter::parse("ip6").unwrap(), 128, stop.clone());
        let none = none.unwrap();
        assert_eq!(none.snaplen(), 128);
        let filter = Filter::parse(&format!("port {port}")).unwrap();
        let cut = LiveCapture::open("lo", filter, 100, stop.clone()).unwrap();
        let handles = [none.stats_handle(), cut.stats_handle()];
        let readers = [read_raw(none), read_raw(cut)];
        let payload = vec![7u8; 5000];
        assert_eq!(exchange(listener, &payload), payload);
        // The connection's frames are being looked at; the rest are
        // drained at the stop.
        for h in &handles {
            assert!(wait_for(|| h.get().frames >= 6), "{:?}", h.get());
        }
        stop.store(true, Ordering::Relaxed);
        let [none, cut] = readers.map(|r| r.join().unwrap());
        ((none, handles[0].get()), (cut, handles[1].get()))
    })
    .unwrap();
    eprintln!("{test}: {none_stats:?}, {cut_stats:?}");

    // Only the file header: nanosecond magic, snap length 128, Ethernet.
    assert_eq!(none.len(), 24, "{none_stats:?}");
    assert_eq!(&none[0..4], &0xa1b2_3c4du32.to_le_bytes());
    assert_eq!(&none[16..20], &128u32.to_le_bytes());
    assert_eq!(&none[20..24], &1u32.to_le_bytes());
    assert_eq!(none_stats.matched, 0);
    // At least SYN, SYN-ACK, ACK, data, two FINs, ACK.
    assert!(
        none_stats.loopback_copies == 0 && none_stats.frames >= 6,
        "{none_stats:?}"
    );

    // Cut to 100 bytes: the data frames say how long they were, and the
    // bytes not captured are a gap, never invented.
    let mut reader = CaptureReader::new("cut", &cut[..]).unwrap();
    let (mut frames, mut longer) = (0, 0);
    let mut decoder = Decoder::new();
    let mut reassembler = Reassembler::new(Config::default());
    let mut events = Vec::new();
    while let Some(frame) = reader.next_frame().unwrap() {
        frames += 1;
        assert!(frame.captured.len() <= 100);
        longer += u64::from(frame.original_len as usize > frame.captured.len());
        if let Some(seg) = decoder.decode(&frame) {
            reassembler.segment(&seg, &mut events);
        }
    }
    reassembler.finish(&mut events);
    assert_eq!(frames, cut_stats.matched);
    assert_eq!(longer, cut_stats.truncated);
    assert!(longer > 0, "{cut_stats:?}");
    let (mut delivered, mut not_captured) = (0, 0);
    for e in &events {
        match e {
            Event::Data { bytes, .. } => delivered += bytes.len() as u64,
            Event::Gap(g) => {
                assert_eq!(g.cause, GapCause::SnapLength, "{g:?}");
                not_captured += g.len;
            }
            _ => {}
        }
    }
    assert_eq!(delivered + not_captured, 5000, "{events:?}");
    assert!(not_captured > 0);
}

/// Drops CAP_NET_RAW from this thread's effective set (capabilities are
/// per thread on Linux, so the rest of the test process keeps it).
fn drop_net_raw() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_NET_RAW: u32 = 13;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data words, as
    // capget(2) documents; pid 0 is the calling thread.
    unsafe {
        assert_eq!(
            libc::syscall(
                libc::SYS_capget,
                &mut header as *mut Header,
                data.as_mut_ptr()
            ),
            0
        );
        data[0].effective &= !(1 << CAP_NET_RAW);
        assert_eq!(
            libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()),
            0
        );
    }
}

#[test]
fn without_cap_net_raw_the_error_says_so() {
    let e = std::thread::spawn(|| {
        if is_root() {
            drop_net_raw();
        }
        let stop = Arc::new(AtomicBool::new(false));
        LiveCapture::open("lo", Filter::all(), 0, stop).unwrap_err()
    })
    .join()
    .unwrap();
    let text = e.to_string();
    eprintln!("without CAP_NET_RAW: {text}");
    assert!(matches!(e, Error::Settings(_)), "{e:?}");
    assert!(
        text.contains("live capture needs root or CAP_NET_RAW (interface `lo`"),
        "{text}"
    );
}

#[test]
fn an_unknown_interface_is_named_with_a_hint() {
    let stop = Arc::new(AtomicBool::new(false));
    let e = LiveCapture::open("tw-nosuch0", Filter::all(), 0, stop).unwrap_err();
    let text = e.to_string();
    eprintln!("unknown interface: {text}");
    assert!(
        text.contains("`tw-nosuch0`") && text.contains("ip link"),
        "{text}"
    );
}

#[test]
fn filters_parse_and_errors_name_the_token() {
    let key = FlowKey {
        src: "192.168.1.5:51000".parse().unwrap(),
        dst: "93.184.216.34:443".parse().unwrap(),
    };
    for (text, expected) in [
        ("", true),
        ("tcp", true),
        ("port 443 and host 93.184.216.34", true),
        ("src host 192.168.1.5 and dst port 443", true),
        ("dst host 192.168.1.5", false),
        ("not port 443", false),
        ("port 80 or (port 443 and not src port 51000)", false),
        ("port 80 or port 443 and not src port 51001", true),
        ("ip6 or host 2001:db8::1", false),
    ] {
        let f: Filter = text.parse().unwrap();
        assert_eq!(f.matches(&key), expected, "{text}");
    }
    for (text, token) in [
        ("port http", "`http` at column 6"),
        ("host example.com", "`example.com` at column 6"),
        ("port 80 and or port 81", "`or` at column 13"),
        ("dst 10.0.0.1", "`10.0.0.1` at column 5"),
        ("port 80 (", "`(` at column 9"),
    ] {
        let e = Filter::parse(text).unwrap_err().to_string();
        assert!(e.contains(token) && e.contains("expected"), "{text}: {e}");
        assert!(e.contains(text), "{text}: {e}");
    }
}
