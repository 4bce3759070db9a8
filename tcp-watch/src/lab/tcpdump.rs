//! One `tcpdump -w` child capturing an interface inside a namespace.
//!
//! It is started in its own process group with `PR_SET_PDEATHSIG`, so it
//! dies with the thread that started it even if this process is killed;
//! [`Tcpdump::start`] returns once tcpdump says it is listening (frames
//! before that are not captured); [`Tcpdump::stop`] interrupts it (SIGINT,
//! so it writes its statistics) and reads them; drop kills it otherwise.
//! `--immediate-mode` and `-U` make it hand each frame to the file as it
//! comes, instead of a libpcap block at a time.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde::Serialize;

use crate::error::Error;

/// Longest wait for tcpdump to start listening or to exit.
const PATIENCE: Duration = Duration::from_secs(10);
/// Kernel capture buffer, KiB: a burst of a fast veth transfer fits.
const BUFFER_KIB: &str = "32768";

/// What tcpdump said about its capture when it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct CaptureStats {
    /// "N packets captured": written to the file.
    pub captured: u64,
    /// "N packets received by filter".
    pub received_by_filter: u64,
    /// "N packets dropped by kernel": lost by the capture, not the network.
    pub dropped_by_kernel: u64,
}

impl CaptureStats {
    /// The figures in tcpdump's closing lines.
    pub fn parse(lines: &[String]) -> CaptureStats {
        let mut s = CaptureStats::default();
        for line in lines {
            let mut words = line.trim().splitn(2, ' ');
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse() else { continue };
            match what {
                "packets captured" | "packet captured" => s.captured = n,
                "packets received by filter" | "packet received by filter" => {
                    s.received_by_filter = n;
                }
                "packets dropped by kernel" | "packet dropped by kernel" => {
                    s.dropped_by_kernel = n;
                }
                _ => {}
            }
        }
        s
    }
}

/// A running capture.
#[derive(Debug)]
pub struct Tcpdump {
    child: Child,
    /// stderr, a line at a time, from a reader thread.
    lines: mpsc::Receiver<String>,
    command: String,
}

impl Tcpdump {
    /// Starts capturing `dev` in namespace `ns` into `file`; returns once
    /// tcpdump listens.
    pub fn start(ns: &str, dev: &str, file: &Path) -> Result<Tcpdump, Error> {
        let file = file.to_string_lossy();
        let args = [
            "netns",
            "exec",
            ns,
            "tcpdump",
            "-i",
            dev,
            "-w",
            &file,
            "-U",
            "--immediate-mode",
            "-B",
            BUFFER_KIB,
            // Stay root: tcpdump opens the output file after dropping to
            // its own user, who may not write in the lab's directory.
            "-Z",
            "root",
            "-n",
        ];
        let command = format!("ip {}", args.join(" "));
        let failed = |reason: String| Error::Command {
            command: command.clone(),
            reason,
        };
        let mut cmd = Command::new("ip");
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        // SAFETY: prctl and getppid are async-signal-safe; nothing else
        // runs between fork and exec. `ip netns exec` execs tcpdump in
        // place, so the death signal (kept across exec) reaches tcpdump.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| failed(e.to_string()))?;
        let (tx, lines) = mpsc::channel();
        if let Some(stderr) = child.stderr.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let dump = Tcpdump {
            child,
            lines,
            command,
        };
        let mut said = Vec::new();
        loop {
            match dump.lines.recv_timeout(PATIENCE) {
                Ok(line) if line.contains("listening on") => return Ok(dump),
                Ok(line) => said.push(line),
                // Exited (stderr closed) or hung: drop kills it.
                Err(_) => {
                    return Err(Error::Command {
                        command: dump.command.clone(),
                        reason: format!("did not start: {}", said.join("; ")),
                    });
                }
            }
        }
    }

    /// The process id (the process group's too).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Interrupts tcpdump and returns its statistics.
    pub fn stop(mut self) -> Result<CaptureStats, Error> {
        self.signal(libc::SIGINT);
        let status = self.child.wait();
        let mut said = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(PATIENCE) {
            said.push(line);
        }
        match status {
            Ok(s) if s.success() => Ok(CaptureStats::parse(&said)),
            Ok(s) => Err(Error::Command {
                command: self.command.clone(),
                reason: format!("{s}: {}", said.join("; ")),
            }),
            Err(e) => Err(Error::Command {
                command: self.command.clone(),
                reason: e.to_string(),
            }),
        }
    }

    /// Sends `sig` to tcpdump's process group.
    fn signal(&self, sig: libc::c_int) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill has no memory preconditions; the group is ours
            // (process_group(0) made tcpdump its leader) and not yet reaped.
            unsafe { libc::kill(-pid, sig) };
        }
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn closing_lines_are_read() {
        let lines: Vec<String> = [
            "tcpdump: listening on a0, link-type EN10MB (Ethernet), snapshot length 262144 bytes",
            "4242 packets captured",
            "4250 packets received by filter",
            "8 packets dropped by kernel",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            CaptureStats::parse(&lines),
            CaptureStats {
                captured: 4242,
                received_by_filter: 4250,
                dropped_by_kernel: 8
            }
        );
        let one = ["1 packet captured".to_string()];
        assert_eq!(CaptureStats::parse(&one).captured, 1);
    }
}
