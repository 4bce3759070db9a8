//! The mio adapter over real loopback sockets: a reader that does not read
//! (partial writes, `WouldBlock`, the queued-bytes bound) and a server whose
//! outbox fills (reading pauses, then resumes without losing a frame).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use framing::io::{FramedReader, FramedWriter};
use framing::nonblocking::{FramedStream, ReadStatus};
use framing::{Config, Error};
use mio::{Events, Interest, Poll, Token};

const STREAM: Token = Token(0);

/// A connected pair: a mio stream on our side, a blocking std stream for the peer.
fn pair() -> (mio::net::TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (ours, _) = listener.accept().unwrap();
    ours.set_nonblocking(true).unwrap();
    (mio::net::TcpStream::from_std(ours), peer)
}

fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j) as u8).collect()
}

/// Waits for the next event on the stream. The timeout only bounds a hung
/// test; progress never depends on it.
fn wait(poll: &mut Poll, events: &mut Events) {
    poll.poll(events, Some(Duration::from_secs(30))).unwrap();
    assert!(!events.is_empty(), "no readiness event within 30 s");
}

#[test]
fn slow_reader_bounds_the_queue_and_gets_every_frame() {
    const FRAMES: usize = 96;
    const SIZE: usize = 64 * 1024;
    const LIMIT: usize = 512 * 1024;

    let (ours, peer) = pair();
    let (start_tx, start_rx) = mpsc::channel::<()>();
    let reader = thread::spawn(move || {
        start_rx.recv().unwrap();
        let mut r = FramedReader::new(peer, Config::u32_be());
        let mut n = 0;
        while let Some(f) = r.read_frame().unwrap() {
            assert_eq!(f, &payload(n, SIZE)[..], "frame {n}");
            n += 1;
        }
        n
    });

    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    let mut stream = FramedStream::with_max_queued(ours, Config::u32_be(), LIMIT);
    poll.registry()
        .register(stream.get_mut(), STREAM, Interest::WRITABLE)
        .unwrap();

    let mut next = 0;
    let mut refused = 0;
    let mut would_block = false;
    let mut started = false;
    while next < FRAMES || !stream.outbox().is_empty() {
        while next < FRAMES {
            match stream.outbox().try_send(&payload(next, SIZE)) {
                Ok(()) => next += 1,
                Err(Error::QueueFull { queued, limit, .. }) => {
                    assert_eq!(limit, LIMIT);
                    assert!(queued + SIZE + 4 > LIMIT);
                    refused += 1;
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(stream.outbox().queued_bytes() <= LIMIT);
        if stream.write_ready().unwrap() {
            continue;
        }
        // The peer is not reading yet: the socket buffers are full.
        would_block = true;
        if !started {
            start_tx.send(()).unwrap();
            started = true;
        }
        wait(&mut poll, &mut events);
    }
    stream
        .get_mut()
        .shutdown(std::net::Shutdown::Write)
        .unwrap();
    assert!(would_block, "the writer never met a full socket");
    assert!(refused > 0, "the queue bound was never reached");
    if !started {
        start_tx.send(()).unwrap();
    }
    assert_eq!(reader.join().unwrap(), FRAMES);
}

#[test]
fn full_outbox_pauses_reading_and_resumes_without_loss() {
    const FRAMES: usize = 2000;
    const SIZE: usize = 1000;
    const LIMIT: usize = 16 * 1024;

    let (ours, peer) = pair();
    let mut peer_reader = peer.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let mut w = FramedWriter::new(peer, Config::u32_be());
        for i in 0..FRAMES {
            w.write_frame(&payload(i, SIZE)).unwrap();
        }
        w.get_mut().shutdown(std::net::Shutdown::Write).unwrap();
    });
    // The echoes are read only after the server has paused at least once.
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let echo_reader = thread::spawn(move || {
        go_rx.recv().unwrap();
        let mut all = Vec::new();
        peer_reader.read_to_end(&mut all).unwrap();
        let mut r = FramedReader::new(&all[..], Config::u32_be());
        let mut n = 0;
        while let Some(f) = r.read_frame().unwrap() {
            assert_eq!(f, &payload(n, SIZE)[..], "echo {n}");
            n += 1;
        }
        n
    });

    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    let mut stream = FramedStream::with_max_queued(ours, Config::u32_be(), LIMIT);
    poll.registry()
        .register(
            stream.get_mut(),
            STREAM,
            Interest::READABLE | Interest::WRITABLE,
        )
        .unwrap();

    let mut echoed = 0;
    let mut paused = 0;
    let mut closed = false;
    let mut go = Some(go_tx);
    let mut last = ReadStatus::Open;
    loop {
        if !closed {
            let status = stream
                .read_frames(|frame, out| {
                    echoed += 1;
                    out.send(frame)
                })
                .unwrap();
            // One read's worth of frames may land past the bound, no more.
            let queued = stream.outbox().queued_bytes();
            assert!(
                queued < LIMIT + framing::codec::READ_CHUNK + SIZE + 8,
                "queued {queued}"
            );
            last = status;
            match status {
                ReadStatus::Paused => {
                    paused += 1;
                    if let Some(go) = go.take() {
                        go.send(()).unwrap();
                    }
                }
                ReadStatus::Closed => closed = true,
                ReadStatus::Open => {}
            }
        }
        let drained = stream.write_ready().unwrap();
        if closed && drained {
            break;
        }
        // After a pause, read again as soon as the outbox drains: with
        // edge-triggered readiness no new event announces the bytes left unread.
        if !drained || last == ReadStatus::Open {
            wait(&mut poll, &mut events);
        }
    }
    stream
        .get_mut()
        .shutdown(std::net::Shutdown::Write)
        .unwrap();
    if let Some(go) = go.take() {
        go.send(()).unwrap();
    }
    writer.join().unwrap();
    assert_eq!(echoed, FRAMES);
    assert!(paused > 0, "reading never paused");
    assert_eq!(echo_reader.join().unwrap(), FRAMES);
}

#[test]
fn truncated_peer_is_reported() {
    let (ours, mut peer) = pair();
    peer.write_all(b"\x00\x00\x00\x10only-part").unwrap();
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    let mut stream = FramedStream::new(ours, Config::u32_be());
    poll.registry()
        .register(stream.get_mut(), STREAM, Interest::READABLE)
        .unwrap();
    loop {
        match stream.read_frames(|_, _| panic!("no frame was complete")) {
            Ok(ReadStatus::Open) => wait(&mut poll, &mut events),
            Err(Error::Truncated { expected, received }) => {
                assert_eq!((expected, received), (20, 13));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
}
