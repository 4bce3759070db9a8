//! Sessions bound to a secret: a stranger who guesses a session id is
//! refused (`ERROR{TokenMismatch}`) and the owner's session goes on; the
//! binding survives a server restart; a resume without the token is refused
//! and says how to resume (the command line's side: ack-demo-cli's
//! `tests/tokens.rs`). Sessions that never sent data cost nothing once
//! their connection is gone.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use ack_demo::ErrorCode;
use ack_demo::client::{self, ClientSettings};
use ack_demo::server::{Server, ServerSettings, StopHandle, frame};
use ack_demo::wire::{Message, Token, VERSION};
use common::{expected_line, lines, temp_dir};
use framing::io::FramedReader;

const OWNER: Token = Token([0x0a; 16]);
const STRANGER: Token = Token([0x5e; 16]);

fn start(out: &Path, delay: Duration) -> (SocketAddr, StopHandle, thread::JoinHandle<()>) {
    let mut s = ServerSettings::new(out.to_owned());
    s.heartbeat = Duration::from_millis(300);
    s.process_delay = delay;
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), s).unwrap();
    let addr = server.local_addr();
    let stop = server.stop_handle();
    (addr, stop, thread::spawn(move || server.run()))
}

/// Says HELLO for `session` with `token` (and a DATA `seq` when given);
/// returns the first answer other than PING.
fn hello_answer(addr: SocketAddr, session: u64, token: Token, seq: Option<u64>) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut bytes = frame(&Message::Hello {
        session,
        version: VERSION,
        window: 8,
        token,
    });
    if let Some(seq) = seq {
        bytes.extend(frame(&Message::Data {
            seq,
            payload: b"the stranger's line",
        }));
    }
    let _ = stream.write_all(&bytes);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = FramedReader::new(stream, ack_demo::framing_config());
    loop {
        let frame = reader.read_frame().unwrap().expect("an answer before EOF");
        match Message::decode(frame).unwrap() {
            Message::Error { code, reason } => return format!("ERROR {code:?}: {reason}"),
            Message::Welcome { processed, .. } => return format!("WELCOME {processed}"),
            _ => {}
        }
    }
}

#[test]
fn a_stranger_with_a_guessed_session_id_is_refused_and_the_owner_goes_on() {
    let dir = temp_dir("tokens");
    let out = dir.join("out.txt");
    let (addr, stop, run) = start(&out, Duration::from_micros(200));
    const COUNT: u64 = 3000;
    let owner = {
        let mut s = ClientSettings::new(addr);
        s.session = 42;
        s.token = Some(OWNER);
        s.count = COUNT;
        s.size = 24;
        s.window = 16;
        s.heartbeat = Duration::from_millis(300);
        thread::spawn(move || client::run(&s))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while lines(&out).len() < 200 {
        assert!(
            Instant::now() < deadline,
            "the owner's session does not start"
        );
        thread::sleep(Duration::from_millis(5));
    }
    let seq = lines(&out).len() as u64;
    let answer = hello_answer(addr, 42, STRANGER, Some(seq));
    assert!(
        answer.starts_with(&format!("ERROR {:?}", ErrorCode::TokenMismatch)),
        "{answer}"
    );
    assert!(answer.contains("session 42"), "{answer}");
    let report = owner.join().unwrap();
    assert!(report.completed, "{:?}", report.error);
    assert_eq!(report.stats.acked, COUNT);
    assert_eq!(report.stats.reconnects, 0, "the owner was never disturbed");
    let got = lines(&out);
    assert_eq!(got.len() as u64, COUNT);
    for (seq, line) in got.iter().enumerate() {
        assert_eq!(line, &expected_line(seq as u64, 24), "line {seq}");
    }
    stop.stop();
    run.join().unwrap();

    // The binding survives a restart: the token is in the journal.
    let (addr, stop, run) = start(&out, Duration::ZERO);
    let answer = hello_answer(addr, 42, STRANGER, Some(COUNT));
    assert!(answer.contains("TokenMismatch"), "{answer}");
    let answer = hello_answer(addr, 42, OWNER, None);
    assert_eq!(answer, format!("WELCOME {COUNT}"));
    stop.stop();
    run.join().unwrap();
}

#[test]
fn sessions_that_never_send_data_are_forgotten_when_their_connection_ends() {
    let out = temp_dir("empty-hellos").join("out.txt");
    let mut s = ServerSettings::new(out.clone());
    s.heartbeat = Duration::from_secs(5);
    let server = std::sync::Arc::new(Server::bind("127.0.0.1:0".parse().unwrap(), s).unwrap());
    let addr = server.local_addr();
    let stop = server.stop_handle();
    let run = {
        let server = std::sync::Arc::clone(&server);
        thread::spawn(move || server.run())
    };
    for session in 0..2000u64 {
        let mut stream = TcpStream::connect(addr).unwrap();
        let hello = frame(&Message::Hello {
            session,
            version: VERSION,
            window: 8,
            token: Token([1; 16]),
        });
        stream.write_all(&hello).unwrap();
        // Wait for WELCOME, then go away.
        let mut reader = FramedReader::new(stream, ack_demo::framing_config());
        let f = reader.read_frame().unwrap().unwrap();
        assert!(matches!(
            Message::decode(f).unwrap(),
            Message::Welcome { .. }
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.sessions() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} empty sessions still held",
            server.sessions()
        );
        thread::sleep(Duration::from_millis(10));
    }
    stop.stop();
    run.join().unwrap();
}
