//! Interoperability with the real programs people use: ffmpeg and GStreamer, both ways,
//! with 16 kHz mono, 44.1 kHz stereo (PT 10) and 48 kHz stereo (dynamic PT). With no loss,
//! every direction must be bit-identical. `scripts/test` installs ffmpeg and GStreamer.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use test_support::free_udp_port;

const SECS: f64 = 1.5;

fn send_args(input: &Path, to: &str) -> Vec<String> {
    vec![
        "send".into(),
        input.display().to_string(),
        "--to".into(),
        to.into(),
        "--json".into(),
    ]
}

/// An even port whose successor is free too (RTP and RTCP), for ffmpeg as a receiver.
fn free_port_pair() -> u16 {
    loop {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p % 2 == 0 && p < u16::MAX && std::net::UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

fn assert_same_audio(sent: &[i16], received: &Path, rate: u32, channels: u16) {
    let (got, r, c) = read_samples(received);
    assert_eq!((r, c), (rate, channels), "format of {}", received.display());
    assert_eq!(
        got.len(),
        sent.len(),
        "sample count of {}",
        received.display()
    );
    let first_diff = got.iter().zip(sent).position(|(a, b)| a != b);
    assert_eq!(
        first_diff,
        None,
        "{} differs from the input",
        received.display()
    );
}

/// ffmpeg sends with its own SDP; `udp-audio recv --sdp` writes the input back exactly.
fn ffmpeg_to_us(rate: u32, channels: u16) {
    require("ffmpeg");
    let dir = scratch(&format!("ff2us-{rate}-{channels}"));
    let input = dir.join("in.wav");
    let sent = write_signal(&input, rate, channels, SECS);
    // ffmpeg writes its SDP as it starts: take it from a short run to the discard port.
    let sdp = dir.join("ffmpeg.sdp");
    run_ok(
        Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y", "-t", "0.05", "-i"])
            .arg(&input)
            .args(["-c:a", "pcm_s16be", "-f", "rtp", "-sdp_file"])
            .arg(&sdp)
            .arg("rtp://127.0.0.1:9"),
    );
    let out = dir.join("out.wav");
    let recv = Listening::recv(&[
        "--sdp",
        sdp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--idle-timeout",
        "0.5",
    ]);
    run_ok(
        Command::new("ffmpeg")
            .args(["-loglevel", "error", "-re", "-i"])
            .arg(&input)
            .args([
                "-c:a",
                "pcm_s16be",
                "-f",
                "rtp",
                &format!("rtp://{}", recv.addr),
            ]),
    );
    let report = recv.finish_json();
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["late"], 0, "{report}");
    assert_eq!(report["concealed_ms"], 0.0, "{report}");
    assert_same_audio(&sent, &out, rate, channels);
}

/// `udp-audio send --sdp` to `ffmpeg -i ours.sdp out.wav`: bit-identical; our RTCP BYE ends
/// ffmpeg's input.
fn us_to_ffmpeg(rate: u32, channels: u16, expect_pt: u8) {
    require("ffmpeg");
    let dir = scratch(&format!("us2ff-{rate}-{channels}"));
    let input = dir.join("in.wav");
    let sent = write_signal(&input, rate, channels, SECS);
    let port = free_port_pair();
    let to = format!("127.0.0.1:{port}");
    let sdp = dir.join("ours.sdp");
    let mut args = send_args(&input, &to);
    args.extend([
        "--sdp".into(),
        sdp.display().to_string(),
        "--sdp-only".into(),
    ]);
    run_ok(bin().args(&args));
    let text = std::fs::read_to_string(&sdp).unwrap();
    assert!(
        text.contains(&format!("m=audio {port} RTP/AVP {expect_pt}")),
        "{text}"
    );
    let out = dir.join("out.wav");
    let ff = Running::spawn(
        Command::new("ffmpeg")
            .args([
                "-loglevel",
                "debug",
                "-y",
                "-protocol_whitelist",
                "file,udp,rtp",
                "-i",
            ])
            .arg(&sdp)
            .arg(&out),
    );
    // Both the RTP and the RTCP socket are open.
    ff.wait_for_lines(Stream::Stderr, "receive buffer size reported", 2);
    let report = run_json(bin().args(send_args(&input, &to)));
    assert_eq!(report["payload_type"], expect_pt);
    let end = ff.finish();
    assert_eq!(end.code(), Some(0), "ffmpeg failed: {}", end.stderr);
    assert_same_audio(&sent, &out, rate, channels);
}

#[test]
fn ffmpeg_sends_16k_mono_and_we_write_it_exactly() {
    ffmpeg_to_us(16000, 1);
}

#[test]
fn ffmpeg_sends_44k_stereo_and_48k_stereo() {
    ffmpeg_to_us(44100, 2);
    ffmpeg_to_us(48000, 2);
}

#[test]
fn we_send_16k_mono_and_ffmpeg_writes_it_exactly() {
    us_to_ffmpeg(16000, 1, 96);
}

#[test]
fn we_send_44k_stereo_as_pt_10_and_48k_stereo_as_dynamic() {
    us_to_ffmpeg(44100, 2, 10);
    us_to_ffmpeg(48000, 2, 96);
}

/// GStreamer's `udpsrc ! rtpL16depay` receives our stream exactly. udpsrc's timeout message
/// tells us it has drained the socket before we stop the pipeline with EOS.
fn us_to_gstreamer(rate: u32, channels: u16) {
    require("gst-launch-1.0");
    let dir = scratch(&format!("us2gst-{rate}-{channels}"));
    let input = dir.join("in.wav");
    let sent = write_signal(&input, rate, channels, SECS);
    let port = free_udp_port();
    let out = dir.join("out.wav");
    let pt = if rate == 44100 && channels == 2 {
        10
    } else {
        96
    };
    let caps = format!(
        "application/x-rtp,media=audio,clock-rate={rate},encoding-name=L16,channels={channels},payload={pt}"
    );
    let gst = Running::spawn(
        Command::new("gst-launch-1.0")
            .args([
                "-e",
                "-m",
                "udpsrc",
                &format!("port={port}"),
                "address=127.0.0.1",
                "timeout=300000000",
            ])
            .arg(format!("caps={caps}"))
            .args([
                "!",
                "rtpL16depay",
                "!",
                "audioconvert",
                "!",
                "wavenc",
                "!",
                "filesink",
            ])
            .arg(format!("location={}", out.display())),
    );
    gst.wait_for_line(Stream::Stdout, |l| {
        l.contains("Setting pipeline to PLAYING")
    });
    run_ok(bin().args(send_args(&input, &format!("127.0.0.1:{port}"))));
    // No data for 300 ms after the stream: everything sent has been read.
    gst.wait_for_line(Stream::Stdout, |l| l.contains("GstUDPSrcTimeout"));
    gst.interrupt();
    let end = gst.finish();
    assert_eq!(end.code(), Some(0), "gst-launch failed: {}", end.stderr);
    assert_same_audio(&sent, &out, rate, channels);
}

#[test]
fn gstreamer_receives_our_16k_mono_and_48k_stereo() {
    us_to_gstreamer(16000, 1);
    us_to_gstreamer(48000, 2);
}

/// GStreamer's `rtpL16pay ! udpsink` (real-time, MTU-filled packets) to our receiver.
#[test]
fn gstreamer_sends_44k_and_48k_stereo_to_us() {
    require("gst-launch-1.0");
    for (rate, channels) in [(44100u32, 2u16), (48000, 2)] {
        let dir = scratch(&format!("gst2us-{rate}-{channels}"));
        let input = dir.join("in.wav");
        let sent = write_signal(&input, rate, channels, SECS);
        let out = dir.join("out.wav");
        let recv = Listening::recv(&[
            "--rate",
            &rate.to_string(),
            "--channels",
            &channels.to_string(),
            "--out",
            out.to_str().unwrap(),
            "--idle-timeout",
            "0.5",
        ]);
        run_ok(
            Command::new("gst-launch-1.0")
                .args(["-q", "filesrc"])
                .arg(format!("location={}", input.display()))
                .args([
                    "!",
                    "wavparse",
                    "!",
                    "audioconvert",
                    "!",
                    "rtpL16pay",
                    "!",
                    "udpsink",
                ])
                .args([
                    format!("host={}", recv.addr.ip()),
                    format!("port={}", recv.addr.port()),
                ]),
        );
        let report = recv.finish_json();
        assert_eq!(report["lost"], 0, "{report}");
        assert_eq!(report["concealed_ms"], 0.0, "{report}");
        assert_same_audio(&sent, &out, rate, channels);
    }
}
