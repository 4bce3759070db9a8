//! A network namespace for the sink, behind a veth pair (Linux, root).
//!
//! ```text
//!  host namespace                      namespace bdemo<k>
//!  blast ──> bdh<k> ═══════ veth ═══════ bds<k> ──> sink socket
//!            169.254.X.Y+1/30            169.254.X.Y+2/30
//!            [tbf qdisc, optional]
//! ```
//!
//! In its own namespace the sink's socket is the only UDP receiver, so the
//! namespace's `Udp: RcvbufErrors` counts its drops alone: a third witness
//! beside `SO_RXQ_OVFL` and `/proc/net/udp`. Link-local addresses keep the
//! pair off every real network. Commands are `ip` and `tc` from iproute2.
//!
//! Slot `k` (0..16256) names the namespace, both interfaces and the /30.
//! A run claims a slot with `ip netns add bdemo<k>`, which fails when the
//! name exists (an exclusive create in `/run/netns`), so two runs at once,
//! in any processes, never get the same slot; a slot whose /30 is already
//! on a host interface (someone else's, or a leftover) is given back and
//! the next one tried. Whatever this run created is deleted on drop, also
//! when a later setup step failed.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::Command;

use crate::error::{Error, Result};

/// Slots: one /30 each in 169.254.1.0 - 169.254.254.255.
const SLOTS: u32 = 254 * 64;
/// Slots tried before giving up.
const TRIES: u32 = 256;

/// A namespace with a veth pair to the host; removed on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    host_if: String,
    host_addr: Ipv4Addr,
    sink_addr: Ipv4Addr,
    /// This run created the veth pair (so drop deletes it).
    link_created: bool,
    slot: u32,
}

/// Why namespaces cannot be used here, or `None` when they can.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root (network namespaces need CAP_SYS_ADMIN)".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        Ok(_) | Err(_) => Some("`ip` (Debian package iproute2) is not installed".into()),
    }
}

/// Runs a command; `Err` carries its stderr.
fn run(args: &[&str]) -> Result<()> {
    output(args).map(|_| ())
}

