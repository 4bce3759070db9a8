//! A network namespace for the sink, behind a veth pair (Linux, root).
//!
//! ```text
//!  host namespace                      namespace bd<pid>n<k>
//!  blast ──> bdh<pid>n<k> ═══ veth ═══ bds<pid>n<k> ──> sink socket
//!            169.254.X.Y+1/30          169.254.X.Y+2/30
//!            [tbf qdisc, optional]
//! ```
//!
//! In its own namespace the sink's socket is the only UDP receiver, so the
//! namespace's `Udp: RcvbufErrors` counts its drops alone: a third witness
//! beside `SO_RXQ_OVFL` and `/proc/net/udp`. Link-local addresses keep the
//! pair off every real network; the namespace and the pair are deleted on
//! drop. Commands are `ip` and `tc` from iproute2.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Result};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A namespace with a veth pair to the host; removed on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    host_if: String,
    host_addr: Ipv4Addr,
    sink_addr: Ipv4Addr,
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

fn run(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| Error::Command {
            command: args.join(" "),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
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

impl Netns {
    /// Creates the namespace and the veth pair; with `tbf_rate` (a `tc` rate
    /// such as `200mbit`) the host side gets a token-bucket qdisc.
    pub fn create(tbf_rate: Option<&str>) -> Result<Netns> {
        if let Some(why) = unavailable() {
            return Err(Error::NetnsUnavailable { reason: why });
        }
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("bd{pid}n{k}");
        let host_if = format!("bdh{pid}n{k}");
        let sink_if = format!("bds{pid}n{k}");
        if host_if.len() > 15 {
            return Err(Error::Config(format!("interface name {host_if} too long")));
        }
        // A /30 per (pid, k) inside 169.254.1.0 - 169.254.254.255.
        let idx = (pid.wrapping_mul(8).wrapping_add(k)) % (254 * 64);
        let (third, fourth) = (1 + idx / 64, (idx % 64) * 4);
        let host_addr = Ipv4Addr::new(169, 254, third as u8, (fourth + 1) as u8);
        let sink_addr = Ipv4Addr::new(169, 254, third as u8, (fourth + 2) as u8);
        run(&["ip", "netns", "add", &name])?;
        let ns = Netns {
            name,
            host_if,
            host_addr,
            sink_addr,
        };
        let n = ns.name.as_str();
        let host = format!("{host_addr}/30");
        let sink = format!("{sink_addr}/30");
        run(&[
            "ip",
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &sink_if,
        ])?;
        run(&["ip", "link", "set", &sink_if, "netns", n])?;
        run(&["ip", "addr", "add", &host, "dev", &ns.host_if])?;
        run(&["ip", "link", "set", &ns.host_if, "up"])?;
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
        Ok(ns)
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
        // Deleting the namespace destroys its veth end, and with it the pair.
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
