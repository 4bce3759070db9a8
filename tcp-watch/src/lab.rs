//! The lab: makes loss happen on a real TCP path and reads what the kernel
//! says about it, so that the analysis can be checked against the sender's
//! own counters (issue 10, "The lab"; `DESIGN.md`, "Passive TCP analysis").
//!
//! ```text
//!   A (sender) ──veth── R (router) ──veth── B (receiver)
//!   tcpdump a0          nft forward: drop a random          tcpdump b0
//!   /proc counters      fraction of A→B TCP; blackhole
//!                       for a while; tbf rate (optional)
//! ```
//!
//! [`run`] builds three namespaces ([`netns`]), starts a capture at A's and
//! at B's interface ([`tcpdump`]), runs one bulk transfer A→B
//! ([`transfer`]), and returns a [`LabRun`]: the captures' paths and drops,
//! the sender kernel's counter deltas ([`counters`]), R's drops, both ends'
//! byte counts and sha256, and the completeness check the comparison rests
//! on: A's capture holds `TcpOutSegs + TcpRetransSegs` segments from A
//! (`OutSegs` excludes retransmissions), counted by [`scan`]. This module is
//! the I/O driver only; what the captures mean is [`crate::analysis`]'s.
//!
//! Everything a run creates is removed however it ends: the namespaces
//! (with their veths and nft tables) by a drop guard, the tcpdump children
//! by theirs and by `PR_SET_PDEATHSIG`.

pub mod account;
pub mod counters;
pub mod netns;
pub mod scan;
pub mod tcpdump;
pub mod transfer;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use counters::KernelCounters;
pub use tcpdump::CaptureStats;

use crate::error::Error;
use netns::{A_ADDR, A_IF, B_ADDR, B_IF, Namespaces, RA_IF, RB_IF, run as cmd};

/// R's loss rule draws `numgen random mod LOSS_SCALE`: loss resolution.
pub const LOSS_SCALE: u32 = 1000;
/// Longest blackhole accepted (the connection's own timeouts are 30 s).
const MAX_BLACKHOLE: Duration = Duration::from_secs(20);
/// Longest wait for the end marker to reach both capture files.
const MARKER_PATIENCE: Duration = Duration::from_secs(10);
/// nft table the lab makes in R.
const TABLE: &str = "twlab";

/// What one lab run does.
#[derive(Debug, Clone, PartialEq)]
pub struct LabConfig {
    /// Fraction of A→B TCP packets R drops at random, in `[0, 1)`, rounded
    /// to 1/[`LOSS_SCALE`]. SYNs are spared, so a run's time is not
    /// dominated by the 1 s initial RTO.
    pub loss: f64,
    /// A `tc` rate for R's link to B (`tbf`), e.g. `"100mbit"`.
    pub rate: Option<String>,
    /// Drop everything R forwards for this long, once A has written half of
    /// the data, so the retransmission timer's backoff shows.
    pub blackhole: Option<Duration>,
    /// `net.ipv4.tcp_sack` in A and B.
    pub sack: bool,
    /// Bytes A sends.
    pub bytes: u64,
    /// Seed of the payload stream.
    pub seed: u64,
    /// Where the captures go (created if missing); `None`: a fresh
    /// directory under the system's temporary directory.
    pub dir: Option<PathBuf>,
}

impl Default for LabConfig {
    fn default() -> LabConfig {
        LabConfig {
            loss: 0.01,
            rate: None,
            blackhole: None,
            sack: true,
            bytes: 4 << 20,
            seed: 1,
            dir: None,
        }
    }
}

/// One capture and what was counted in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capture {
    /// The pcap file.
    pub path: PathBuf,
    /// The interface captured.
    pub interface: String,
    /// tcpdump's own statistics (its drops are the capture's, not the
    /// network's).
    pub stats: CaptureStats,
    /// TCP segments from A in the file.
    pub tcp_from_a: u64,
    /// TCP segments from B in the file.
    pub tcp_from_b: u64,
    /// `tcp_from_a` as `tcpdump -r` counts it: a second reader's word.
    pub tcp_from_a_by_tcpdump: Option<u64>,
    /// tcpdump's process id (gone once the run returns).
    pub pid: u32,
}

