//! The messages on the wire.
//!
//! Every message is one frame of the [`framing`] crate's 4-byte big-endian
//! preset; the frame's first byte is the message type, then fixed-size
//! big-endian fields. Sequence numbers start at 0. Positions in the stream of
//! messages are carried as *counts*: `processed = n` means seqs `0..n` are
//! processed, i.e. `last_processed = n - 1` (none when `n = 0`), which needs
//! no "none" value on the wire.
//!
//! Offsets are bytes from the start of the frame's content (after the
//! 4-byte length prefix, which counts exactly these bytes):
//!
//! ```text
//! HELLO (client opens or resumes a session)                     31 bytes
//!  0      1                 9             11           15                    31
//! +------+-----------------+-------------+------------+---------------------+
//! | 0x01 | session u64     | version u16 | window u32 | token (16 bytes)    |
//! +------+-----------------+-------------+------------+---------------------+
//!
//! WELCOME (server: seqs 0..processed are durable)               13 bytes
//!  0      1                         9                     13
//! +------+-------------------------+---------------------+
//! | 0x02 | processed u64           | window granted u32  |
//! +------+-------------------------+---------------------+
//!
//! DATA (one message)                                            9 + n bytes
//!  0      1                         9                     9+n
//! +------+-------------------------+---------------------+
//! | 0x03 | seq u64                 | payload (n bytes)   |
//! +------+-------------------------+---------------------+
//!
//! ACK (cumulative: seqs 0..processed are processed and durable)  9 bytes
//!  0      1                         9
//! +------+-------------------------+
//! | 0x04 | processed u64           |
//! +------+-------------------------+
//!
//! CLOSE (client: the session is seqs 0..count; last_seq = count - 1)  9 bytes
//!  0      1                         9
//! +------+-------------------------+
//! | 0x05 | count u64               |
//! +------+-------------------------+
//!
//! CLOSE_ACK (server: everything through CLOSE's count is durable) 25 bytes
//!  0      1                 9                 17                25
//! +------+-----------------+-----------------+-----------------+
//! | 0x06 | processed u64   | count u64       | digest u64      |
//! +------+-----------------+-----------------+-----------------+
//!
//! PING / PONG (heartbeat; PONG echoes the PING's nonce)          9 bytes
//!  0      1                         9
//! +------+-------------------------+
//! | 0x07 | nonce u64               |      PONG: type 0x08
//! +------+-------------------------+
//!
//! ERROR (sent before closing on a protocol violation)       3 + n bytes
//!  0      1          3                         3+n, n <= 256
//! +------+----------+-------------------------+
//! | 0x09 | code u16 | reason (UTF-8, n bytes) |
//! +------+----------+-------------------------+
//!
//! e.g. DATA seq 7, payload "msg 7 ..", with its frame length:
//! +-------------+----+-------------------------+-------------------------+
//! | 00 00 00 11 | 03 | 00 00 00 00 00 00 00 07 | 6d 73 67 20 37 20 2e 2e |
//! +-------------+----+-------------------------+-------------------------+
//!   frame length  type  seq                       payload
//! ```
//!
//! The error codes are [`ErrorCode`]'s values. Every fixed-size message must
//! have exactly its size; [`Message::decode`] names what is wrong otherwise
//! (empty frame, unknown type, too short, trailing bytes, a reason that is
//! not UTF-8 or longer than [`MAX_REASON`]) and never panics.
//!
//! Encoding: [`Message::encode`] appends the content to a caller's `Vec`
//! (copying a DATA payload once). A driver that wants no copy at all writes
//! the frame header for [`DATA_HEADER_LEN`]` + n` bytes, [`data_header`], and the
//! payload where it already lies, e.g. in one vectored write.
//!
//! - `ACK{processed}` is cumulative and means *processed and durable*, not
//!   received.
//! - `CLOSE_ACK{processed, count, digest}`: `processed` is the seq cursor,
//!   `count` the messages the server's store holds for the session, `digest`
//!   the [`Digest`] of their payloads in seq order; the client checks all
//!   three against what it sent.
//! - `WELCOME.window` is the window the server grants (at most the one asked).
//! - `HELLO.token` is a 128-bit secret the client draws (`getrandom`) when it
//!   starts a session and presents on every resume: the server binds the
//!   session to it, and a `HELLO` with another token gets
//!   `ERROR{TokenMismatch}` while the owner's connection goes on untouched.
//!   Version 2 added it (version 1 had no token).