/// Runs a command and returns its stdout.
fn output(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| Error::Command {
            command: args.join(" "),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            command: args.join(" "),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// The error says the name was taken.
fn exists(e: &Error) -> bool {
    matches!(e, Error::Command { detail, .. } if detail.contains("File exists"))
}

/// The addresses of slot `k`: (host end, sink end).
fn slot_addrs(k: u32) -> (Ipv4Addr, Ipv4Addr) {
    let (third, fourth) = (1 + k / 64, (k % 64) * 4);
    (
        Ipv4Addr::new(169, 254, third as u8, (fourth + 1) as u8),
        Ipv4Addr::new(169, 254, third as u8, (fourth + 2) as u8),
    )
}

/// A starting slot that differs between runs (not derived from the pid,
/// whose values repeat modulo the slot count).
fn first_slot() -> u32 {
    crate::loadgen::random_nonce().map_or(std::process::id(), |n| (n % u64::from(SLOTS)) as u32)
}

impl Netns {
    /// Creates the namespace and the veth pair; with `tbf_rate` (a `tc` rate
    /// such as `200mbit`) the host side gets a token-bucket qdisc.
    pub fn create(tbf_rate: Option<&str>) -> Result<Netns> {
        Netns::create_from(first_slot(), tbf_rate)
    }

    /// [`Netns::create`], looking for a free slot from `first` on (modulo
    /// the slot count): two runs that start at the same slot still get
    /// different ones.
    pub fn create_from(first: u32, tbf_rate: Option<&str>) -> Result<Netns> {
        if let Some(why) = unavailable() {
            return Err(Error::NetnsUnavailable { reason: why });
        }
        for i in 0..TRIES {
            let k = (first % SLOTS + i) % SLOTS;
            if let Some(ns) = Netns::claim(k, tbf_rate)? {
                return Ok(ns);
            }
        }
        Err(Error::NetnsUnavailable {
            reason: format!(
                "no free slot among {TRIES} tried (bdemo<k> namespaces or their addresses in use)"
            ),
        })
    }

    /// Tries slot `k`: `None` when it is taken (nothing of it left behind).
    fn claim(k: u32, tbf_rate: Option<&str>) -> Result<Option<Netns>> {
        let name = format!("bdemo{k}");
        let sink_if = format!("bds{k}");
        let (host_addr, sink_addr) = slot_addrs(k);
        match run(&["ip", "netns", "add", &name]) {
            Ok(()) => {}
            Err(e) if exists(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
        // From here on, dropping `ns` deletes what was made.
        let mut ns = Netns {
            name,
            host_if: format!("bdh{k}"),
            host_addr,
            sink_addr,
            link_created: false,
            slot: k,
        };
        let host = format!("{host_addr}/30");
        let sink = format!("{sink_addr}/30");
        let taken = output(&["ip", "-4", "-o", "addr", "show", "to", &host])?;
        if !taken.trim().is_empty() {
            tracing::info!(
                slot = k,
                on = taken.trim(),
                "address range in use, next slot"
            );
            return Ok(None);
        }
        // Fixed, locally administered MACs, so that the host side's
        // neighbour entry can be set before the first datagram: a stream
        // that starts while ARP is unresolved loses what overflows the
        // neighbour queue, before the socket, where the books cannot see it.
        let mac = |end: u8| format!("02:62:64:{:02x}:{:02x}:{end:02x}", k >> 8, k & 0xff);
        let (host_mac, sink_mac) = (mac(1), mac(2));
        match run(&[
            "ip",
            "link",
            "add",
            &ns.host_if,
            "address",
            &host_mac,
            "type",
            "veth",
            "peer",
            "name",
            &sink_if,
            "address",
            &sink_mac,
        ]) {
            Ok(()) => ns.link_created = true,
            Err(e) if exists(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
        let n = ns.name.as_str();
        run(&["ip", "link", "set", &sink_if, "netns", n])?;
        run(&["ip", "addr", "add", &host, "dev", &ns.host_if])?;
        run(&["ip", "link", "set", &ns.host_if, "up"])?;
        run(&[
            "ip",
            "neigh",
            "replace",
            &sink_addr.to_string(),
            "lladdr",
            &sink_mac,
            "dev",
            &ns.host_if,
            "nud",
            "permanent",
        ])?;
        run(&["ip", "-n", n, "addr", "add", &sink, "dev", &sink_if])?;
        run(&["ip", "-n", n, "link", "set", &sink_if, "up"])?;
        run(&["ip", "-n", n, "link", "set", "lo", "up"])?;
        if let Some(rate) = tbf_rate {
            run(&[
                "tc",
                "qdisc",
                "add",
                "dev",
                &ns.host_if,
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
        tracing::info!(name = %ns.name, %host_addr, %sink_addr, "namespace up");
        Ok(Some(ns))
    }

    /// The slot this namespace holds (its name is `bdemo<slot>`).
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// The host end's interface name.
    pub fn host_if(&self) -> &str {
        &self.host_if
    }

    /// The namespace's name (for `ip netns exec`, [`in_netns`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sink's address inside the namespace, with `port`.
    pub fn sink_addr(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.sink_addr, port))
    }

    /// The host end's address.
    pub fn host_addr(&self) -> Ipv4Addr {
        self.host_addr
    }

    /// Packets the host side's qdisc dropped (`tc -s qdisc`), if readable.
    pub fn qdisc_drops(&self) -> Option<u64> {
        let out = Command::new("tc")
            .args(["-s", "qdisc", "show", "dev", &self.host_if])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let after = text.split("dropped ").nth(1)?;
        after
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting one end of the pair deletes both, at once; deleting the
        // namespace alone would leave the pair until its last socket closed.
        if self.link_created
            && let Err(e) = run(&["ip", "link", "del", &self.host_if])
        {
            tracing::warn!(error = %e, "veth pair not removed");
        }
        if let Err(e) = run(&["ip", "netns", "del", &self.name]) {
            tracing::warn!(error = %e, "namespace not removed");
        }
    }
}

/// Runs `f` on a fresh thread that joined network namespace `name` (a file
/// in `/run/netns`); sockets created there belong to that namespace for
/// their whole life, whichever thread uses them later.
pub fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    let path = format!("/run/netns/{name}");
    let file = std::fs::File::open(&path).map_err(Error::io(format!("open {path}")))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: `file` is an open namespace file for the call's
            // duration; setns only changes this thread's namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(Error::Socket {
                    op: "setns(CLONE_NEWNET)",
                    source: std::io::Error::last_os_error(),
                });
            }
            Ok(f())
        })
        .join()
        .expect("namespace thread panicked")
    })
}