/// Packets R dropped, by its nft counters and its qdisc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct RouterDrops {
    /// The random-loss rule (A→B TCP only).
    pub loss: u64,
    /// The blackhole, A→B.
    pub blackhole_a_to_b: u64,
    /// The blackhole, B→A.
    pub blackhole_b_to_a: u64,
    /// The `tbf` qdisc on R's link to B (0 without a rate).
    pub tbf: u64,
}

impl RouterDrops {
    /// Every A→B packet R did not deliver.
    pub fn a_to_b(&self) -> u64 {
        self.loss + self.blackhole_a_to_b + self.tbf
    }
}

/// The transfer as its two ends saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transfer {
    /// Bytes A's application wrote.
    pub bytes_sent: u64,
    /// Bytes B's application read.
    pub bytes_received: u64,
    /// sha256 of what A wrote.
    pub sender_sha256: String,
    /// sha256 of what B read.
    pub receiver_sha256: String,
    /// From connect to both sockets closed, seconds.
    pub duration_s: f64,
}

/// Whether the captures are complete, the premise of every comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CaptureCheck {
    /// `TcpOutSegs + TcpRetransSegs`: segments A's kernel sent.
    pub sent_by_a: u64,
    /// Segments from A in A's capture.
    pub seen_at_a: u64,
    /// Segments from A in B's capture.
    pub seen_at_b: u64,
    /// `seen_at_a == sent_by_a`, and tcpdump dropped nothing.
    pub a_complete: bool,
    /// `seen_at_a - seen_at_b` equals R's A→B drops: B's capture missed
    /// nothing that R let through.
    pub b_complete: bool,
}

/// Everything one lab run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabRun {
    /// The namespaces used (A, R, B; deleted once the run returns).
    pub namespaces: Vec<String>,
    /// R's loss rule, in 1/[`LOSS_SCALE`].
    pub loss_per_mille: u32,
    /// SACK on in A and B.
    pub sack: bool,
    /// The blackhole's length, seconds (0: none).
    pub blackhole_s: f64,
    /// R's rate limit, if any.
    pub rate: Option<String>,
    /// The capture at A's interface.
    pub capture_a: Capture,
    /// The capture at B's interface.
    pub capture_b: Capture,
    /// Changes of A's kernel counters over the run.
    pub kernel: KernelCounters,
    /// What R dropped.
    pub router: RouterDrops,
    /// The transfer.
    pub transfer: Transfer,
    /// Completeness of the captures.
    pub check: CaptureCheck,
}

/// Why the lab cannot run here with `config`, or `None`.
pub fn unavailable(config: &LabConfig) -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some(
            "the lab needs root: it creates network namespaces, veth pairs and nft rules and \
             captures with tcpdump (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_NET_RAW); run it as root"
                .into(),
        );
    }
    let mut tools = vec![
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("tcpdump", "tcpdump"),
        ("ethtool", "ethtool"),
    ];
    if config.rate.is_some() {
        tools.push(("tc", "iproute2"));
    }
    let missing: Vec<String> = tools
        .iter()
        .filter(|(tool, _)| !on_path(tool))
        .map(|(tool, package)| format!("`{tool}` (Debian package {package})"))
        .collect();
    (!missing.is_empty()).then(|| format!("the lab needs {}", missing.join(", ")))
}

/// Whether `tool` is an executable in a `PATH` directory (or the sbin ones,
/// which a non-login root shell may lack).
fn on_path(tool: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin"])
        .any(|dir| Path::new(dir).join(tool).is_file())
}

