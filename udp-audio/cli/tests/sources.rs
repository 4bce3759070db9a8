//! Which sender `udp-audio recv` plays, over real sockets on 127.0.0.1: a stranger's
//! datagram before the stream, a stranger copying the stream's SSRC, a pinned `--source`,
//! and junk that must not keep a finished receiver alive. The stranger is a second socket.
//! Processes are synchronised on the lines they print and on their exit, never on sleeps
//! (the only sleeps pace the datagrams sent).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::*;

const RATE: u32 = 16000;
const FRAMES_PER_PACKET: usize = 320; // 20 ms at 16 kHz
const PT: u8 = 96;
const SSRC: u32 = 0x1234_abcd;
const STRANGER_SSRC: u32 = 0x0bad_f00d;

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

fn local() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

/// The packets of `signal` with SSRC `ssrc`, sequence numbers from `seq0`.
fn packets(signal: &[i16], ssrc: u32, seq0: u16, ts0: u32) -> Vec<Vec<u8>> {
    signal
        .chunks(FRAMES_PER_PACKET)
        .enumerate()
        .map(|(k, c)| {
            rtp(
                PT,
                seq0.wrapping_add(k as u16),
                ts0.wrapping_add((k * FRAMES_PER_PACKET) as u32),
                ssrc,
                c,
            )
        })
        .collect()
}

/// Sends `packets` from `sock` to `to` four times faster than real time on absolute
/// deadlines (every packet is far ahead of its playout time at 200 ms latency); `extra(k)`
/// is called before packet `k` to mix other datagrams in.
fn send_paced(sock: &UdpSocket, to: SocketAddr, packets: &[Vec<u8>], mut extra: impl FnMut(usize)) {
    let start = Instant::now();
    for (k, p) in packets.iter().enumerate() {
        if let Some(wait) =
            (start + Duration::from_millis(5 * k as u64)).checked_duration_since(Instant::now())
        {
            std::thread::sleep(wait);
        }
        extra(k);
        sock.send_to(p, to).unwrap();
    }
}

fn recv_args(out: &str) -> Vec<String> {
    [
        "--rate",
        "16000",
        "--channels",
        "1",
        "--latency",
        "200",
        "--conceal",
        "silence",
        "--idle-timeout",
        "1",
        "--out",
        out,
    ]
    .map(String::from)
    .to_vec()
}

/// The source in the report's `sources` list with this SSRC and address.
fn source(report: &Value, ssrc: u32, addr: SocketAddr) -> &Value {
    report["sources"]
        .as_array()
        .unwrap_or_else(|| panic!("no sources list in {report}"))
        .iter()
        .find(|x| x["ssrc"] == ssrc && x["address"] == addr.to_string())
        .unwrap_or_else(|| panic!("SSRC {ssrc:#x} from {addr} not in the sources of {report}"))
}

fn assert_exact(out: &std::path::Path, signal: &[i16]) {
    let (got, rate, channels) = read_samples(out);
    assert_eq!((rate, channels), (RATE, 1));
    assert_eq!(got.len(), signal.len(), "output length");
    let first_diff = got.iter().zip(signal).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "output differs from the signal sent");
}

