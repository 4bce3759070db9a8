//! The small-MTU path: two network namespaces joined by a veth pair with
//! MTU 576 and a `tbf` rate limit on the sender's side (root only).
//!
//! ```text
//!   sdm<pid>x<k>s (sender)                 sdm<pid>x<k>r (receiver)
//!   sd0 198.18.57.1/30  ══ MTU 576 ══  sd1 198.18.57.2/30
//!   tbf on sd0; TSO, GSO and GRO off on both ends (wire-sized segments)
//! ```
//!
//! Both ends run in this process: a thread moves itself into a namespace
//! with `setns(2)` (a thread's network namespace is its own) before it makes
//! its socket, and a socket stays in the namespace it was made in. Dropping
//! the [`SmallMtuPath`] deletes both namespaces and the veth pair with them;
//! the names carry the process id, and namespaces left by a process that was
//! killed are deleted by the next run.
//! The addresses are from 198.18.0.0/15 (RFC 2544's benchmarking range) and
//! exist only inside the namespaces.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use tcp_watch::lab::netns;

use crate::Error;

/// The path's MTU, in bytes: an MSS of 536 (524 with timestamps).
pub const MTU: u32 = 576;
/// The sender's address.
pub const SENDER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 57, 1);
/// The receiver's address.
pub const RECEIVER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 57, 2);
const SENDER_IF: &str = "sd0";
const RECEIVER_IF: &str = "sd1";

/// Why the path cannot be made here, or `None` when it can: root, and the
/// `ip`, `tc` and `ethtool` commands.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces); run as root to see it".to_owned());
    }
    for (tool, package) in [
        ("ip", "iproute2"),
        ("tc", "iproute2"),
        ("ethtool", "ethtool"),
    ] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Some(format!("needs `{tool}` (apt-get install {package})"));
        }
    }
    None
}

/// Two namespaces joined by a veth pair with MTU 576; deleted on drop.
#[derive(Debug)]
pub struct SmallMtuPath {
    sender: String,
    receiver: String,
}

impl SmallMtuPath {
    /// Makes the namespaces, the link, the addresses and the `tbf` limit of
    /// `rate_mbit` Mbit/s on the sender's side.
    ///
    /// # Errors
    /// A command failed; the error names it and what it printed.
    pub fn new(rate_mbit: u32) -> Result<SmallMtuPath, Error> {
        reap_stale();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let base = format!(
            "sdm{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let (sender, receiver) = (format!("{base}s"), format!("{base}r"));
        netns::run(&["ip", "netns", "add", &sender])?;
        let mut path = SmallMtuPath {
            sender,
            receiver: String::new(),
        };
        netns::run(&["ip", "netns", "add", &receiver])?;
        path.receiver = receiver;
        path.configure(rate_mbit)?;
        Ok(path)
    }

    fn configure(&self, rate_mbit: u32) -> Result<(), Error> {
        let (s, r) = (self.sender.as_str(), self.receiver.as_str());
        let mtu = MTU.to_string();
        netns::run(&[
            "ip",
            "-n",
            s,
            "link",
            "add",
            SENDER_IF,
            "type",
            "veth",
            "peer",
            "name",
            RECEIVER_IF,
            "netns",
            r,
        ])?;
        for (ns, dev, addr) in [(s, SENDER_IF, SENDER_ADDR), (r, RECEIVER_IF, RECEIVER_ADDR)] {
            netns::run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
            netns::run(&["ip", "-n", ns, "link", "set", dev, "mtu", &mtu])?;
            // Without this the sender hands the link 64 KiB super-segments
            // and the receiver reads them whole.
            netns::run(&[
                "ip", "netns", "exec", ns, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro",
                "off",
            ])?;
            netns::run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/30"),
                "dev",
                dev,
            ])?;
            netns::run(&["ip", "-n", ns, "link", "set", dev, "up"])?;
        }
        netns::run(&[
            "ip",
            "netns",
            "exec",
            s,
            "tc",
            "qdisc",
            "add",
            "dev",
            SENDER_IF,
            "root",
            "tbf",
            "rate",
            &format!("{rate_mbit}mbit"),
            "burst",
            "16kb",
            "latency",
            "100ms",
        ])?;
        Ok(())
    }

    /// The sender's namespace.
    pub fn sender(&self) -> &str {
        &self.sender
    }

    /// The receiver's namespace.
    pub fn receiver(&self) -> &str {
        &self.receiver
    }

    /// A description for the table: `MTU 576, tbf 50 Mbit/s`.
    pub fn describe(rate_mbit: u32) -> String {
        format!("veth MTU {MTU}, tbf {rate_mbit} Mbit/s")
    }
}

impl Drop for SmallMtuPath {
    fn drop(&mut self) {
        for ns in [&self.sender, &self.receiver] {
            if !ns.is_empty()
                && let Err(e) = netns::run(&["ip", "netns", "del", ns])
            {
                tracing::warn!("namespace {ns} not removed: {e}");
            }
        }
    }
}

/// Deletes the namespaces of runs whose process no longer exists (killed
/// before its drop could run): `sdm<pid>x...` with no `/proc/<pid>`.
fn reap_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix("sdm")
            .and_then(|rest| rest.split_once('x'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
            && netns::run(&["ip", "netns", "del", &name]).is_ok()
        {
            tracing::info!("removed namespace {name}, left by process {pid} which is gone");
        }
    }
}

/// Moves the calling thread into namespace `name` (`/run/netns/NAME`);
/// sockets it makes afterwards live there. Other threads are not moved.
///
/// # Errors
/// The namespace does not exist, or `setns` failed.
pub fn enter(name: &str) -> Result<(), Error> {
    let file = File::open(format!("/run/netns/{name}"))
        .map_err(|e| Error::io(format!("opening namespace {name}"), e))?;
    // SAFETY: the descriptor is open for the call's duration; setns only
    // changes the calling thread's network namespace.
    let done = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if done != 0 {
        return Err(Error::io(
            format!("entering namespace {name} (setns)"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}
