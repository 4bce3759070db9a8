//! The messages on the wire.
//!
//! Every message is one frame of the [`framing`] crate's 4-byte big-endian
//! preset; the frame's first byte is the message type, then fixed-size
//! big-endian fields. Sequence numbers start at 0. Positions in the stream of
//! messages are carried as *counts*: `processed = n` means seqs `0..n` are
//! processed, i.e. `last_processed = n - 1` (none when `n = 0`), which needs
//! no "none" value on the wire.
//!
//! ```text
//! HELLO      01 | session u64 | version u16 | window u32          15 bytes
//! WELCOME    02 | processed u64 | window u32                       13 bytes
//! DATA       03 | seq u64 | payload ...                            9 + n
//! ACK        04 | processed u64                                    9 bytes
//! CLOSE      05 | count u64      (last_seq = count - 1)            9 bytes
//! CLOSE_ACK  06 | processed u64 | count u64 | digest u64           25 bytes
//! PING       07 | nonce u64                                        9 bytes
//! PONG       08 | nonce u64                                        9 bytes
//! ERROR      09 | code u16 | reason (UTF-8, at most 256 bytes)     3 + n
//!
//! e.g. DATA seq 7, payload "msg 7 ..", inside its frame:
//! +-------------+----+-------------------------+------------------------+
//! | 00 00 00 11 | 03 | 00 00 00 00 00 00 00 07 | 6d 73 67 20 37 20 2e 2e |
//! +-------------+----+-------------------------+------------------------+
//!   frame length  type  seq                       payload
//! ```
//!
//! - `ACK{processed}` is cumulative and means *processed and durable*, not
//!   received.
//! - `CLOSE_ACK{processed, count, digest}`: `processed` is the seq cursor,
//!   `count` the messages the server's store holds for the session, `digest`
//!   the [`Digest`] of their payloads in seq order; the client checks all
//!   three against what it sent.
//! - `WELCOME.window` is the window the server grants (at most the one asked).

use std::fmt;

use crate::error::{Error, ErrorCode};

/// Protocol version spoken here.
pub const VERSION: u16 = 1;

/// Largest `ERROR` reason, in bytes.
pub const MAX_REASON: usize = 256;

/// Type bytes.
mod kind {
    pub(super) const HELLO: u8 = 1;
    pub(super) const WELCOME: u8 = 2;
    pub(super) const DATA: u8 = 3;
    pub(super) const ACK: u8 = 4;
    pub(super) const CLOSE: u8 = 5;
    pub(super) const CLOSE_ACK: u8 = 6;
    pub(super) const PING: u8 = 7;
    pub(super) const PONG: u8 = 8;
    pub(super) const ERROR: u8 = 9;
}

/// One decoded message; `DATA` borrows its payload from the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// Client opens or resumes `session`.
    Hello {
        /// Session id chosen by the client.
        session: u64,
        /// Protocol version ([`VERSION`]).
        version: u16,
        /// Most messages the client will have unacknowledged.
        window: u32,
    },
    /// Server: seqs `0..processed` of this session are durable.
    Welcome {
        /// Count of processed messages.
        processed: u64,
        /// Window granted.
        window: u32,
    },
    /// One message.
    Data {
        /// Its sequence number.
        seq: u64,
        /// Its bytes.
        payload: &'a [u8],
    },
    /// Cumulative: seqs `0..processed` are processed and durable.
    Ack {
        /// Count of processed messages.
        processed: u64,
    },
    /// Client: no message after `count - 1`; answer once all are processed.
    Close {
        /// Messages in the session.
        count: u64,
    },
    /// Server: everything through `processed - 1` is durable.
    CloseAck {
        /// Count of processed messages (the seq cursor).
        processed: u64,
        /// Messages the store holds for the session.
        count: u64,
        /// [`Digest`] of their payloads, in seq order.
        digest: u64,
    },
    /// Heartbeat request.
    Ping {
        /// Echoed in the `PONG`.
        nonce: u64,
    },
    /// Heartbeat answer.
    Pong {
        /// The `PING`'s nonce.
        nonce: u64,
    },
    /// Sent before closing on a protocol violation.
    Error {
        /// What kind of violation.
        code: ErrorCode,
        /// Human-readable detail.
        reason: &'a str,
    },
}

impl fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Hello {
                session,
                version,
                window,
            } => write!(f, "HELLO{{session {session}, v{version}, window {window}}}"),
            Message::Welcome { processed, window } => {
                write!(f, "WELCOME{{processed {processed}, window {window}}}")
            }
            Message::Data { seq, payload } => {
                write!(f, "DATA{{seq {seq}, {} bytes}}", payload.len())
            }
            Message::Ack { processed } => write!(f, "ACK{{processed {processed}}}"),
            Message::Close { count } => write!(f, "CLOSE{{count {count}}}"),
            Message::CloseAck {
                processed,
                count,
                digest,
            } => write!(
                f,
                "CLOSE_ACK{{processed {processed}, count {count}, digest {digest:016x}}}"
            ),
            Message::Ping { nonce } => write!(f, "PING{{{nonce}}}"),
            Message::Pong { nonce } => write!(f, "PONG{{{nonce}}}"),
            Message::Error { code, reason } => write!(f, "ERROR{{{code:?}: {reason}}}"),
        }
    }
}