use std::fmt;

use crate::error::{Error, ErrorCode};

/// Protocol version spoken here.
pub const VERSION: u16 = 2;

/// Largest `ERROR` reason, in bytes.
pub const MAX_REASON: usize = 256;

/// Bytes of a `DATA` message before its payload: the type and the seq.
pub const DATA_HEADER_LEN: usize = 9;

/// The first [`DATA_HEADER_LEN`] bytes of `DATA{seq, ..}`: write them, then
/// the payload, behind a frame header for `DATA_HEADER_LEN + payload.len()`
/// bytes, and the payload is never copied.
pub fn data_header(seq: u64) -> [u8; DATA_HEADER_LEN] {
    let mut h = [0; DATA_HEADER_LEN];
    h[0] = kind::DATA;
    h[1..].copy_from_slice(&seq.to_be_bytes());
    h
}

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
        /// The session's secret: binds the session to its owner.
        token: Token,
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
                token,
            } => write!(
                f,
                "HELLO{{session {session}, v{version}, window {window}, token {}...}}",
                &token.to_hex()[..4]
            ),
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
            Message::Error { code, reason } => write!(f, "ERROR{{{code}: {reason}}}"),
        }
    }
}

impl<'a> Message<'a> {
    /// Appends the message's bytes (the frame's content, without the length
    /// prefix) to `out`. An `ERROR` reason longer than [`MAX_REASON`] is cut
    /// at a character boundary.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Message::Hello {
                session,
                version,
                window,
                token,
            } => {
                out.push(kind::HELLO);
                out.extend_from_slice(&session.to_be_bytes());
                out.extend_from_slice(&version.to_be_bytes());
                out.extend_from_slice(&window.to_be_bytes());
                out.extend_from_slice(&token.0);
            }
            Message::Welcome { processed, window } => {
                out.push(kind::WELCOME);
                out.extend_from_slice(&processed.to_be_bytes());
                out.extend_from_slice(&window.to_be_bytes());
            }
            Message::Data { seq, payload } => {
                out.extend_from_slice(&data_header(seq));
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
    /// [`Error::Protocol`] with [`ErrorCode::UnknownType`] for an unknown
    /// type byte, else [`ErrorCode::Malformed`], and a reason naming what is
    /// wrong: empty frame, truncated, trailing bytes, a reason that is not
    /// UTF-8 or longer than [`MAX_REASON`]. Never panics, allocates only the
    /// error's reason.
    pub fn decode(frame: &'a [u8]) -> Result<Message<'a>, Error> {
        let Some((&kind, body)) = frame.split_first() else {
            return Err(malformed("empty frame, expected a message type byte"));
        };
        let fixed = |len: usize, name: &str| -> Result<Fields<'a>, Error> {
            if body.len() < len {
                return Err(malformed(format!(
                    "{name} truncated: {} bytes after the type, expected {len}",
                    body.len()
                )));
            }
            if body.len() > len {
                return Err(malformed(format!(
                    "{name} has {} trailing bytes after its {len}",
                    body.len() - len
                )));
            }
            Ok(Fields(body))
        };
        Ok(match kind {
            kind::HELLO => {
                let mut f = fixed(30, "HELLO")?;
                Message::Hello {
                    session: f.u64(),
                    version: f.u16(),
                    window: f.u32(),
                    token: Token(f.take()),
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
                        "DATA truncated: {} bytes after the type, expected at least 8 (the seq)",
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
                if body.len() < 2 {
                    return Err(malformed(format!(
                        "ERROR truncated: {} bytes after the type, expected at least 2 (the code)",
                        body.len()
                    )));
                }
                let (code, reason) = body.split_at(2);
                if reason.len() > MAX_REASON {
                    return Err(malformed(format!(
                        "ERROR reason of {} bytes, at most {MAX_REASON}",
                        reason.len()
                    )));
                }
                let reason = std::str::from_utf8(reason).map_err(|e| {
                    malformed(format!(
                        "ERROR reason is not UTF-8 (bad byte at {})",
                        e.valid_up_to()
                    ))
                })?;
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

/// A session's secret: 128 random bits the client draws when it starts a
/// session and presents on every resume (`HELLO.token`).
///
/// `Debug` shows only its first 2 bytes, so logs do not leak it; `Display`
/// and [`Token::to_hex`] give it whole (32 hex digits), for the user who
/// must keep it to resume.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Token(pub [u8; 16]);

impl Token {
    /// Draws a fresh token from the kernel's random source
    /// (`getrandom(2)`).
    ///
    /// # Errors
    /// [`Error::Io`] when the kernel refuses.
    pub fn random() -> Result<Token, Error> {
        let mut bytes = [0u8; 16];
        let mut filled = 0;
        while filled < bytes.len() {
            let rest = &mut bytes[filled..];
            // SAFETY: the pointer and length describe `rest`, writable.
            let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::io("drawing a session token (getrandom)", e));
            }
            filled += n as usize;
        }
        Ok(Token(bytes))
    }

    /// The 32 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 32 hex digits.
    ///
    /// # Errors
    /// A message naming what is wrong, for a command line.
    pub fn from_hex(s: &str) -> Result<Token, String> {
        let s = s.trim();
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "expected a session token of 32 hex digits, got {:?} ({} characters)",
                truncate_utf8(s, 40),
                s.chars().count()
            ));
        }
        let mut out = [0u8; 16];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
                .map_err(|e| format!("session token: {e}"))?;
        }
        Ok(Token(out))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
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
    use proptest::prelude::*;

    fn all() -> Vec<Message<'static>> {
        vec![
            Message::Hello {
                session: 7,
                version: VERSION,
                window: 32,
                token: Token([0xa5; 16]),
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

    /// Every message's bytes, written out by hand from the diagrams.
    #[test]
    fn wire_images_both_ways() {
        let cases: Vec<(Message<'static>, &[u8])> = vec![
            (
                Message::Hello {
                    session: 0x0102_0304_0506_0708,
                    version: 2,
                    window: 32,
                    token: Token(*b"0123456789abcdef"),
                },
                b"\x01\x01\x02\x03\x04\x05\x06\x07\x08\x00\x02\x00\x00\x00\x200123456789abcdef",
            ),
            (
                Message::Welcome {
                    processed: 3,
                    window: 16,
                },
                b"\x02\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x10",
            ),
            (
                Message::Data {
                    seq: 7,
                    payload: b"msg 7 ..",
                },
                b"\x03\x00\x00\x00\x00\x00\x00\x00\x07msg 7 ..",
            ),
            (
                Message::Ack { processed: 0x100 },
                b"\x04\x00\x00\x00\x00\x00\x00\x01\x00",
            ),
            (
                Message::Close { count: 10 },
                b"\x05\x00\x00\x00\x00\x00\x00\x00\x0a",
            ),
            (
                Message::CloseAck {
                    processed: 10,
                    count: 10,
                    digest: 0xdead_beef_0bad_f00d,
                },
                b"\x06\x00\x00\x00\x00\x00\x00\x00\x0a\x00\x00\x00\x00\x00\x00\x00\x0a\xde\xad\xbe\xef\x0b\xad\xf0\x0d",
            ),
            (
                Message::Ping { nonce: 5 },
                b"\x07\x00\x00\x00\x00\x00\x00\x00\x05",
            ),
            (
                Message::Pong { nonce: 5 },
                b"\x08\x00\x00\x00\x00\x00\x00\x00\x05",
            ),
            (
                Message::Error {
                    code: ErrorCode::WindowExceeded,
                    reason: "full",
                },
                b"\x09\x00\x06full",
            ),
        ];
        for (msg, bytes) in cases {
            let mut out = Vec::new();
            msg.encode(&mut out);
            assert_eq!(out, bytes, "{msg}");
            assert_eq!(Message::decode(bytes).unwrap(), msg);
        }
        let mut out = Vec::new();
        Message::Data {
            seq: 7,
            payload: b"xy",
        }
        .encode(&mut out);
        assert_eq!(out[..DATA_HEADER_LEN], data_header(7));
    }

    fn reason(frame: &[u8]) -> (ErrorCode, String) {
        match Message::decode(frame) {
            Err(Error::Protocol { code, reason }) => (code, reason),
            other => panic!("{frame:02x?} gave {other:?}"),
        }
    }

    #[test]
    fn each_bad_frame_gets_a_precise_reason() {
        let mut ack = vec![4, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            reason(&ack),
            (
                ErrorCode::Malformed,
                "ACK truncated: 7 bytes after the type, expected 8".into()
            )
        );
        ack.extend_from_slice(&[0, 1, 2]);
        assert_eq!(
            reason(&ack),
            (
                ErrorCode::Malformed,
                "ACK has 2 trailing bytes after its 8".into()
            )
        );
        assert_eq!(
            reason(&[3, 0, 0]).1,
            "DATA truncated: 2 bytes after the type, expected at least 8 (the seq)"
        );
        assert_eq!(
            reason(&[9, 0]).1,
            "ERROR truncated: 1 bytes after the type, expected at least 2 (the code)"
        );
        let mut long = vec![9, 0, 1];
        long.resize(3 + MAX_REASON + 1, b'x');
        assert_eq!(reason(&long).1, "ERROR reason of 257 bytes, at most 256");
        long.truncate(3 + MAX_REASON);
        assert!(Message::decode(&long).is_ok());
        assert_eq!(
            reason(&[9, 0, 1, b'o', b'k', 0xc3]).1,
            "ERROR reason is not UTF-8 (bad byte at 2)"
        );
        assert_eq!(reason(&[0]).0, ErrorCode::UnknownType);
        assert_eq!(reason(&[0xff]).0, ErrorCode::UnknownType);
    }

    #[test]
    fn a_long_reason_is_cut_on_a_char_boundary_when_encoded() {
        let reason = "é".repeat(200);
        let mut out = Vec::new();
        Message::Error {
            code: ErrorCode::Malformed,
            reason: &reason,
        }
        .encode(&mut out);
        assert_eq!(out.len(), 3 + MAX_REASON);
        match Message::decode(&out).unwrap() {
            Message::Error { reason: r, .. } => assert_eq!(r, "é".repeat(128)),
            m => panic!("{m}"),
        }
    }

    fn any_message() -> impl Strategy<Value = (u8, u64, u64, u64, Vec<u8>)> {
        (
            1u8..=9,
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(any::<u8>(), 0..64),
        )
    }

    proptest! {
        /// Whatever arrives, decoding returns; it never panics.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
            let _ = Message::decode(&bytes);
        }

        /// Valid messages of every type and field value round-trip.
        #[test]
        fn every_message_round_trips_for_any_fields((kind, a, b, c, bytes) in any_message()) {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let msg = match kind {
                1 => Message::Hello { session: a, version: b as u16, window: c as u32, token: Token((u128::from(a) << 64 | u128::from(c)).to_be_bytes()) },
                2 => Message::Welcome { processed: a, window: b as u32 },
                3 => Message::Data { seq: a, payload: &bytes },
                4 => Message::Ack { processed: a },
                5 => Message::Close { count: a },
                6 => Message::CloseAck { processed: a, count: b, digest: c },
                7 => Message::Ping { nonce: a },
                8 => Message::Pong { nonce: a },
                _ => Message::Error { code: ErrorCode::from_u16(b as u16 % 11), reason: &text },
            };
            let mut out = Vec::new();
            msg.encode(&mut out);
            prop_assert_eq!(Message::decode(&out).unwrap(), msg);
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

    /// Pinned so that any other implementation can check itself: FNV-1a 64
    /// over `len u64 BE ++ payload` for each payload (computed separately).
    #[test]
    fn tokens_round_trip_through_hex_and_bad_hex_is_named() {
        let t = Token::random().unwrap();
        assert_eq!(Token::from_hex(&t.to_hex()).unwrap(), t);
        assert_ne!(Token::random().unwrap(), t, "two draws differ");
        assert_eq!(t.to_hex().len(), 32);
        assert!(
            !format!("{t:?}").contains(&t.to_hex()[4..]),
            "Debug hides it"
        );
        for bad in ["", "12", "zz", &"0".repeat(33), &"g".repeat(32)] {
            let e = Token::from_hex(bad).unwrap_err();
            assert!(e.contains("32 hex digits"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn digest_known_value() {
        assert_eq!(Digest::default().value(), 0xcbf2_9ce4_8422_2325);
        let mut d = Digest::default();
        d.update(b"msg 0 ...");
        d.update(b"msg 1 ...");
        assert_eq!(d.value(), 0xd130_3746_dfa5_b4a6);
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
