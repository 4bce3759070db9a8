//! The crate's errors: [`ParseError`] for one bad datagram, [`Error`] for the process.
//!
//! Every variant carries the values that explain the failure (lengths found and needed,
//! counts, the offending line), so a driver can log it as is and count it by [`Error::kind`].

use thiserror::Error;

/// Everything that can go wrong in a process: bad configuration, files, sockets.
///
/// Bad datagrams from the network are [`ParseError`]s (here as [`Error::Parse`]); drivers
/// count them per [`ParseError::kind`] and drop the datagram. None of these is ever a panic.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A datagram or payload that does not parse ([`ParseError`], with its kind).
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A sample buffer handed to the core is not a whole number of frames.
    #[error("{samples} samples are not a whole number of {channels}-channel frames")]
    PartialSamples {
        /// Samples given.
        samples: usize,
        /// Channels in the stream.
        channels: u16,
    },
    /// An audio format the core cannot use.
    #[error("unsupported audio format: {rate} Hz, {channels} channels ({reason})")]
    BadFormat {
        /// Sample rate in Hz.
        rate: u32,
        /// Channel count.
        channels: u16,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A header that cannot be emitted as RTP.
    #[error("cannot build RTP header: {reason}")]
    BadHeader {
        /// What is out of range.
        reason: &'static str,
    },
    /// An SDP description that does not describe an L16 audio stream we can receive.
    #[error("SDP: {reason} (line {line:?})")]
    Sdp {
        /// What is wrong.
        reason: &'static str,
        /// The offending line, or empty when something is missing.
        line: String,
    },
    /// A WAV file that cannot be read or written; `reason` names the format found.
    #[error("WAV {path}: {reason}")]
    Wav {
        /// The file.
        path: String,
        /// What was found and what was expected.
        reason: String,
    },
    /// An operating-system call failed; the OS error is kept as the source.
    #[error("{context}: {source}")]
    Io {
        /// What was being done (with the address or path).
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A path names a FIFO, socket, directory or device where a regular file is needed
    /// (reading one would block until some other process opened it).
    #[error("{path} is {found}: expected a regular file")]
    NotRegularFile {
        /// The path given.
        path: String,
        /// What it is ("a FIFO", "a directory", ...).
        found: &'static str,
    },
    /// The receiver waited its first timeout and no source passed probation.
    #[error(
        "no RTP stream on {listen} within {waited}: {datagrams} datagrams, {sources} sources \
         heard, none passed probation (2 packets in sequence)"
    )]
    NoStream {
        /// The address listened on.
        listen: String,
        /// How long it waited, in words ("1.5 s").
        waited: String,
        /// Datagrams that arrived.
        datagrams: u64,
        /// Sources heard.
        sources: usize,
    },
    /// A configuration value out of range.
    #[error("bad configuration: {what}")]
    Config {
        /// Which value and why.
        what: String,
    },
}

impl Error {
    /// A short stable name for counting errors by kind in reports (`"truncated"`,
    /// `"wrong_version"`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Parse(e) => e.kind().as_str(),
            Error::PartialSamples { .. } => "partial_samples",
            Error::BadFormat { .. } => "bad_format",
            Error::BadHeader { .. } => "bad_header",
            Error::Sdp { .. } => "sdp",
            Error::Wav { .. } => "wav",
            Error::Io { .. } => "io",
            Error::NotRegularFile { .. } => "not_regular_file",
            Error::NoStream { .. } => "no_stream",
            Error::Config { .. } => "config",
        }
    }
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, err: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source: err,
        }
    }
}

/// Why one datagram (or its payload) does not parse: cheap, `Clone`, and carrying the values
/// found, so a receiver counts it by [`ParseError::kind`] and goes on with the next one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The datagram is shorter than the 12-byte fixed RTP header.
    #[error("truncated RTP header: {len} bytes, the fixed header needs {needed}")]
    Truncated {
        /// Bytes in the datagram.
        len: usize,
        /// Bytes the fixed header needs.
        needed: usize,
    },
    /// The version field is not 2: not RTP (or RTP version 0/1).
    #[error("not RTP: version field is {version}, expected 2")]
    WrongVersion {
        /// The two version bits found.
        version: u8,
    },
    /// The CSRC count asks for more bytes than the datagram holds.
    #[error("CSRC count {count} needs {needed} header bytes, the datagram has {len}")]
    CsrcBeyondDatagram {
        /// The CC field.
        count: u8,
        /// Bytes the fixed header plus CSRC list need.
        needed: usize,
        /// Bytes in the datagram.
        len: usize,
    },
    /// The header extension (its 4-byte head or its declared length) runs past the datagram.
    #[error("header extension of {words} words needs {needed} bytes, the datagram has {len}")]
    ExtensionBeyondDatagram {
        /// The extension length field in 32-bit words (0 when even the extension head is missing).
        words: u16,
        /// Bytes needed up to the end of the extension.
        needed: usize,
        /// Bytes in the datagram.
        len: usize,
    },
    /// The P bit is set and the padding count is zero or larger than what follows the header.
    #[error("padding count {padding} is invalid: {available} bytes follow the header")]
    BadPadding {
        /// The last byte of the datagram (padding length, counting itself).
        padding: u8,
        /// Bytes between the end of the header and the end of the datagram.
        available: usize,
    },
    /// An RTCP packet shorter than its header, its length field or its type needs.
    #[error("truncated {what}: {len} bytes, {needed} needed")]
    RtcpTruncated {
        /// What was being read ("RTCP header", "RTCP sender report", ...).
        what: &'static str,
        /// Bytes there are.
        len: usize,
        /// Bytes needed.
        needed: usize,
    },
    /// An RTCP packet of another type than the one asked for.
    #[error("RTCP packet type {found}, expected {expected}")]
    RtcpType {
        /// The type wanted.
        expected: u8,
        /// The type found.
        found: u8,
    },
    /// An L16 payload that is not a whole number of sample frames.
    #[error(
        "L16 payload of {len} bytes is not a whole number of {channels}-channel frames ({frame_bytes} bytes each)"
    )]
    PartialFrame {
        /// Payload length in bytes.
        len: usize,
        /// Channels in the stream.
        channels: u16,
        /// Bytes per sample frame (2 × channels).
        frame_bytes: usize,
    },
}

