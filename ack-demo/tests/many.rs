//! 1000 sessions connected to one server at the same time, each with lines
//! pending in the same group commits: every session is held, acknowledged
//! and closed with the handshake, and its lines are in FILE once, in order.
//! One test thread drives all the connections by hand-made frames, and
//! the server holds them all on a fixed number of threads.

mod common;

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use ack_demo::server::{Server, ServerSettings, frame};
use ack_demo::wire::{Message, Token, VERSION};
use common::{lines, temp_dir};
use framing::io::FramedReader;

const SESSIONS: u64 = 1000;
const PER_SESSION: u64 = 3;

/// Threads of this process now (`/proc/self/status`).
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .expect("a Threads line")
        .trim()
        .parse()
        .unwrap()
}

fn payload(session: u64, seq: u64) -> Vec<u8> {
    format!("s{session} m{seq}").into_bytes()
}

/// Reads messages until one satisfies `want`.
fn read_until(reader: &mut FramedReader<TcpStream>, want: impl Fn(&Message<'_>) -> bool) {
    loop {
        let frame = reader
            .read_frame()
            .expect("the server answers")
            .expect("a message before EOF");
        let msg = Message::decode(frame).unwrap();
        if let Message::Error { code, reason } = msg {
            panic!("ERROR {code:?}: {reason}");
        }
        if want(&msg) {
            return;
        }
    }
}

#[test]
fn a_thousand_concurrent_sessions_are_held_acknowledged_and_closed() {
    let out = temp_dir("many").join("out.txt");
    let mut settings = ServerSettings::new(out.clone());
    settings.heartbeat = Duration::from_secs(10);
    let server = Arc::new(Server::bind("127.0.0.1:0".parse().unwrap(), settings).unwrap());
    let addr = server.local_addr();
    let stop = server.stop_handle();
    let serving = {
        let server = Arc::clone(&server);
        thread::spawn(move || server.run())
    };
    let stats = server.stats();
    // The test's own thread, the server's loop, its committer and the
    // store's sync helper; nothing per connection.
    let before = threads();

    // Every session connects and sends its lines before any is read back.
    let mut conns: Vec<(u64, FramedReader<TcpStream>)> = (0..SESSIONS)
        .map(|session| {
            let mut stream = TcpStream::connect(addr).unwrap();
            let mut bytes = frame(&Message::Hello {
                session,
                version: VERSION,
                window: 8,
                token: Token([(session % 251) as u8 + 1; 16]),
            });
            for seq in 0..PER_SESSION {
                bytes.extend(frame(&Message::Data {
                    seq,
                    payload: &payload(session, seq),
                }));
            }
            stream.write_all(&bytes).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            (
                session,
                FramedReader::new(stream, ack_demo::framing_config()),
            )
        })
        .collect();
    for (_, reader) in &mut conns {
        read_until(
            reader,
            |m| matches!(m, Message::Ack { processed } if *processed == PER_SESSION),
        );
    }
    // All connected and acknowledged at once: the server holds them all,
    // on the threads it started with.
    assert_eq!(server.sessions() as u64, SESSIONS);
    assert_eq!(stats.open.load(Ordering::SeqCst), SESSIONS);
    let during = threads();
    assert!(
        during <= before + 1,
        "{during} threads with {SESSIONS} sessions, {before} before they connected"
    );

    for (_, reader) in &mut conns {
        reader
            .get_mut()
            .write_all(&frame(&Message::Close { count: PER_SESSION }))
            .unwrap();
    }
    for (session, reader) in &mut conns {
        read_until(reader, |m| {
            matches!(m, Message::CloseAck { processed, count, .. }
                if *processed == PER_SESSION && *count == PER_SESSION)
        });
        reader.get_mut().shutdown(Shutdown::Write).unwrap();
        assert!(
            matches!(reader.read_frame(), Ok(None)),
            "session {session}: EOF after CLOSE_ACK"
        );
    }
    drop(conns);
    stop.stop();
    serving.join().unwrap();
    assert_eq!(stats.peak_open.load(Ordering::SeqCst), SESSIONS);
    assert_eq!(stats.closed_sessions.load(Ordering::SeqCst), SESSIONS);

    let got = lines(&out);
    assert_eq!(got.len() as u64, SESSIONS * PER_SESSION);
    for session in 0..SESSIONS {
        let prefix = format!("s{session} ");
        let mine: Vec<&String> = got.iter().filter(|l| l.starts_with(&prefix)).collect();
        let want: Vec<String> = (0..PER_SESSION)
            .map(|seq| String::from_utf8(payload(session, seq)).unwrap())
            .collect();
        assert_eq!(
            mine.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            want.iter().map(String::as_str).collect::<Vec<_>>(),
            "session {session}"
        );
    }
}
