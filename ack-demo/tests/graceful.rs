//! 1000 acknowledged sessions closed with the handshake, one after another,
//! and the kernel's own count of resets sent (`Tcp: OutRsts` in
//! `/proc/net/snmp`) does not move. Alone in its test binary so that no
//! other test's deliberate resets are counted.

mod common;

use std::thread;
use std::time::Duration;

use ack_demo::client::{self, ClientSettings};
use ack_demo::server::{Server, ServerSettings};
use common::{lines, temp_dir};

/// `Tcp: OutRsts` of this network namespace.
fn out_rsts() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap();
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let names = tcp.next().unwrap().split_whitespace();
    let values = tcp.next().unwrap().split_whitespace();
    let (_, v) = names
        .zip(values)
        .find(|(n, _)| *n == "OutRsts")
        .expect("OutRsts in /proc/net/snmp");
    v.parse().unwrap()
}

#[test]
fn a_thousand_graceful_closes_send_no_reset() {
    let out = temp_dir("graceful").join("out.txt");
    let mut settings = ServerSettings::new(out.clone());
    settings.heartbeat = Duration::from_secs(5);
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), settings).unwrap();
    let addr = server.local_addr();
    let stop = server.stop_handle();
    let serving = thread::spawn(move || server.run());

    let before = out_rsts();
    for session in 0..1000 {
        let mut s = ClientSettings::new(addr);
        s.session = session;
        s.count = 2;
        s.size = 8;
        s.heartbeat = Duration::from_secs(5);
        let report = client::run(&s);
        assert!(report.completed, "session {session}: {:?}", report.error);
        assert!(report.close_handshake_ms.is_some());
    }
    let after = out_rsts();
    stop.stop();
    serving.join().unwrap();
    assert_eq!(lines(&out).len(), 2000);
    assert_eq!(after - before, 0, "resets sent during 1000 graceful closes");
}