/// Runs the lab once (root; see [`unavailable`]).
pub fn run(config: &LabConfig) -> Result<LabRun, Error> {
    if let Some(why) = unavailable(config) {
        return Err(Error::Settings(why));
    }
    let loss_per_mille = loss_rule(config.loss)?;
    if config.bytes == 0 {
        return Err(Error::Settings("the lab needs --bytes above 0".into()));
    }
    if config.blackhole.is_some_and(|d| d > MAX_BLACKHOLE) {
        return Err(Error::Settings(format!(
            "a blackhole of at most {} s (the transfer gives up after {} s without progress)",
            MAX_BLACKHOLE.as_secs(),
            transfer::STALL.as_secs()
        )));
    }
    if let Some(rate) = &config.rate
        && !(rate.starts_with(|c: char| c.is_ascii_digit())
            && rate.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'))
    {
        return Err(Error::Settings(format!(
            "rate {rate:?}: a tc rate such as 100mbit or 5mbps"
        )));
    }
    let dir = match &config.dir {
        Some(d) => d.clone(),
        None => {
            std::env::temp_dir().join(format!("tcp-watch-lab-{}-{}", std::process::id(), unique()))
        }
    };
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;

    // Declared first, so dropped last: the captures die before their
    // namespaces do.
    let ns = Namespaces::claim()?;
    ns.configure(config.sack)?;
    router_rules(&ns, loss_per_mille, config.rate.as_deref())?;
    let path_a = dir.join("a.pcap");
    let path_b = dir.join("b.pcap");
    let dump_a = tcpdump::Tcpdump::start(ns.a(), A_IF, &path_a)?;
    let dump_b = tcpdump::Tcpdump::start(ns.b(), B_IF, &path_b)?;
    let (pid_a, pid_b) = (dump_a.pid(), dump_b.pid());

    let listener = netns::in_netns(ns.b(), || TcpListener::bind((B_ADDR, 0)))?
        .map_err(|e| Error::Settings(format!("lab receiver: bind: {e}")))?;
    let to = listener
        .local_addr()
        .map_err(|e| Error::Settings(format!("lab receiver: {e}")))?;
    let (marker_tx, marker_rx) = marker_sockets(&ns)?;
    let read_counters =
        || netns::in_netns(ns.a(), KernelCounters::read_this_thread)?.map_err(Error::Settings);
    let before = read_counters()?;

    let started = Instant::now();
    let stream = netns::in_netns(ns.a(), || transfer::connect(to))??;
    let (sent, received) = std::thread::scope(|s| {
        let receiver = s.spawn(|| transfer::receive(listener));
        let (tell, told) = mpsc::channel();
        let (go, wait) = mpsc::channel();
        let halfway = config.blackhole.map(|_| (tell, wait));
        let sender = s.spawn(|| transfer::send(stream, config.bytes, config.seed, halfway));
        let hole = match config.blackhole {
            // Err: the sender stopped before halfway; its error says why.
            Some(d) if told.recv().is_ok() => blackhole(&ns, d, go),
            _ => Ok(()),
        };
        let joined = |h: std::thread::ScopedJoinHandle<'_, Result<transfer::End, Error>>| {
            h.join()
                .map_err(|_| Error::Settings("a lab transfer thread panicked".into()))?
        };
        let sent = joined(sender);
        let received = joined(receiver);
        hole.and(sent).and_then(|s| Ok((s, received?)))
    })?;
    let duration_s = started.elapsed().as_secs_f64();
    let kernel = read_counters()?.since(before);

    let marker = format!("tcp-watch lab end {}", ns.a());
    flush_captures(&marker_tx, &marker_rx, marker.as_bytes(), &path_a, &path_b)?;
    let stats_a = dump_a.stop()?;
    let stats_b = dump_b.stop()?;
    let router = router_drops(&ns, config.rate.is_some())?;

    let capture_a = capture(&path_a, A_IF, stats_a, pid_a, marker.as_bytes())?;
    let capture_b = capture(&path_b, B_IF, stats_b, pid_b, marker.as_bytes())?;
    let sent_by_a = kernel.out_segs + kernel.retrans_segs;
    let check = CaptureCheck {
        sent_by_a,
        seen_at_a: capture_a.tcp_from_a,
        seen_at_b: capture_b.tcp_from_a,
        a_complete: capture_a.tcp_from_a == sent_by_a && stats_a.dropped_by_kernel == 0,
        b_complete: capture_a.tcp_from_a.checked_sub(capture_b.tcp_from_a) == Some(router.a_to_b())
            && stats_b.dropped_by_kernel == 0,
    };
    Ok(LabRun {
        namespaces: ns.names(),
        loss_per_mille,
        sack: config.sack,
        blackhole_s: config.blackhole.map_or(0.0, |d| d.as_secs_f64()),
        rate: config.rate.clone(),
        capture_a,
        capture_b,
        kernel,
        router,
        transfer: Transfer {
            bytes_sent: sent.bytes,
            bytes_received: received.bytes,
            sender_sha256: sent.sha256,
            receiver_sha256: received.sha256,
            duration_s,
        },
        check,
    })
}

/// R's loss rule threshold for fraction `loss`.
fn loss_rule(loss: f64) -> Result<u32, Error> {
    if !(0.0..1.0).contains(&loss) {
        return Err(Error::Settings(format!(
            "loss {loss}: a fraction in [0, 1) (0.01 is 1 %)"
        )));
    }
    // In range: the product is below LOSS_SCALE.
    Ok((loss * f64::from(LOSS_SCALE)).round() as u32)
}