impl<'a> Message<'a> {
    /// Appends the message's bytes (the frame's content, without the length
    /// prefix) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Message::Hello {
                session,
                version,
                window,
            } => {
                out.push(kind::HELLO);
                out.extend_from_slice(&session.to_be_bytes());
                out.extend_from_slice(&version.to_be_bytes());
                out.extend_from_slice(&window.to_be_bytes());
            }
            Message::Welcome { processed, window } => {
                out.push(kind::WELCOME);
                out.extend_from_slice(&processed.to_be_bytes());
                out.extend_from_slice(&window.to_be_bytes());
            }
            Message::Data { seq, payload } => {
                out.push(kind::DATA);
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(payload);
            }
            Message::Ack { processed } => {
                out.push(kind::ACK);
                out.extend_from_slice(&processed.to_be_bytes());
            }
            Message::Close { count } => {
                out.push(kind::CLOSE);
                out.extend_from_slice(&count.to_be_bytes());
            }
            Message::CloseAck {
                processed,
                count,
                digest,
            } => {
                out.push(kind::CLOSE_ACK);
                out.extend_from_slice(&processed.to_be_bytes());
                out.extend_from_slice(&count.to_be_bytes());
                out.extend_from_slice(&digest.to_be_bytes());
            }
            Message::Ping { nonce } => {
                out.push(kind::PING);
                out.extend_from_slice(&nonce.to_be_bytes());
            }
            Message::Pong { nonce } => {
                out.push(kind::PONG);
                out.extend_from_slice(&nonce.to_be_bytes());
            }
            Message::Error { code, reason } => {
                out.push(kind::ERROR);
                out.extend_from_slice(&(code as u16).to_be_bytes());
                out.extend_from_slice(truncate_utf8(reason, MAX_REASON).as_bytes());
            }
        }
    }

    /// Decodes one frame's content.
    ///
    /// # Errors
    /// [`Error::Malformed`] naming what is wrong: empty frame, unknown type,
    /// wrong length for the type, a reason that is not UTF-8 or too long.
    pub fn decode(frame: &'a [u8]) -> Result<Message<'a>, Error> {
        let Some((&kind, body)) = frame.split_first() else {
            return Err(malformed("empty frame, expected a message type byte"));
        };
        let fixed = |len: usize, name: &str| -> Result<Fields<'a>, Error> {
            if body.len() != len {
                return Err(malformed(format!(
                    "{name} has {} bytes after the type, expected {len}",
                    body.len()
                )));
            }
            Ok(Fields(body))
        };
        Ok(match kind {
            kind::HELLO => {
                let mut f = fixed(14, "HELLO")?;
                Message::Hello {
                    session: f.u64(),
                    version: f.u16(),
                    window: f.u32(),
                }
            }
            kind::WELCOME => {
                let mut f = fixed(12, "WELCOME")?;
                Message::Welcome {
                    processed: f.u64(),
                    window: f.u32(),
                }
            }
            kind::DATA => {
                if body.len() < 8 {
                    return Err(malformed(format!(
                        "DATA has {} bytes after the type, expected at least 8 (the seq)",
                        body.len()
                    )));
                }
                let (seq, payload) = body.split_at(8);
                Message::Data {
                    seq: Fields(seq).u64(),
                    payload,
                }
            }
            kind::ACK => Message::Ack {
                processed: fixed(8, "ACK")?.u64(),
            },
            kind::CLOSE => Message::Close {
                count: fixed(8, "CLOSE")?.u64(),
            },
            kind::CLOSE_ACK => {
                let mut f = fixed(24, "CLOSE_ACK")?;
                Message::CloseAck {
                    processed: f.u64(),
                    count: f.u64(),
                    digest: f.u64(),
                }
            }
            kind::PING => Message::Ping {
                nonce: fixed(8, "PING")?.u64(),
            },
            kind::PONG => Message::Pong {
                nonce: fixed(8, "PONG")?.u64(),
            },
            kind::ERROR => {
                if body.len() < 2 || body.len() > 2 + MAX_REASON {
                    return Err(malformed(format!(
                        "ERROR has {} bytes after the type, expected 2..={}",
                        body.len(),
                        2 + MAX_REASON
                    )));
                }
                let (code, reason) = body.split_at(2);
                let reason = std::str::from_utf8(reason)
                    .map_err(|_| malformed("ERROR reason is not UTF-8"))?;
                Message::Error {
                    code: ErrorCode::from_u16(Fields(code).u16()),
                    reason,
                }
            }
            other => {
                return Err(Error::Protocol {
                    code: ErrorCode::UnknownType,
                    reason: format!("unknown message type {other:#04x}"),
                });
            }
        })
    }
}

