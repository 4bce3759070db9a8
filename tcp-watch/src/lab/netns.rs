//! The lab's three network namespaces and the commands run in them.
//!
//! ```text
//!   twl<pid>x<k>a (sender A)  twl<pid>x<k>r (router R)       twl<pid>x<k>b (receiver B)
//!   a0 198.18.0.1/30 ═══ r0 198.18.0.2/30  r1 198.19.0.1/30 ═══ b0 198.19.0.2/30
//!                            nft forward: loss, blackhole
//!                            tbf on r1 (optional)
//! ```
//!
//! The addresses are from 198.18.0.0/15, the range RFC 2544 sets aside for
//! benchmarking; every interface lives inside a namespace of this run, so
//! nothing here can meet the host's networks or another run. A run claims
//! its names with `ip netns add`, which fails when the name exists (an
//! exclusive create in `/run/netns`); deleting a namespace deletes its veth
//! ends, so [`Namespaces`]' drop removes everything it made, however the
//! run ends short of the process being killed. For that case the names
//! carry the process id: a claim first deletes the lab namespaces of
//! processes that no longer exist.
//! The same pattern as `buffer-demo`'s `netns` module, with the links made
//! directly inside the namespaces (no host-side names to collide).

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::Error;

/// A's address (the sender).
pub const A_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// R's address on A's link.
pub const RA_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// R's address on B's link.
pub const RB_ADDR: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
/// B's address (the receiver).
pub const B_ADDR: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
/// Interfaces: A's, R's toward A, R's toward B, B's.
pub const A_IF: &str = "a0";
/// R's interface toward A.
pub const RA_IF: &str = "r0";
/// R's interface toward B.
pub const RB_IF: &str = "r1";
/// B's interface.
pub const B_IF: &str = "b0";
/// Values of `k` tried before giving up.
const TRIES: u32 = 64;
/// Start of every lab namespace's name.
const PREFIX: &str = "twl";

/// Runs a command; its stdout, or `Error::Command` with its stderr.
pub fn run(args: &[&str]) -> Result<String, Error> {
    run_with_input(args, None)
}

