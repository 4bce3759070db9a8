//! SO_RCVBUF doubling and capping, SO_RCVBUFFORCE, and the SO_RXQ_OVFL cmsg
//! parsed from real drops.

use std::os::fd::AsRawFd;

use buffer_demo::mmsg::RecvBatch;
use buffer_demo::sockopt::{self, Force};
use socket2::{Domain, Protocol, Socket, Type};

fn udp() -> Socket {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    s
}

#[test]
fn granted_is_twice_the_request_under_rmem_max_and_capped_above() {
    let max = sockopt::rmem_max().expect("rmem_max readable");
    let small = (max / 2).min(65536);
    let r = sockopt::set_rcvbuf(&udp(), Some(small), false).unwrap();
    assert_eq!(r.granted, 2 * small, "{r}");
    assert_eq!(r.force, Force::NotAsked);
    let r = sockopt::set_rcvbuf(&udp(), Some(max * 2), false).unwrap();
    assert_eq!(r.granted, 2 * max, "{r}");
    assert!(r.to_string().contains("capped"), "{r}");
}

#[test]
fn force_passes_the_cap_or_says_why_not() {
    let max = sockopt::rmem_max().expect("rmem_max readable");
    let r = sockopt::set_rcvbuf(&udp(), Some(max * 2), true).unwrap();
    match &r.force {
        Force::Applied => assert_eq!(r.granted, 4 * max, "{r}"),
        Force::Refused(why) => {
            assert_eq!(r.granted, 2 * max, "{r}");
            assert!(!why.is_empty());
            eprintln!("SO_RCVBUFFORCE refused here (not CAP_NET_ADMIN): {why}");
        }
        Force::NotAsked => panic!("force was asked"),
    }
}

#[test]
fn rxq_ovfl_cmsg_matches_proc_drops() {
    let rx = udp();
    sockopt::set_rcvbuf(&rx, Some(1), false).unwrap();
    sockopt::enable_rxq_ovfl(&rx).unwrap();
    rx.set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let to = rx.local_addr().unwrap().as_socket().unwrap();
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // Loopback delivers inside send(): with a buffer of ~2 KiB, most of these are dropped at once.
    for _ in 0..200 {
        tx.send_to(&[7u8; 64], to).unwrap();
    }
    let mut batch = RecvBatch::new(64);
    let mut first_ovfl = None;
    let n = batch.recv(rx.as_raw_fd()).unwrap();
    for i in 0..n {
        first_ovfl = first_ovfl.or(batch.get(i).1);
    }
    // Drain, then one more datagram: it carries every drop so far.
    while let Ok(n) = {
        rx.set_nonblocking(true).unwrap();
        batch.recv(rx.as_raw_fd())
    } {
        assert!(n > 0);
    }
    rx.set_nonblocking(false).unwrap();
    tx.send_to(&[8u8; 64], to).unwrap();
    let n = batch.recv(rx.as_raw_fd()).unwrap();
    assert_eq!(n, 1);
    let (bytes, ovfl) = batch.get(0);
    assert_eq!(bytes, &[8u8; 64]);
    let drops = sockopt::proc_udp_drops(&rx).unwrap();
    assert!(drops > 100, "only {drops} drops");
    assert_eq!(ovfl, Some(drops as u32));
    assert!(first_ovfl.is_none_or(|v| u64::from(v) <= drops));
}