/// The longest IPv4 packet A sends without data: 20 bytes of IP, 20 of TCP
/// and 12 of timestamps. The loss rule drops only longer ones, so that every
/// drop is data the sender must retransmit (a dropped pure ACK, such as A's
/// last ACK of B's FIN, would be repaired by B and never counted in A's
/// `TcpRetransSegs`).
const MAX_CONTROL_IP_LEN: u32 = 52;

/// R's nft table (loss rule, empty blackhole chain, named counters) and
/// the optional tbf qdisc. The forward hook sees wire-sized packets (the
/// offloads are off; an output hook would see GSO super-segments).
fn router_rules(ns: &Namespaces, per_mille: u32, rate: Option<&str>) -> Result<(), Error> {
    let loss = if per_mille > 0 {
        format!(
            "iifname \"{RA_IF}\" oifname \"{RB_IF}\" meta l4proto tcp tcp flags & syn == 0 \
             ip length > {MAX_CONTROL_IP_LEN} \
             numgen random mod {LOSS_SCALE} < {per_mille} counter name loss drop"
        )
    } else {
        String::new()
    };
    let rules = format!(
        "table inet {TABLE} {{\n\
         counter loss {{}}\ncounter hole_ab {{}}\ncounter hole_ba {{}}\n\
         chain blackhole {{}}\n\
         chain forward {{\ntype filter hook forward priority 0; policy accept;\n\
         jump blackhole\n{loss}\n}}\n}}\n"
    );
    netns::run_with_input(
        &["ip", "netns", "exec", ns.r(), "nft", "-f", "-"],
        Some(&rules),
    )?;
    if let Some(rate) = rate {
        cmd(&[
            "tc",
            "-n",
            ns.r(),
            "qdisc",
            "add",
            "dev",
            RB_IF,
            "root",
            "tbf",
            "rate",
            rate,
            "burst",
            "64kb",
            "latency",
            "50ms",
        ])?;
    }
    Ok(())
}

/// Blackholes R for `d`: the drop rules go in, `go` lets the sender on,
/// and after `d` the chain is flushed. The sleep *is* the blackhole.
fn blackhole(ns: &Namespaces, d: Duration, go: mpsc::Sender<()>) -> Result<(), Error> {
    let nft = ["ip", "netns", "exec", ns.r(), "nft", "-f", "-"];
    let rules = format!(
        "add rule inet {TABLE} blackhole iifname \"{RA_IF}\" counter name hole_ab drop\n\
         add rule inet {TABLE} blackhole counter name hole_ba drop\n"
    );
    let installed = netns::run_with_input(&nft, Some(&rules));
    let _ = go.send(());
    installed?;
    std::thread::sleep(d);
    netns::run_with_input(&nft, Some(&format!("flush chain inet {TABLE} blackhole\n")))?;
    Ok(())
}

/// R's counters after the run.
fn router_drops(ns: &Namespaces, tbf: bool) -> Result<RouterDrops, Error> {
    let table = cmd(&[
        "ip",
        "netns",
        "exec",
        ns.r(),
        "nft",
        "list",
        "table",
        "inet",
        TABLE,
    ])?;
    let get = |name: &str| {
        named_counter(&table, name)
            .ok_or_else(|| Error::Settings(format!("nft counter {name} not found in R")))
    };
    let tbf = if tbf {
        let text = cmd(&["tc", "-n", ns.r(), "-s", "qdisc", "show", "dev", RB_IF])?;
        qdisc_drops(&text)
            .ok_or_else(|| Error::Settings(format!("no drop count in tc's output: {text}")))?
    } else {
        0
    };
    Ok(RouterDrops {
        loss: get("loss")?,
        blackhole_a_to_b: get("hole_ab")?,
        blackhole_b_to_a: get("hole_ba")?,
        tbf,
    })
}

/// Packets of named counter `name` in `nft list table` output.
fn named_counter(table: &str, name: &str) -> Option<u64> {
    let head = format!("counter {name} {{");
    let mut lines = table.lines().skip_while(|l| l.trim() != head).skip(1);
    let mut words = lines.next()?.split_whitespace();
    (words.next()? == "packets").then_some(())?;
    words.next()?.parse().ok()
}

