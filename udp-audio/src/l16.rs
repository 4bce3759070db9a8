//! L16 audio payload (RFC 3551 §4.5.11), payload-type and packet-size choice, and the SDP
//! lines that describe the stream (RFC 4566, RFC 3551 §6).
//!
//! L16 is signed 16-bit linear PCM in network byte order, channels interleaved per sample
//! frame; the RTP clock equals the sample rate, so the timestamp advances by one per frame.
//! Static payload types: 10 = 44.1 kHz stereo, 11 = 44.1 kHz mono; any other format uses a
//! dynamic type (96..=127) that only the SDP `a=rtpmap` line explains.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use crate::error::{Error, Result};

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
/// ([`Error::PartialFrame`]) and nothing is appended.
pub fn decode(payload: &[u8], channels: u16, out: &mut Vec<i16>) -> Result<usize> {
    let frame_bytes = 2 * usize::from(channels.max(1));
    if payload.len() % frame_bytes != 0 {
        return Err(Error::PartialFrame {
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

/// Writes an SDP session description for a stream sent to `dest`.
///
/// The result opens in `ffmpeg -protocol_whitelist file,udp,rtp -i FILE`, GStreamer's
/// `sdpdemux`/`filesrc ! sdpdemux` and VLC: `c=` carries the destination address, `m=` its
/// port and the payload type, `a=rtpmap:<pt> L16/<rate>/<channels>` (always written, also for
/// the static types) and `a=ptime`.
pub fn write_sdp(params: &StreamParams, dest: SocketAddr, session_name: &str) -> String {
    let (net, addr) = match dest.ip() {
        IpAddr::V4(a) => ("IP4", a.to_string()),
        IpAddr::V6(a) => ("IP6", a.to_string()),
    };
    let mut s = String::new();
    let pt = params.payload_type;
    let _ = write!(
        s,
        "v=0\r\no=- 0 0 IN {net} {addr}\r\ns={name}\r\nc=IN {net} {addr}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {pt}\r\na=rtpmap:{pt} L16/{rate}/{ch}\r\na=ptime:{ptime}\r\n",
        name = if session_name.is_empty() {
            "-"
        } else {
            session_name
        },
        port = dest.port(),
        rate = params.format.rate,
        ch = params.format.channels,
        ptime = params.ptime_ms(),
    );
    s
}

/// What a receiver needs from an SDP description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpStream {
    /// The audio format from `a=rtpmap` (or the static type's definition).
    pub format: AudioFormat,
    /// The payload type from the `m=audio` line that is L16.
    pub payload_type: u8,
    /// The port of the `m=audio` line.
    pub port: u16,
    /// The `c=` address (session or media level), if any.
    pub address: Option<IpAddr>,
    /// `a=ptime`, if given.
    pub ptime_ms: Option<u32>,
}

fn sdp_err(reason: &'static str, line: &str) -> Error {
    Error::Sdp {
        reason,
        line: line.to_string(),
    }
}

/// Reads the first `m=audio` stream whose payload type is L16 (by `a=rtpmap` or static 10/11).
///
/// Accepts `\n` or `\r\n` line ends, encoding names in any case and a missing channel count
/// (1, as RFC 4566 says). Lines it does not need are ignored.
pub fn read_sdp(text: &str) -> Result<SdpStream> {
    let mut address = None;
    let mut media: Option<(u16, Vec<u8>)> = None;
    let mut rtpmaps: Vec<(u8, AudioFormat)> = Vec::new();
    let mut ptime_ms = None;
    for raw in text.lines() {
        let line = raw.trim();
        if let Some(rest) = line.strip_prefix("c=") {
            let mut it = rest.split_whitespace();
            let (_in, _net, addr) = (it.next(), it.next(), it.next());
            let addr = addr.ok_or_else(|| sdp_err("c= line without address", line))?;
            // Multicast may carry "/ttl"; keep the address only.
            let addr = addr.split('/').next().unwrap_or(addr);
            address = Some(
                addr.parse()
                    .map_err(|_| sdp_err("c= address is not an IP", line))?,
            );
        } else if let Some(rest) = line.strip_prefix("m=") {
            if media.is_some() {
                continue; // the first audio stream wins; later m= lines do not override it
            }
            let mut it = rest.split_whitespace();
            if it.next() != Some("audio") {
                continue;
            }
            let port = it
                .next()
                .and_then(|p| p.split('/').next())
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| sdp_err("m=audio port is not a number", line))?;
            let _proto = it.next();
            let pts = it
                .filter_map(|p| p.parse::<u8>().ok())
                .filter(|p| *p < 128)
                .collect();
            media = Some((port, pts));
        } else if let Some(rest) = line.strip_prefix("a=rtpmap:") {
            let (pt, enc) = rest
                .split_once(char::is_whitespace)
                .ok_or_else(|| sdp_err("a=rtpmap without encoding", line))?;
            let Ok(pt) = pt.parse::<u8>() else {
                return Err(sdp_err("a=rtpmap payload type is not a number", line));
            };
            let mut parts = enc.trim().split('/');
            if !parts.next().is_some_and(|n| n.eq_ignore_ascii_case("L16")) {
                continue;
            }
            let rate = parts
                .next()
                .and_then(|r| r.parse().ok())
                .ok_or_else(|| sdp_err("a=rtpmap L16 without a clock rate", line))?;
            let channels = match parts.next() {
                None => 1,
                Some(c) => c
                    .parse()
                    .map_err(|_| sdp_err("a=rtpmap channel count is not a number", line))?,
            };
            rtpmaps.push((pt, AudioFormat::new(rate, channels)?));
        } else if let Some(rest) = line.strip_prefix("a=ptime:") {
            ptime_ms = rest.trim().split('.').next().and_then(|p| p.parse().ok());
        }
    }
    let (port, pts) = media.ok_or_else(|| sdp_err("no m=audio line", ""))?;
    for pt in pts {
        let format = match rtpmaps.iter().find(|(p, _)| *p == pt) {
            Some((_, f)) => *f,
            None if pt == PT_L16_STEREO => AudioFormat {
                rate: 44_100,
                channels: 2,
            },
            None if pt == PT_L16_MONO => AudioFormat {
                rate: 44_100,
                channels: 1,
            },
            None => continue,
        };
        return Ok(SdpStream {
            format,
            payload_type: pt,
            port,
            address,
            ptime_ms,
        });
    }
    Err(sdp_err("no L16 payload type on the m=audio line", ""))
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
            Err(Error::PartialFrame {
                len: 6,
                channels: 2,
                frame_bytes: 4
            })
        );
        assert!(matches!(
            decode(&[0; 3], 1, &mut out),
            Err(Error::PartialFrame { .. })
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

    #[test]
    fn sdp_round_trip() {
        let params = StreamParams::new(AudioFormat::new(48_000, 2).unwrap(), 20, Some(97)).unwrap();
        let sdp = write_sdp(&params, "127.0.0.1:5004".parse().unwrap(), "udp-audio");
        assert!(sdp.contains("m=audio 5004 RTP/AVP 97\r\n"));
        assert!(sdp.contains("a=rtpmap:97 L16/48000/2\r\n"));
        assert!(
            sdp.contains("a=ptime:8\r\n"),
            "365 frames of 48 kHz is 7.6 ms: {sdp}"
        );
        let back = read_sdp(&sdp).unwrap();
        assert_eq!(back.format, params.format);
        assert_eq!(back.payload_type, 97);
        assert_eq!(back.port, 5004);
        assert_eq!(back.address, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(back.ptime_ms, Some(params.ptime_ms()));
        let v6 = write_sdp(&params, "[::1]:6000".parse().unwrap(), "");
        assert!(v6.contains("c=IN IP6 ::1\r\n"));
        assert_eq!(read_sdp(&v6).unwrap().address, Some("::1".parse().unwrap()));
    }

    #[test]
    fn reads_ffmpeg_style_sdp() {
        // As written by `ffmpeg -c:a pcm_s16be -f rtp -sdp_file` for 16 kHz mono.
        let sdp = "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=No Name\nc=IN IP4 127.0.0.1\nt=0 0\n\
                   a=tool:libavformat 61.7.100\nm=audio 5004 RTP/AVP 97\nb=AS:256\n\
                   a=rtpmap:97 L16/16000/1\n";
        let s = read_sdp(sdp).unwrap();
        assert_eq!(
            (s.format.rate, s.format.channels, s.payload_type, s.port),
            (16_000, 1, 97, 5004)
        );
        assert_eq!(s.ptime_ms, None);
    }

    #[test]
    fn reads_static_types_and_defaults() {
        let s = read_sdp("m=audio 7000 RTP/AVP 0 10\r\n").unwrap();
        assert_eq!(
            (s.payload_type, s.format),
            (
                10,
                AudioFormat {
                    rate: 44_100,
                    channels: 2
                }
            )
        );
        let s = read_sdp("m=audio 7000 RTP/AVP 98\r\na=rtpmap:98 l16/8000\r\n").unwrap();
        assert_eq!(
            s.format,
            AudioFormat {
                rate: 8000,
                channels: 1
            }
        );
        assert!(matches!(
            read_sdp("m=audio 7000 RTP/AVP 0\r\n"),
            Err(Error::Sdp { .. })
        ));
        assert!(matches!(read_sdp("v=0\r\n"), Err(Error::Sdp { .. })));
        assert!(matches!(
            read_sdp("m=audio x RTP/AVP 96\r\n"),
            Err(Error::Sdp { .. })
        ));
        assert!(read_sdp("m=audio 1 RTP/AVP 96\na=rtpmap:96 L16/0/1\n").is_err());
    }
}
