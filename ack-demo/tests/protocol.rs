//! The server against bad input, a blackholed path and an early close; an
//! in-process server on `127.0.0.1:0` and hand-made frames.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use ack_demo::ErrorCode;
use ack_demo::client::{self, ClientSettings};
use ack_demo::relay::Relay;
use ack_demo::server::{Server, ServerSettings, ServerStats, frame};
use ack_demo::wire::{Message, Token, VERSION};
use common::{expected_line, lines, temp_dir};
use framing::io::FramedReader;

struct Running {
    addr: SocketAddr,
    out: PathBuf,
    stats: Arc<ServerStats>,
}

fn start(settings: impl FnOnce(&mut ServerSettings)) -> Running {
    let out = temp_dir("proto").join("out.txt");
    let mut s = ServerSettings::new(out.clone());
    s.heartbeat = Duration::from_millis(200);
    settings(&mut s);
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), s).unwrap();
    let running = Running {
        addr: server.local_addr(),
        out,
        stats: server.stats(),
    };
    thread::spawn(move || server.run());
    running
}

fn hello(session: u64) -> Vec<u8> {
    frame(&Message::Hello {
        session,
        version: VERSION,
        window: 8,
        token: Token([session as u8; 16]),
    })
}

fn data(seq: u64, payload: &[u8]) -> Vec<u8> {
    frame(&Message::Data { seq, payload })
}

/// Sends `bytes`, then reads every message until the server closes; returns
/// the ERROR's code and reason.
fn error_for(addr: SocketAddr, bytes: &[u8]) -> (ErrorCode, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(bytes).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = FramedReader::new(stream, ack_demo::framing_config());
    loop {
        let frame = reader
            .read_frame()
            .expect("the server sends ERROR before it closes")
            .expect("an ERROR before EOF");
        let found = match Message::decode(frame).unwrap() {
            Message::Error { code, reason } => Some((code, reason.to_owned())),
            _ => None,
        };
        if let Some(found) = found {
            // After ERROR the server closes: EOF (not a reset).
            let rest = reader.read_frame().map(|f| f.map(<[u8]>::len));
            assert!(matches!(rest, Ok(None)), "after ERROR {found:?}: {rest:?}");
            return found;
        }
    }
}

#[test]
fn bad_input_gets_an_error_with_the_reason_and_writes_nothing() {
    let server = start(|_| {});
    let good = {
        let mut s = ClientSettings::new(server.addr);
        s.count = 3000;
        s.size = 16;
        s.window = 8;
        s.session = 1;
        thread::spawn(move || client::run(&s))
    };
    let cases: Vec<(&str, Vec<u8>, ErrorCode, &str)> = vec![
        (
            "garbage",
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            ErrorCode::Framing,
            "exceeds the maximum frame length",
        ),
        (
            "oversized",
            (2u32 << 20).to_be_bytes().to_vec(),
            ErrorCode::Framing,
            "exceeds",
        ),
        (
            "unknown type",
            [hello(2), frame_raw(&[0x42, 1])].concat(),
            ErrorCode::UnknownType,
            "unknown message type 0x42",
        ),
        (
            "data before hello",
            data(0, b"x"),
            ErrorCode::UnexpectedMessage,
            "before HELLO",
        ),
        (
            "seq skipping",
            [hello(3), data(1, b"skip")].concat(),
            ErrorCode::SeqGap,
            "skips ahead, expected 0",
        ),
        (
            "seq backwards",
            [
                hello(4),
                data(0, b"bw 0"),
                data(1, b"bw 1"),
                data(0, b"bw 0"),
            ]
            .concat(),
            ErrorCode::SeqBackwards,
            "seq 0 after seq 1",
        ),
        (
            "newline",
            [hello(5), data(0, b"two\nlines")].concat(),
            ErrorCode::Malformed,
            "newline",
        ),
        (
            "truncated hello",
            frame_raw(&[1, 0, 0]),
            ErrorCode::Malformed,
            "HELLO truncated: 2 bytes",
        ),
        (
            "wrong version",
            frame(&Message::Hello {
                session: 6,
                version: 99,
                window: 8,
                token: Token::default(),
            }),
            ErrorCode::Version,
            "version 99",
        ),
        (
            "window overflow",
            [hello(7), (0..9).flat_map(|i| data(i, b"w")).collect()].concat(),
            ErrorCode::WindowExceeded,
            "window 8",
        ),
    ];
    for (what, bytes, code, reason) in cases {
        let (got_code, got_reason) = error_for(server.addr, &bytes);
        assert_eq!(got_code, code, "{what}: {got_reason}");
        assert!(
            got_reason.contains(reason),
            "{what}: {got_reason:?} lacks {reason:?}"
        );
    }
    let report = good.join().unwrap();
    assert!(
        report.completed,
        "the good session was disturbed: {:?}",
        report.error
    );
    assert_eq!(server.stats.violations.load(Ordering::SeqCst), 10);

    // Only the good session's lines, plus the two valid messages of the
    // "backwards" case and the eight in-window ones of the overflow case.
    let all = lines(&server.out);
    let good_lines: Vec<_> = all
        .iter()
        .filter(|l| l.starts_with("msg "))
        .cloned()
        .collect();
    let expected: Vec<_> = (0..3000).map(|s| expected_line(s, 16)).collect();
    assert_eq!(good_lines, expected);
    let others: Vec<_> = all
        .iter()
        .filter(|l| !l.starts_with("msg "))
        .cloned()
        .collect();
    let mut want = vec!["bw 0".to_owned(), "bw 1".to_owned()];
    want.extend(std::iter::repeat_n("w".to_owned(), 8));
    let mut sorted = others.clone();
    sorted.sort();
    want.sort();
    assert_eq!(sorted, want, "bad data was written: {others:?}");
}

