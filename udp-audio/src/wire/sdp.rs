//! The SDP lines that describe an L16 stream (RFC 4566, RFC 3551 §6): written by the sender
//! for players such as ffmpeg, read by the receiver (`--sdp`).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use crate::error::{Error, Result};
use crate::wire::l16::{AudioFormat, PT_L16_MONO, PT_L16_STEREO, StreamParams};

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