fn malformed(reason: impl Into<String>) -> Error {
    Error::Protocol {
        code: ErrorCode::Malformed,
        reason: reason.into(),
    }
}

/// Reads big-endian fields from a slice whose length was checked.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().expect("split_at gave N bytes")
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take())
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char
/// boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Running digest of payloads in seq order: 64-bit FNV-1a over each
/// payload's length (8 bytes, big-endian) then its bytes, so that
/// `["ab", "c"]` and `["a", "bc"]` differ. Both sides compute it
/// incrementally; with `count` it lets the client check that exactly what it
/// sent was processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest(u64);

impl Default for Digest {
    fn default() -> Self {
        Digest(0xcbf2_9ce4_8422_2325)
    }
}

impl Digest {
    /// A digest restored from its value.
    pub fn from_value(value: u64) -> Digest {
        Digest(value)
    }

    /// Its value.
    pub fn value(self) -> u64 {
        self.0
    }

    /// Adds one payload.
    pub fn update(&mut self, payload: &[u8]) {
        let mut h = self.0;
        for &b in (payload.len() as u64).to_be_bytes().iter().chain(payload) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// The payload of message `seq` in the demo: `msg <seq> ` padded with `.` to
/// `size` bytes (printable ASCII, no newline), cut to `size` if shorter.
pub fn demo_payload(seq: u64, size: usize, out: &mut Vec<u8>) {
    use std::io::Write;
    out.clear();
    let _ = write!(out, "msg {seq} ");
    if out.len() < size {
        out.resize(size, b'.');
    }
    out.truncate(size);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Message<'static>> {
        vec![
            Message::Hello {
                session: 7,
                version: VERSION,
                window: 32,
            },
            Message::Welcome {
                processed: 3,
                window: 16,
            },
            Message::Data {
                seq: 7,
                payload: b"msg 7 ..",
            },
            Message::Data {
                seq: 0,
                payload: b"",
            },
            Message::Ack { processed: 9 },
            Message::Close { count: 10 },
            Message::CloseAck {
                processed: 10,
                count: 10,
                digest: 0xdead_beef,
            },
            Message::Ping { nonce: 1 },
            Message::Pong { nonce: 1 },
            Message::Error {
                code: ErrorCode::SeqGap,
                reason: "seq 5 after 3",
            },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in all() {
            let mut out = Vec::new();
            m.encode(&mut out);
            assert_eq!(Message::decode(&out).unwrap(), m);
        }
    }

    #[test]
    fn data_wire_image() {
        let mut out = Vec::new();
        Message::Data {
            seq: 7,
            payload: b"msg 7 ..",
        }
        .encode(&mut out);
        assert_eq!(out, b"\x03\x00\x00\x00\x00\x00\x00\x00\x07msg 7 ..");
    }

    #[test]
    fn every_truncation_and_extension_is_rejected_not_panicking() {
        for m in all() {
            let mut out = Vec::new();
            m.encode(&mut out);
            for cut in 0..out.len() {
                let r = Message::decode(&out[..cut]);
                // DATA shorter payloads and ERROR shorter reasons are still
                // valid messages; everything else must be refused.
                if let Ok(short) = r {
                    assert!(matches!(
                        short,
                        Message::Data { .. } | Message::Error { .. }
                    ));
                }
            }
            out.push(0);
            let r = Message::decode(&out);
            if !matches!(m, Message::Data { .. } | Message::Error { .. }) {
                assert!(r.is_err(), "{m} with a trailing byte was accepted");
            }
        }
    }

    #[test]
    fn unknown_type_and_bad_reason_are_named() {
        let e = Message::decode(&[0x42, 1, 2]).unwrap_err().to_string();
        assert!(e.contains("unknown message type 0x42"), "{e}");
        let e = Message::decode(&[9, 0, 1, 0xff, 0xfe])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not UTF-8"), "{e}");
        let e = Message::decode(&[]).unwrap_err().to_string();
        assert!(e.contains("empty frame"), "{e}");
    }

    #[test]
    fn digest_separates_payload_boundaries() {
        let mut a = Digest::default();
        a.update(b"ab");
        a.update(b"c");
        let mut b = Digest::default();
        b.update(b"a");
        b.update(b"bc");
        assert_ne!(a, b);
    }

    #[test]
    fn demo_payloads() {
        let mut out = Vec::new();
        demo_payload(12, 10, &mut out);
        assert_eq!(out, b"msg 12 ...");
        demo_payload(12345, 4, &mut out);
        assert_eq!(out, b"msg ");
    }
}