fn frame_raw(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

#[test]
fn a_blackholed_path_is_detected_within_three_heartbeats() {
    let server = start(|s| s.process_delay = Duration::from_micros(500));
    let relay = Relay::start("127.0.0.1:0".parse().unwrap(), server.addr, Duration::ZERO).unwrap();
    let heartbeat = Duration::from_millis(200);
    let mut s = ClientSettings::new(relay.local_addr());
    s.count = 1_000_000;
    s.size = 24;
    s.heartbeat = heartbeat;
    let run = thread::spawn(move || (client::run(&s), Instant::now()));
    // Wait until the session is under way, then cut the path silently.
    while server.stats.processed.load(Ordering::SeqCst) < 100 {
        thread::sleep(Duration::from_millis(5));
    }
    relay.set_blackhole(true);
    let cut = Instant::now();
    let (report, ended) = run.join().unwrap();
    let detected = ended.duration_since(cut);
    let error = report.error.unwrap();
    assert!(error.contains("declared dead"), "{error}");
    // Three intervals of silence, measured from the last frame heard
    // before the cut; a loose bound (scheduling on a loaded machine), far
    // from the ~15 minutes TCP alone would take.
    assert!(detected < 10 * heartbeat, "took {detected:?}");
    assert!(!report.unconfirmed.is_empty());
    assert!(relay.dropped_bytes() > 0);
    eprintln!("blackhole detected after {detected:?} (heartbeat {heartbeat:?})");
}

#[test]
fn a_server_that_stops_reading_leaves_exactly_the_unconfirmed_seqs() {
    let server = start(|s| s.stop_reading_after = Some(100));
    let mut s = ClientSettings::new(server.addr);
    s.count = 1000;
    s.size = 16;
    s.window = 8;
    let report = client::run(&s);
    assert!(!report.completed);
    assert!(report.error.is_some());
    let processed = lines(&server.out);
    assert_eq!(processed.len(), 100);
    for (seq, line) in processed.iter().enumerate() {
        assert_eq!(line, &expected_line(seq as u64, 16));
    }
    // Everything from the first unconfirmed seq on was not processed, and
    // everything before it was.
    let unconfirmed = report.unconfirmed.clone();
    assert_eq!(unconfirmed.start, report.stats.acked);
    assert!(
        unconfirmed.start <= 100 && 100 <= unconfirmed.end,
        "{unconfirmed:?}"
    );
    assert!(unconfirmed.end - unconfirmed.start <= 8 + 100 - unconfirmed.start);
}

#[test]
fn naive_sender_believes_everything_was_delivered() {
    let server = start(|s| s.stop_reading_after = Some(100));
    let report = ack_demo::naive::run(server.addr, 9, 1000, 64, Duration::from_secs(5)).unwrap();
    assert_eq!(report.accepted_messages, 1000, "{report:?}");
    assert!(report.send_error.is_none());
    assert!(report.reset_seen_by_probe, "{}", report.after_close);
    assert_eq!(lines(&server.out).len(), 100);
}

#[test]
fn idle_reader_side_does_not_block_reading() {
    // A client that connects and says nothing is dropped after three
    // heartbeats of silence; the server keeps serving.
    let server = start(|_| {});
    let mut silent = TcpStream::connect(server.addr).unwrap();
    let mut buf = [0u8; 64];
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    loop {
        match silent.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => panic!("expected the server to close, got {e}"),
        }
    }
    assert_eq!(server.stats.silent.load(Ordering::SeqCst), 1);
}
