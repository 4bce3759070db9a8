//! L16 audio payload (RFC 3551 §4.5.11) and payload-type and packet-size choice. The SDP
//! lines that describe the stream are in [`crate::wire::sdp`] (re-exported here).
//!
//! L16 is signed 16-bit linear PCM in network byte order, channels interleaved per sample
//! frame; the RTP clock equals the sample rate, so the timestamp advances by one per frame.
//! Static payload types: 10 = 44.1 kHz stereo, 11 = 44.1 kHz mono; any other format uses a
//! dynamic type (96..=127) that only the SDP `a=rtpmap` line explains.

use crate::error::{Error, ParseError, Result};
pub use crate::wire::sdp::{SdpStream, read_sdp, write_sdp};

/// Largest payload a packet may carry so that header + payload fit a 1500-byte Ethernet MTU
/// with IPv4/IPv6 and UDP headers (what ffmpeg uses for L16 too).
pub const MAX_PAYLOAD: usize = 1460;
/// Default packet duration.
pub const DEFAULT_PTIME_MS: u32 = 20;
/// Default dynamic payload type when the format has no static one.
pub const DEFAULT_DYNAMIC_PT: u8 = 96;
/// Static payload type for 44.1 kHz stereo L16.
pub const PT_L16_STEREO: u8 = 10;
/// Static payload type for 44.1 kHz mono L16.
pub const PT_L16_MONO: u8 = 11;

/// Sample rate and channel count of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AudioFormat {
    /// Samples per second per channel; also the RTP clock rate.
    pub rate: u32,
    /// Interleaved channels.
    pub channels: u16,
}

impl AudioFormat {
    /// Checks the values: rate 1..=384000 Hz, 1..=16 channels (whole frames must fit a packet).
    pub fn new(rate: u32, channels: u16) -> Result<Self> {
        if rate == 0 || rate > 384_000 {
            return Err(Error::BadFormat {
                rate,
                channels,
                reason: "rate must be from 1 to 384000 Hz",
            });
        }
        if channels == 0 || channels > 16 {
            return Err(Error::BadFormat {
                rate,
                channels,
                reason: "channels must be from 1 to 16",
            });
        }
        Ok(AudioFormat { rate, channels })
    }

    /// Bytes per sample frame (all channels).
    pub fn frame_bytes(&self) -> usize {
        2 * usize::from(self.channels)
    }

    /// Sample frames in `ms` milliseconds, rounded down.
    pub fn frames_in_ms(&self, ms: u32) -> usize {
        (u64::from(self.rate) * u64::from(ms) / 1000) as usize
    }

    /// The static payload type of this format, if RFC 3551 assigns one.
    pub fn static_payload_type(&self) -> Option<u8> {
        match (self.rate, self.channels) {
            (44_100, 2) => Some(PT_L16_STEREO),
            (44_100, 1) => Some(PT_L16_MONO),
            _ => None,
        }
    }
}

/// Appends `samples` (interleaved i16) as an L16 payload: big-endian, in order.
pub fn encode(samples: &[i16], out: &mut Vec<u8>) {
    out.reserve(samples.len() * 2);
    for s in samples {
        out.extend_from_slice(&s.to_be_bytes());
    }
}

/// Appends the samples of an L16 `payload` for `channels` channels to `out`; returns the
/// number of sample frames. A payload that is not a whole number of frames is refused
/// ([`ParseError::PartialFrame`]) and nothing is appended.
pub fn decode(
    payload: &[u8],
    channels: u16,
    out: &mut Vec<i16>,
) -> std::result::Result<usize, ParseError> {
    let frame_bytes = 2 * usize::from(channels.max(1));
    if payload.len() % frame_bytes != 0 {
        return Err(ParseError::PartialFrame {
            len: payload.len(),
            channels,
            frame_bytes,
        });
    }
    out.extend(
        payload
            .chunks_exact(2)
            .map(|b| i16::from_be_bytes([b[0], b[1]])),
    );
    Ok(payload.len() / frame_bytes)
}

/// How a sender packetises a stream: format, payload type and frames per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamParams {
    /// Audio format.
    pub format: AudioFormat,
    /// RTP payload type.
    pub payload_type: u8,
    /// Sample frames per packet (= timestamp increment per packet).
    pub frames_per_packet: usize,
}