/// One RTP datagram from another SSRC and socket 0.1 s before the real stream: on probation
/// it is held, the real stream passes probation first and is chosen, all 150 of its packets
/// are played, and the report lists both sources and which one was chosen.
#[test]
fn a_stranger_first_does_not_capture_the_receiver() {
    let dir = scratch("sources-stranger-first");
    let out = dir.join("out.wav");
    let signal = write_signal(&dir.join("in.wav"), RATE, 1, 3.0); // 150 packets
    let args = recv_args(s(&out));
    let recv = Listening::recv(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (real, stranger) = (local(), local());
    let (real_addr, stranger_addr) = (real.local_addr().unwrap(), stranger.local_addr().unwrap());

    let noise: Vec<i16> = (0..FRAMES_PER_PACKET as i32)
        .map(|i| (i * 97 % 20000) as i16)
        .collect();
    stranger
        .send_to(&rtp(PT, 4242, 99_999, STRANGER_SSRC, &noise), recv.addr)
        .unwrap();
    // The scenario of the issue: the real stream starts 0.1 s later.
    std::thread::sleep(Duration::from_millis(100));
    let valid = packets(&signal, SSRC, 100, 5000);
    assert_eq!(valid.len(), 150);
    send_paced(&real, recv.addr, &valid, |_| {});
    let report = recv.finish_json();

    assert_eq!(num(&report, "played"), 150, "{report}");
    assert_eq!(num(&report, "frames_out"), signal.len() as u64, "{report}");
    assert_eq!(num(&report, "lost"), 0, "{report}");
    assert_eq!(
        report["bad"]["ssrc_change"], 1,
        "the stranger's datagram: {report}"
    );
    let chosen = &report["chosen_source"];
    assert_eq!(chosen["ssrc"], SSRC, "{report}");
    assert_eq!(chosen["address"], real_addr.to_string(), "{report}");
    assert_eq!(chosen["packets"], 150, "{report}");
    let st = source(&report, STRANGER_SSRC, stranger_addr);
    assert_eq!(
        (st["packets"].as_u64(), st["chosen"].as_bool()),
        (Some(1), Some(false))
    );
    assert_exact(&out, &signal);
}

/// A stranger on another socket sends packets with the stream's own SSRC, sequence numbers
/// and timestamps, but noise inside, each just before the real packet: only the address the
/// chosen source came from is accepted, the copies are counted as `other_address`, and the
/// output is the signal bit for bit.
#[test]
fn the_streams_ssrc_from_another_address_is_not_mixed_in() {
    let dir = scratch("sources-stranger-noise");
    let out = dir.join("out.wav");
    let signal = write_signal(&dir.join("in.wav"), RATE, 1, 1.0); // 50 packets
    let args = recv_args(s(&out));
    let recv = Listening::recv(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (real, stranger) = (local(), local());
    let (real_addr, stranger_addr) = (real.local_addr().unwrap(), stranger.local_addr().unwrap());

    let valid = packets(&signal, SSRC, 65_530, u32::MAX - 1000);
    let noise: Vec<i16> = signal.iter().map(|&x| x.wrapping_mul(7) ^ 0x5555).collect();
    let fakes = packets(&noise, SSRC, 65_530, u32::MAX - 1000);
    let mut copies = 0u64;
    send_paced(&real, recv.addr, &valid, |k| {
        if k >= 3 && k % 2 == 1 {
            stranger.send_to(&fakes[k], recv.addr).unwrap();
            copies += 1;
        }
    });
    let report = recv.finish_json();

    assert_eq!(report["bad"]["other_address"], copies, "{report}");
    assert_eq!(num(&report, "played"), 50, "{report}");
    assert_eq!(num(&report, "duplicate"), 0, "{report}");
    assert_eq!(
        report["chosen_source"]["address"],
        real_addr.to_string(),
        "{report}"
    );
    let st = source(&report, SSRC, stranger_addr);
    assert_eq!(
        (st["packets"].as_u64(), st["chosen"].as_bool()),
        (Some(copies), Some(false))
    );
    assert_exact(&out, &signal);
}

/// With `--source ADDR` a stranger that sends a valid stream first (it would pass probation
/// and be chosen) is refused as `other_address`, and the pinned sender is played.
#[test]
fn a_pinned_source_address_is_the_one_played() {
    let dir = scratch("sources-pinned");
    let out = dir.join("out.wav");
    let signal = write_signal(&dir.join("in.wav"), RATE, 1, 1.0);
    let (real, stranger) = (local(), local());
    let real_addr = real.local_addr().unwrap();
    let mut args = recv_args(s(&out));
    args.extend(["--source".to_string(), real_addr.to_string()]);
    let recv = Listening::recv(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let noise: Vec<i16> = (0..FRAMES_PER_PACKET as i32 * 5)
        .map(|i| (i * 31 % 9000) as i16)
        .collect();
    let rival = packets(&noise, STRANGER_SSRC, 7, 0);
    for p in &rival {
        stranger.send_to(p, recv.addr).unwrap();
    }
    send_paced(&real, recv.addr, &packets(&signal, SSRC, 1, 1), |_| {});
    let report = recv.finish_json();

    assert_eq!(report["bad"]["other_address"], rival.len(), "{report}");
    assert_eq!(
        report["chosen_source"]["address"],
        real_addr.to_string(),
        "{report}"
    );
    assert_eq!(num(&report, "played"), 50, "{report}");
    assert_exact(&out, &signal);
}

/// After the stream ends, one junk byte arrives every 0.5 s (from a stranger, and from the
/// stream's own socket): only packets of the chosen stream are activity, so the receiver
/// still ends one idle timeout (1 s) after the last packet, with its report.
#[test]
fn junk_datagrams_do_not_keep_a_finished_receiver_alive() {
    let dir = scratch("sources-junk-keepalive");
    let out = dir.join("out.wav");
    let signal = write_signal(&dir.join("in.wav"), RATE, 1, 0.5);
    let args = recv_args(s(&out));
    let recv = Listening::recv(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (real, stranger) = (local(), local());
    let addr = recv.addr;
    send_paced(&real, addr, &packets(&signal, SSRC, 1, 1), |_| {});
    let ended = Instant::now();

    // Junk every 0.5 s until recv has ended (or test-support's deadline has failed the test,
    // which means the junk kept it alive).
    let stopped = AtomicBool::new(false);
    let (end, n) = std::thread::scope(|scope| {
        let junk = scope.spawn(|| {
            let mut n = 0u64;
            while !stopped.load(Ordering::Relaxed) {
                let from = if n % 2 == 0 { &stranger } else { &real };
                // The receiver may have just exited: a refused send is fine.
                let _ = from.send_to(b"x", addr);
                n += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
            n
        });
        let end = recv.run.finish();
        stopped.store(true, Ordering::Relaxed);
        (end, junk.join().unwrap())
    });
    assert_eq!(end.code(), Some(0), "{}", end.stderr);
    assert!(
        ended.elapsed() < Duration::from_secs(10),
        "recv took {:?} to notice the stream had ended (idle timeout 1 s): {n} junk bytes",
        ended.elapsed()
    );
    let report = our_document(&end);
    assert_eq!(num(&report, "frames_out"), signal.len() as u64, "{report}");
    assert!(n >= 2, "junk was sent during the idle timeout ({n})");
}
