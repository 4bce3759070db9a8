//! Interop with a real peer: Python 3's `multiprocessing.connection`
//! (`Client` and `Listener` with `authkey=None`), both directions, with an
//! empty message and messages larger than 16384 bytes (where Python switches
//! from one buffer to a separate header and payload write).

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};

use framing::Config;
use framing::io::{FramedReader, FramedWriter};

/// Sizes of the messages exchanged; both sides build message `k` as
/// `(i * 7 + k) % 256` for each byte `i`.
const SIZES: [usize; 7] = [0, 5, 1, 16384, 16385, 20000, 300_000];

/// The Python side of the message definition, shared by both scripts.
const PY_MESSAGES: &str = r#"
import sys
from multiprocessing.connection import Client, Listener
SIZES = [0, 5, 1, 16384, 16385, 20000, 300000]
def message(k):
    return bytes((i * 7 + k) % 256 for i in range(SIZES[k]))
"#;

fn message(k: usize) -> Vec<u8> {
    (0..SIZES[k]).map(|i| ((i * 7 + k) % 256) as u8).collect()
}

fn python(script: &str, args: &[String]) -> Child {
    Command::new("python3")
        .arg("-c")
        .arg(format!("{PY_MESSAGES}\n{script}"))
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 must be installed (scripts/test installs it)")
}

fn assert_exit_ok(mut child: Child) {
    let status = child.wait().unwrap();
    assert!(status.success(), "python side failed: {status}");
}

/// Python's `Client` sends every message to us, then checks that what we send
/// back is identical.
#[test]
fn python_client_to_our_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let child = python(
        r#"
c = Client(("127.0.0.1", int(sys.argv[1])), authkey=None)
for k in range(len(SIZES)):
    c.send_bytes(message(k))
for k in range(len(SIZES)):
    got = c.recv_bytes()
    assert got == message(k), f"message {k}: {len(got)} bytes, expected {SIZES[k]}"
c.close()
"#,
        &[port.to_string()],
    );
    let (stream, _) = listener.accept().unwrap();
    let mut reader = FramedReader::new(stream.try_clone().unwrap(), Config::python());
    let mut writer = FramedWriter::new(stream, Config::python());
    for k in 0..SIZES.len() {
        let frame = reader
            .read_frame()
            .unwrap()
            .expect("python sent all messages");
        assert_eq!(frame, &message(k)[..], "message {k}");
    }
    for k in 0..SIZES.len() {
        writer.write_frame(&message(k)).unwrap();
    }
    // Python closes after checking everything: a clean end between frames.
    assert!(reader.read_frame().unwrap().is_none());
    assert_exit_ok(child);
}

/// We connect to Python's `Listener`, which echoes every message back.
#[test]
fn our_client_to_python_listener() {
    let mut child = python(
        r#"
with Listener(("127.0.0.1", 0), authkey=None) as l:
    print(l.address[1], flush=True)
    with l.accept() as c:
        n = 0
        while True:
            try:
                m = c.recv_bytes()
            except EOFError:
                break
            assert m == message(n), f"message {n}: {len(m)} bytes"
            c.send_bytes(m)
            n += 1
        assert n == len(SIZES), n
"#,
        &[],
    );
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().expect("python prints its port");
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut reader = FramedReader::new(stream.try_clone().unwrap(), Config::python());
    let mut writer = FramedWriter::new(stream, Config::python());
    for k in 0..SIZES.len() {
        writer.write_frame(&message(k)).unwrap();
        let echo = reader.read_frame().unwrap().expect("python echoes");
        assert_eq!(echo, &message(k)[..], "echo {k}");
    }
    writer
        .get_ref()
        .shutdown(std::net::Shutdown::Write)
        .unwrap();
    assert!(reader.read_frame().unwrap().is_none());
    assert_exit_ok(child);
}