/// "dropped N" in `tc -s qdisc show` output.
fn qdisc_drops(text: &str) -> Option<u64> {
    let after = text.split("dropped ").nth(1)?;
    after
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// A UDP socket in A and one in B, for the end marker.
fn marker_sockets(ns: &Namespaces) -> Result<(UdpSocket, UdpSocket), Error> {
    let bind = |name: &str, addr| {
        netns::in_netns(name, || UdpSocket::bind(SocketAddr::from((addr, 0))))?
            .map_err(|e| Error::Settings(format!("lab marker socket: {e}")))
    };
    Ok((bind(ns.a(), A_ADDR)?, bind(ns.b(), B_ADDR)?))
}

/// Sends the end marker A→B until both captures hold it. The captures
/// write each frame as it comes, in order, so with the marker in a file
/// every frame before it is there too: then stopping loses nothing.
fn flush_captures(
    tx: &UdpSocket,
    rx: &UdpSocket,
    marker: &[u8],
    a: &Path,
    b: &Path,
) -> Result<(), Error> {
    let to = rx
        .local_addr()
        .map_err(|e| Error::Settings(format!("lab marker socket: {e}")))?;
    let deadline = Instant::now() + MARKER_PATIENCE;
    let seen = |path: &Path| scan::tail_contains(path, marker, 4096);
    while Instant::now() < deadline {
        tx.send_to(marker, to)
            .map_err(|e| Error::Settings(format!("lab marker: send: {e}")))?;
        // Polling the files: no event says tcpdump wrote a frame.
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(20));
            if seen(a) && seen(b) {
                return Ok(());
            }
        }
    }
    Err(Error::Settings(format!(
        "the end marker did not reach both captures within {} s",
        MARKER_PATIENCE.as_secs()
    )))
}

/// Counts one stopped capture.
fn capture(
    path: &Path,
    interface: &str,
    stats: CaptureStats,
    pid: u32,
    marker: &[u8],
) -> Result<Capture, Error> {
    let open = || {
        std::fs::File::open(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let bad = |reason: String| Error::Capture {
        what: path.display().to_string(),
        reason,
    };
    let from_a = scan::scan(open()?, A_ADDR, marker).map_err(bad)?;
    let from_b = scan::scan(open()?, B_ADDR, marker).map_err(bad)?;
    let file = path.to_string_lossy();
    let filter = format!("ip src {A_ADDR} and tcp");
    let by_tcpdump = cmd(&["tcpdump", "-r", &file, "-nn", &filter])
        .ok()
        .map(|out| out.lines().count() as u64);
    Ok(Capture {
        path: path.to_path_buf(),
        interface: interface.to_string(),
        stats,
        tcp_from_a: from_a.tcp_from,
        tcp_from_b: from_b.tcp_from,
        tcp_from_a_by_tcpdump: by_tcpdump,
        pid,
    })
}

/// A number no other run of this process has.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn named_counters_are_read_from_nft_listing() {
        let table = "table inet twlab {\n\tcounter loss {\n\t\tpackets 42 bytes 63000\n\t}\n\
                     \tcounter hole_ab {\n\t\tpackets 0 bytes 0\n\t}\n\tchain forward {\n\
                     \t\tnumgen random mod 1000 < 10 counter name \"loss\" drop\n\t}\n}\n";
        assert_eq!(named_counter(table, "loss"), Some(42));
        assert_eq!(named_counter(table, "hole_ab"), Some(0));
        assert_eq!(named_counter(table, "hole_ba"), None);
        let tc = "qdisc tbf 8001: root refcnt 2 rate 100Mbit burst 64Kb lat 50ms\n \
                  Sent 123 bytes 4 pkt (dropped 17, overlimits 3 requeues 0)\n";
        assert_eq!(qdisc_drops(tc), Some(17));
    }

    #[test]
    fn settings_are_checked_before_anything_is_made() {
        assert_eq!(loss_rule(0.015).unwrap(), 15);
        assert_eq!(loss_rule(0.0).unwrap(), 0);
        assert!(loss_rule(1.0).is_err() && loss_rule(-0.1).is_err());
        assert!(loss_rule(f64::NAN).is_err());
        let e = run(&LabConfig {
            rate: Some("1mbit; reboot".into()),
            ..LabConfig::default()
        })
        .unwrap_err();
        assert!(matches!(e, Error::Settings(_)), "{e}");
    }
}