impl StreamParams {
    /// Chooses the payload type and packet size.
    ///
    /// `payload_type`: `None` picks 10/11 for 44.1 kHz stereo/mono and
    /// [`DEFAULT_DYNAMIC_PT`] otherwise; `Some(pt)` must be below 128. `ptime_ms` (0 is
    /// refused) is shortened so that one payload fits [`MAX_PAYLOAD`] bytes: 20 ms of 44.1 kHz
    /// stereo (3528 bytes) becomes 365 frames (1460 bytes, 8.3 ms).
    pub fn new(format: AudioFormat, ptime_ms: u32, payload_type: Option<u8>) -> Result<Self> {
        if ptime_ms == 0 {
            return Err(Error::Config {
                what: "ptime must be at least 1 ms".into(),
            });
        }
        let payload_type = match payload_type {
            Some(pt) if pt > 127 => {
                return Err(Error::Config {
                    what: format!("payload type {pt} is above 127"),
                });
            }
            Some(pt) => pt,
            None => format.static_payload_type().unwrap_or(DEFAULT_DYNAMIC_PT),
        };
        let wanted = format.frames_in_ms(ptime_ms).max(1);
        let fit = MAX_PAYLOAD / format.frame_bytes();
        Ok(StreamParams {
            format,
            payload_type,
            frames_per_packet: wanted.min(fit),
        })
    }

    /// Payload bytes of a full packet.
    pub fn payload_bytes(&self) -> usize {
        self.frames_per_packet * self.format.frame_bytes()
    }

    /// Packet duration in microseconds (what the pacer adds per packet).
    pub fn ptime_us(&self) -> u64 {
        self.frames_per_packet as u64 * 1_000_000 / u64::from(self.format.rate)
    }

    /// Packet duration in whole milliseconds as written in `a=ptime` (at least 1).
    pub fn ptime_ms(&self) -> u32 {
        ((self.ptime_us() + 500) / 1000).max(1) as u32
    }
}
#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn encode_is_big_endian_interleaved() {
        let mut out = Vec::new();
        encode(&[1, -2, 0x1234, i16::MIN], &mut out);
        assert_eq!(out, [0x00, 0x01, 0xff, 0xfe, 0x12, 0x34, 0x80, 0x00]);
        let mut back = Vec::new();
        assert_eq!(decode(&out, 2, &mut back).unwrap(), 2);
        assert_eq!(back, [1, -2, 0x1234, i16::MIN]);
    }

    #[test]
    fn partial_frames_are_refused() {
        let mut out = vec![];
        assert_eq!(
            decode(&[0; 6], 2, &mut out),
            Err(ParseError::PartialFrame {
                len: 6,
                channels: 2,
                frame_bytes: 4
            })
        );
        assert!(matches!(
            decode(&[0; 3], 1, &mut out),
            Err(ParseError::PartialFrame { .. })
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn payload_types_and_sizes() {
        let stereo = StreamParams::new(AudioFormat::new(44_100, 2).unwrap(), 20, None).unwrap();
        assert_eq!(stereo.payload_type, 10);
        assert_eq!(stereo.frames_per_packet, 365);
        assert!(stereo.payload_bytes() <= MAX_PAYLOAD);
        let mono = StreamParams::new(AudioFormat::new(44_100, 1).unwrap(), 20, None).unwrap();
        assert_eq!((mono.payload_type, mono.frames_per_packet), (11, 730));
        let wide = StreamParams::new(AudioFormat::new(16_000, 1).unwrap(), 20, None).unwrap();
        assert_eq!((wide.payload_type, wide.frames_per_packet), (96, 320));
        assert_eq!(wide.ptime_ms(), 20);
        let chosen = StreamParams::new(AudioFormat::new(48_000, 2).unwrap(), 5, Some(100)).unwrap();
        assert_eq!((chosen.payload_type, chosen.frames_per_packet), (100, 240));
        assert!(StreamParams::new(AudioFormat::new(8000, 1).unwrap(), 0, None).is_err());
        assert!(StreamParams::new(AudioFormat::new(8000, 1).unwrap(), 20, Some(128)).is_err());
        assert!(AudioFormat::new(0, 1).is_err() && AudioFormat::new(8000, 0).is_err());
    }
}