/// [`run`], writing `input` to the command's stdin.
pub fn run_with_input(args: &[&str], input: Option<&str>) -> Result<String, Error> {
    let failed = |reason: String| Error::Command {
        command: args.join(" "),
        reason,
    };
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| failed(format!("writing its input: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(failed(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The three namespaces of one run; deleted on drop.
#[derive(Debug)]
pub struct Namespaces {
    /// A, R, B.
    names: Vec<String>,
}

impl Namespaces {
    /// Claims three fresh namespaces (nothing configured yet).
    pub fn claim() -> Result<Namespaces, Error> {
        reap_stale();
        let pid = std::process::id();
        for _ in 0..TRIES {
            let k = next();
            let mut ns = Namespaces { names: Vec::new() };
            let mut taken = false;
            for role in ["a", "r", "b"] {
                let name = format!("{PREFIX}{pid}x{k}{role}");
                match run(&["ip", "netns", "add", &name]) {
                    Ok(_) => ns.names.push(name),
                    Err(Error::Command { reason, .. }) if reason.contains("File exists") => {
                        taken = true;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            if !taken {
                return Ok(ns);
            }
            // `ns` drops here, deleting the ones this try did claim.
        }
        Err(Error::Settings(format!(
            "no free lab namespace name among {TRIES} tried ({PREFIX}{pid}x<k>a/r/b in use)"
        )))
    }

    /// The sender's namespace.
    pub fn a(&self) -> &str {
        &self.names[0]
    }

    /// The router's namespace.
    pub fn r(&self) -> &str {
        &self.names[1]
    }

    /// The receiver's namespace.
    pub fn b(&self) -> &str {
        &self.names[2]
    }

    /// All three names, A, R, B.
    pub fn names(&self) -> Vec<String> {
        self.names.clone()
    }

    /// Builds the path: links, offloads off, addresses, routes, static
    /// neighbours, forwarding, SACK per end; no IPv6 (its neighbour and
    /// router solicitations would be the only foreign frames in the
    /// captures).
    pub fn configure(&self, sack: bool) -> Result<(), Error> {
        let (a, r, b) = (self.a(), self.r(), self.b());
        let sack = format!("net.ipv4.tcp_sack={}", u8::from(sack));
        for ns in [a, r, b] {
            sysctl(ns, "net.ipv6.conf.all.disable_ipv6=1")?;
            sysctl(ns, "net.ipv6.conf.default.disable_ipv6=1")?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        sysctl(r, "net.ipv4.ip_forward=1")?;
        sysctl(a, &sack)?;
        sysctl(b, &sack)?;
        // Fixed, locally administered MACs and permanent neighbour entries:
        // no ARP, so the first segments are never queued behind a
        // resolution (or lost from its queue) before the capture sees them.
        let mac = |n: u8| format!("02:74:77:00:00:{n:02x}");
        let links = [
            (a, A_IF, A_ADDR, mac(1), r, RA_IF, RA_ADDR, mac(2)),
            (r, RB_IF, RB_ADDR, mac(3), b, B_IF, B_ADDR, mac(4)),
        ];
        for (ns1, if1, ip1, mac1, ns2, if2, ip2, mac2) in &links {
            run(&[
                "ip", "-n", ns1, "link", "add", if1, "address", mac1, "type", "veth", "peer",
                "name", if2, "address", mac2, "netns", ns2,
            ])?;
            for (ns, dev, ip, peer_ip, peer_mac) in
                [(ns1, if1, ip1, ip2, mac2), (ns2, if2, ip2, ip1, mac1)]
            {
                // Wire-sized segments: with TSO/GSO a capture shows 64 KiB
                // super-segments and the kernel counts each as many.
                run(&[
                    "ip", "netns", "exec", ns, "ethtool", "-K", dev, "tso", "off", "gso", "off",
                    "gro", "off",
                ])?;
                run(&[
                    "ip",
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{ip}/30"),
                    "dev",
                    dev,
                ])?;
                run(&["ip", "-n", ns, "link", "set", dev, "up"])?;
                run(&[
                    "ip",
                    "-n",
                    ns,
                    "neigh",
                    "replace",
                    &peer_ip.to_string(),
                    "lladdr",
                    peer_mac,
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ])?;
            }
        }
        run(&[
            "ip",
            "-n",
            a,
            "route",
            "add",
            "default",
            "via",
            &RA_ADDR.to_string(),
        ])?;
        run(&[
            "ip",
            "-n",
            b,
            "route",
            "add",
            "default",
            "via",
            &RB_ADDR.to_string(),
        ])?;
        Ok(())
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.names {
            if let Err(e) = run(&["ip", "netns", "del", name]) {
                tracing::warn!(error = %e, "lab namespace not removed");
            }
        }
    }
}

/// Sets one sysctl inside namespace `ns` (`net.*` keys are per namespace).
fn sysctl(ns: &str, setting: &str) -> Result<(), Error> {
    run(&["ip", "netns", "exec", ns, "sysctl", "-qw", setting]).map(|_| ())
}

/// A number no earlier claim of this process drew.
fn next() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Deletes lab namespaces whose process is gone (it was killed before its
/// drop guards ran). Best effort: another run may be reaping them too.
fn reap_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner(&name) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!(%name, pid, "deleting a lab namespace its process left");
            let _ = run(&["ip", "netns", "del", &name]);
        }
    }
}

/// The process id in a lab namespace's name (`twl<pid>x<k><role>`).
fn owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, k) = rest.split_once('x')?;
    let valid = k.len() > 1
        && k[..k.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && k.ends_with(['a', 'r', 'b']);
    if valid { pid.parse().ok() } else { None }
}

/// Runs `f` on a fresh thread that joined network namespace `name`: sockets
/// it creates belong to that namespace for their whole life, whichever
/// thread uses them later.
pub fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> Result<T, Error> {
    let path = format!("/run/netns/{name}");
    let file = std::fs::File::open(&path).map_err(|source| Error::Io {
        path: path.clone().into(),
        source,
    })?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: `file` is an open namespace file for the call's
            // duration; setns changes only this thread's namespace.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(Error::Io {
                    path: path.clone().into(),
                    source: std::io::Error::last_os_error(),
                });
            }
            Ok(f())
        })
        .join()
        .map_err(|_| Error::Settings(format!("a thread in namespace {name} panicked")))?
    })
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn only_lab_names_have_an_owner() {
        assert_eq!(owner("twl4242x7a"), Some(4242));
        assert_eq!(owner("twl4242x12b"), Some(4242));
        assert_eq!(owner("twl4242x7"), None);
        assert_eq!(owner("twl4242xa"), None);
        assert_eq!(owner("twlx7a"), None);
        assert_eq!(owner("bdemo12"), None);
        assert_eq!(owner("twl12x3q"), None);
    }
}