/// The kind of a [`ParseError`], for counting; [`ParseErrorKind::as_str`] is the stable
/// name reports use (`"truncated"`, `"wrong_version"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// [`ParseError::Truncated`].
    Truncated,
    /// [`ParseError::WrongVersion`].
    WrongVersion,
    /// [`ParseError::CsrcBeyondDatagram`].
    CsrcBeyondDatagram,
    /// [`ParseError::ExtensionBeyondDatagram`].
    ExtensionBeyondDatagram,
    /// [`ParseError::BadPadding`].
    BadPadding,
    /// [`ParseError::RtcpTruncated`].
    RtcpTruncated,
    /// [`ParseError::RtcpType`].
    RtcpType,
    /// [`ParseError::PartialFrame`].
    PartialFrame,
}

impl ParseErrorKind {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            ParseErrorKind::Truncated => "truncated",
            ParseErrorKind::WrongVersion => "wrong_version",
            ParseErrorKind::CsrcBeyondDatagram => "csrc_beyond_datagram",
            ParseErrorKind::ExtensionBeyondDatagram => "extension_beyond_datagram",
            ParseErrorKind::BadPadding => "bad_padding",
            ParseErrorKind::RtcpTruncated => "rtcp_truncated",
            ParseErrorKind::RtcpType => "rtcp_type",
            ParseErrorKind::PartialFrame => "partial_frame",
        }
    }
}

impl std::fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ParseError {
    /// The kind, for counting.
    pub fn kind(&self) -> ParseErrorKind {
        match self {
            ParseError::Truncated { .. } => ParseErrorKind::Truncated,
            ParseError::WrongVersion { .. } => ParseErrorKind::WrongVersion,
            ParseError::CsrcBeyondDatagram { .. } => ParseErrorKind::CsrcBeyondDatagram,
            ParseError::ExtensionBeyondDatagram { .. } => ParseErrorKind::ExtensionBeyondDatagram,
            ParseError::BadPadding { .. } => ParseErrorKind::BadPadding,
            ParseError::RtcpTruncated { .. } => ParseErrorKind::RtcpTruncated,
            ParseError::RtcpType { .. } => ParseErrorKind::RtcpType,
            ParseError::PartialFrame { .. } => ParseErrorKind::PartialFrame,
        }
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod test {
    use super::*;
    use crate::rtp::RtpPacket;

    #[test]
    fn parse_errors_have_kinds_and_stay_cloneable() {
        let cases: [(&[u8], ParseErrorKind, &str); 4] = [
            (&[0x80; 5], ParseErrorKind::Truncated, "truncated"),
            (&[0x40; 12], ParseErrorKind::WrongVersion, "wrong_version"),
            (
                &[0x8f; 12],
                ParseErrorKind::CsrcBeyondDatagram,
                "csrc_beyond_datagram",
            ),
            (
                &[0x90; 12],
                ParseErrorKind::ExtensionBeyondDatagram,
                "extension_beyond_datagram",
            ),
        ];
        for (bytes, kind, name) in cases {
            let e = RtpPacket::new_checked(bytes).unwrap_err();
            assert_eq!(e.kind(), kind, "{bytes:?}");
            assert_eq!(e.kind().as_str(), name);
            assert_eq!(e.kind().to_string(), name);
            let copy = e.clone();
            assert_eq!(copy, e);
            // As a process error it keeps the same kind name and message.
            let process = Error::from(e);
            assert_eq!(process.kind(), name);
            assert_eq!(process.to_string(), copy.to_string());
        }
        let mut padded = vec![0xa0; 12];
        padded.push(0);
        assert_eq!(
            RtpPacket::new_checked(&padded).unwrap_err().kind(),
            ParseErrorKind::BadPadding
        );
        let partial = crate::l16::decode(&[1, 2, 3], 1, &mut Vec::new()).unwrap_err();
        assert_eq!(partial.kind(), ParseErrorKind::PartialFrame);
    }

    #[test]
    fn io_errors_keep_the_os_error_as_source() {
        use std::error::Error as _;
        let os = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        let text = os.to_string();
        let e = Error::io("sending to 127.0.0.1:9", os);
        assert_eq!(e.kind(), "io");
        assert_eq!(e.to_string(), format!("sending to 127.0.0.1:9: {text}"));
        let source = e.source().expect("the io::Error is the source");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("source is an io::Error");
        assert_eq!(io.raw_os_error(), Some(libc::ECONNREFUSED));
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}
