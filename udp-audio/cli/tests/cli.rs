//! Socket-level tests of the `udp-audio` binary: hostile datagrams mixed into a real stream,
//! WAV files the sender cannot read, send → impair → recv end to end, `eval` on files, and
//! clear errors for bad arguments. Every socket is bound to 127.0.0.1:0; processes are
//! synchronised on the lines they print, never on sleeps.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use common::*;
use udp_audio::eval::SNR_CAP_DB;
use udp_audio::impair::{ImpairConfig, Impairer};

const RATE: u32 = 16000;
const FRAMES_PER_PACKET: usize = 320; // 20 ms at 16 kHz
const PT: u8 = 96;
const SSRC: u32 = 0x1234_abcd;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A valid 16 kHz mono stream with every kind of bad datagram mixed in over a real socket:
/// each is dropped and counted under its own kind, nothing is lost and the output WAV is the
/// signal bit for bit.
#[test]
fn hostile_datagrams_are_counted_by_kind_and_the_audio_is_exact() {
    let dir = scratch("cli-hostile");
    let input = dir.join("in.wav");
    let out = dir.join("out.wav");
    let signal = write_signal(&input, RATE, 1, 1.0); // 50 packets
    let recv = Listening::recv(&[
        "--rate",
        "16000",
        "--channels",
        "1",
        "--latency",
        "200",
        "--conceal",
        "g711",
        "--idle-timeout",
        "1",
        "--out",
        s(&out),
    ]);

    // Sequence numbers and timestamps both wrap during the stream.
    let seq0: u16 = 65_520;
    let ts0: u32 = u32::MAX - 4000;
    let valid: Vec<Vec<u8>> = signal
        .chunks(FRAMES_PER_PACKET)
        .enumerate()
        .map(|(k, c)| {
            let seq = seq0.wrapping_add(k as u16);
            let ts = ts0.wrapping_add((k * FRAMES_PER_PACKET) as u32);
            rtp(PT, seq, ts, SSRC, c)
        })
        .collect();
    assert_eq!(valid.len(), 50);

    // Each hostile datagram is modelled on the valid packet it precedes (same sequence number
    // and timestamp), so one that slipped through would displace real audio or show up as a
    // duplicate: the exact-output check would catch it.
    let hostile = |k: usize| -> Vec<(&'static str, Vec<u8>)> {
        let next = &valid[k];
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut d = next.clone();
            f(&mut d);
            d
        };
        let short_header = |flags: u8, extra: &[u8]| {
            let mut d = next[..12].to_vec();
            d[0] = flags;
            d.extend_from_slice(extra);
            d
        };
        vec![
            // 'G' is 0b01_000111: plain text reads as version 1.
            (
                "wrong_version",
                b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
            ),
            ("truncated", next[..5].to_vec()),
            ("wrong_version", with(&|d| d[0] = 0x40)),
            // CC=4 needs 28 header bytes; the datagram has 20.
            ("csrc_beyond_datagram", short_header(0x84, &[0; 8])),
            // X with an extension of 65535 words.
            (
                "extension_beyond_datagram",
                with(&|d| {
                    d[0] |= 0x10;
                    d[14] = 0xff;
                    d[15] = 0xff;
                }),
            ),
            // P with a padding count of 200; 5 bytes follow the header.
            ("bad_padding", short_header(0xa0, &[1, 2, 3, 4, 200])),
            // 641 bytes: not a whole number of 2-byte mono frames.
            ("partial_frame", with(&|d| d.push(0))),
            ("pt_change", with(&|d| d[1] = 97)),
            // An RTCP sender report on the RTP port (rtcp-mux): PT 200 & 0x7f = 72.
            ("pt_change", {
                let mut d = vec![0x80, 200, 0, 6];
                d.extend_from_slice(&SSRC.to_be_bytes());
                d.extend_from_slice(&[0; 20]);
                d
            }),
            ("ssrc_change", with(&|d| d[11] ^= 1)),
            // Half the sequence space ahead: an RFC 3550 A.1 bad jump, not confirmed by the
            // next packet.
            ("seq_jump", with(&|d| d[2] ^= 0x80)),
            ("empty_payload", next[..12].to_vec()),
        ]
    };

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Send 4x faster than real time, on absolute deadlines: every packet arrives well ahead of
    // its playout time (200 ms fixed latency), so scheduling noise cannot make one late.
    let start = Instant::now();
    let mut expected_bad = std::collections::BTreeMap::<&str, u64>::new();
    let mut sent_datagrams = 0u64;
    let mut send = |d: &[u8]| {
        sock.send_to(d, recv.addr).unwrap();
        sent_datagrams += 1;
    };
    for (k, packet) in valid.iter().enumerate() {
        if let Some(wait) =
            (start + Duration::from_millis(5 * k as u64)).checked_duration_since(Instant::now())
        {
            std::thread::sleep(wait);
        }
        // After the source is validated (2 packets in sequence), one hostile kind before each
        // of packets 5..17.
        let bad = hostile(k);
        if (5..5 + bad.len()).contains(&k) {
            let (kind, d) = &bad[k - 5];
            *expected_bad.entry(kind).or_insert(0) += 1;
            send(d);
        }
        send(packet);
        if k == 30 {
            send(&valid[20]); // a duplicate, counted apart from the bad ones
        }
    }
    let report = recv.finish_json();

    let bad: std::collections::BTreeMap<String, u64> =
        serde_json::from_value(report["bad"].clone()).unwrap();
    let expected: std::collections::BTreeMap<String, u64> = expected_bad
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    assert_eq!(bad, expected, "report: {report}");
    assert_eq!(expected.len(), 10, "every kind is exercised");
    assert_eq!(num(&report, "datagrams"), sent_datagrams, "{report}");
    assert_eq!(
        num(&report, "received"),
        51,
        "50 packets + 1 duplicate: {report}"
    );
    assert_eq!(num(&report, "duplicate"), 1, "{report}");
    assert_eq!(num(&report, "played"), 50, "{report}");
    assert_eq!(num(&report, "lost"), 0, "{report}");
    assert_eq!(num(&report, "late"), 0, "{report}");
    assert_eq!(num(&report, "restarts"), 0, "{report}");
    assert_eq!(report["concealed_ms"], json!(0.0), "{report}");
    assert_eq!(num(&report, "frames_out"), signal.len() as u64, "{report}");

    let (got, rate, channels) = read_samples(&out);
    assert_eq!((rate, channels), (RATE, 1));
    assert_eq!(got.len(), signal.len(), "output length");
    let first_diff = got.iter().zip(&signal).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "output differs from the signal sent");
}

/// A RIFF/WAVE file with a non-PCM `fmt ` chunk (the fields after the tag as given) and
/// `data_len` bytes of data.
fn foreign_wav(path: &Path, tag: u16, fmt_rest: &[u8], data_len: usize) {
    let mut fmt = tag.to_le_bytes().to_vec();
    fmt.extend_from_slice(fmt_rest);
    let mut v = b"RIFF".to_vec();
    let riff_len = 4 + 8 + fmt.len() + 8 + data_len;
    v.extend_from_slice(&(riff_len as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
    v.extend_from_slice(&fmt);
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(data_len as u32).to_le_bytes());
    v.resize(v.len() + data_len, 0xd5);
    std::fs::write(path, v).unwrap();
}

/// The fields of a WAVEFORMATEX after the tag.
fn waveformatex(
    channels: u16,
    rate: u32,
    byte_rate: u32,
    align: u16,
    bits: u16,
    extra: &[u8],
) -> Vec<u8> {
    let mut v = channels.to_le_bytes().to_vec();
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&byte_rate.to_le_bytes());
    v.extend_from_slice(&align.to_le_bytes());
    v.extend_from_slice(&bits.to_le_bytes());
    v.extend_from_slice(&(extra.len() as u16).to_le_bytes());
    v.extend_from_slice(extra);
    v
}

/// `send` refuses files it cannot read with an error naming what it found, before sending
/// anything.
#[test]
fn send_names_the_format_of_a_file_it_cannot_read() {
    let dir = scratch("cli-badwav");
    let alaw = dir.join("alaw.wav");
    foreign_wav(&alaw, 0x0006, &waveformatex(1, 8000, 8000, 1, 8, &[]), 800);
    let ima = dir.join("ima.wav");
    // IMA ADPCM: 4 bits, 256-byte blocks of 505 samples (cbSize 2: samples per block).
    foreign_wav(
        &ima,
        0x0011,
        &waveformatex(1, 8000, 4055, 256, 4, &505u16.to_le_bytes()),
        512,
    );
    let ogg = dir.join("song.wav");
    std::fs::write(
        &ogg,
        b"OggS\0\x02\0\0\0\0\0\0\0\0\0\0 not a wave file at all",
    )
    .unwrap();
    let empty = dir.join("empty.wav");
    std::fs::write(&empty, b"").unwrap();
    let missing = dir.join("missing.wav");

    for (file, needles) in [
        (
            &alaw,
            &["format tag 0x0006 (A-law)", "expected 16-bit PCM"][..],
        ),
        (
            &ima,
            &["format tag 0x0011 (IMA ADPCM)", "expected 16-bit PCM"][..],
        ),
        (&ogg, &["not a WAV file", "\"OggS\""][..]),
        (&empty, &["not a WAV file", "empty"][..]),
        (&missing, &["missing.wav"][..]),
    ] {
        let stderr = run_fails(bin().args(["send", s(file), "--to", "127.0.0.1:9"]));
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{}: stderr does not name {needle:?}:\n{stderr}",
                file.display()
            );
        }
        assert!(
            stderr.contains(s(file)),
            "the error names the file:\n{stderr}"
        );
    }
}

/// `udp-audio send` → `impair --loss 0.1 --seed 7` → `recv --conceal g711`: on loopback the
/// relay is the only loss, so what it dropped is what the receiver counts lost, every packet
/// is either received or lost, concealment keeps the output exactly as long as the input, and
/// the packets that got through (and were not the first after a loss, into which G.711
/// concealment fades) come out bit for bit.
///
/// A receiver can only count losses between the first and the last packet it sees (RFC 3550
/// A.3); it cannot know about packets dropped before the first or after the last one, and its
/// output cannot contain them. Seed 7 drops the last of the 100 packets, so the test predicts
/// the relay's decisions with the same seeded core and expects exactly that edge.
#[test]
fn send_impair_recv_accounts_for_every_packet() {
    const PACKETS: usize = 100; // 2 s of 20 ms packets
    // The relay's decisions depend only on the seed and the arrival order (module docs of
    // impair): predict them with the same core.
    let mut core = Impairer::new(ImpairConfig {
        loss: 0.1,
        seed: 7,
        ..ImpairConfig::default()
    })
    .unwrap();
    let drops: Vec<bool> = (0..PACKETS)
        .map(|k| core.on_datagram(k as u64 * 20_000).is_dropped())
        .collect();
    let dropped = drops.iter().filter(|&&d| d).count() as u64;
    let leading = drops.iter().take_while(|&&d| d).count();
    let trailing = drops.iter().rev().take_while(|&&d| d).count();
    let inner = dropped - (leading + trailing) as u64;
    assert!(
        inner >= 5 && leading + trailing <= 2,
        "seed 7 should drop several packets inside the stream: {drops:?}"
    );

    let dir = scratch("cli-e2e");
    let input = dir.join("in.wav");
    let out = dir.join("out.wav");
    let signal = write_signal(&input, RATE, 1, 2.0);
    let recv = Listening::recv(&[
        "--rate",
        "16000",
        "--channels",
        "1",
        "--conceal",
        "g711",
        "--idle-timeout",
        "1",
        "--out",
        s(&out),
    ]);
    let recv_addr = recv.addr.to_string();
    let relay = Listening::spawn(bin().args([
        "impair",
        "--listen",
        "127.0.0.1:0",
        "--forward",
        &recv_addr,
        "--loss",
        "0.1",
        "--seed",
        "7",
        "--idle-timeout",
        "1",
        "--json",
    ]));
    let relay_addr = relay.addr.to_string();
    let sent = run_json(bin().args(["send", s(&input), "--to", &relay_addr, "--json"]));
    let impair = relay.finish_json();
    let report = recv.finish_json();

    let packets = sent["pacing"]["packets"].as_u64().unwrap();
    assert_eq!(packets, PACKETS as u64, "send: {sent}");
    assert_eq!(num(&sent, "send_errors"), 0, "send: {sent}");
    assert_eq!(num(&impair, "received"), packets, "impair: {impair}");
    assert_eq!(num(&impair, "dropped"), dropped, "impair: {impair}");
    assert_eq!(num(&impair, "overflow_dropped"), 0, "impair: {impair}");
    assert_eq!(
        num(&impair, "forwarded"),
        packets - dropped,
        "impair: {impair}"
    );
    // What the relay dropped inside the stream is what the receiver counts lost.
    assert_eq!(
        num(&report, "lost"),
        inner,
        "recv: {report}; impair: {impair}; drops {drops:?}"
    );
    assert_eq!(
        num(&report, "received"),
        num(&impair, "forwarded"),
        "recv: {report}"
    );
    // Every packet sent is received, lost inside the stream, or dropped at an edge.
    assert_eq!(
        num(&report, "received") + num(&report, "lost") + (leading + trailing) as u64,
        packets,
        "recv: {report}"
    );
    assert_eq!(num(&report, "duplicate"), 0, "recv: {report}");
    assert!(
        report["bad"]
            .as_object()
            .is_some_and(|b| b.keys().all(|k| k == "pt_change")),
        "only the sender's RTCP BYE (to RTP port + 1, which may be ours) may be refused: {report}"
    );
    let concealed = report["concealed_ms"].as_f64().unwrap();
    assert!(
        concealed >= 20.0 * inner as f64 - 1e-6,
        "every lost packet is concealed: {report}"
    );

    // The output runs from the first packet received to the end of the last, one frame per
    // tick: exactly the input's length less the packets dropped at the edges.
    let expected_frames = signal.len() - (leading + trailing) * FRAMES_PER_PACKET;
    assert_eq!(
        num(&report, "frames_out"),
        expected_frames as u64,
        "recv: {report}"
    );
    let (got, rate, channels) = read_samples(&out);
    assert_eq!((rate, channels), (RATE, 1));
    assert_eq!(got.len(), expected_frames, "output frames");
    let sent_at = |k: usize| &signal[k * FRAMES_PER_PACKET..(k + 1) * FRAMES_PER_PACKET];
    let got_at =
        |k: usize| &got[(k - leading) * FRAMES_PER_PACKET..(k + 1 - leading) * FRAMES_PER_PACKET];
    let mut exact = 0;
    for k in leading..PACKETS - trailing {
        if drops[k] || (k > leading && drops[k - 1]) {
            continue;
        }
        // Before a loss, G.711 Appendix I concealment (the default) may blend the last
        // 3.75 ms into its repetition.
        let held = RATE as usize * 375 / 100_000;
        let n = if drops.get(k + 1) == Some(&true) {
            FRAMES_PER_PACKET - held
        } else {
            FRAMES_PER_PACKET
        };
        assert!(
            got_at(k)[..n] == sent_at(k)[..n],
            "packet {k} got through after a packet that did, so it must be exact"
        );
        exact += 1;
    }
    assert!(
        exact >= PACKETS - 3 * dropped as usize,
        "{exact} exact packets"
    );
    // Concealment is not silence: the lost packets inside the stream were filled in.
    for k in (leading..PACKETS - trailing).filter(|&k| drops[k]) {
        assert!(
            got_at(k).iter().any(|&x| x.unsigned_abs() > 1000),
            "lost packet {k} was concealed with (near) silence"
        );
    }
}

/// `eval`: identical files score the SNR cap; a 20 ms hole scores the finite SNR the
/// definition gives.
#[test]
fn eval_scores_identical_files_at_the_cap_and_a_hole_below_it() {
    let dir = scratch("cli-eval");
    let reference = dir.join("ref.wav");
    let signal = write_signal(&reference, RATE, 1, 1.0);
    let eval = |other: &Path| run_json(bin().args(["eval", s(&reference), s(other), "--json"]));

    let same = eval(&reference);
    assert_eq!(same["snr_db"].as_f64(), Some(SNR_CAP_DB), "{same}");
    assert_eq!(num(&same, "offset_frames"), 0, "{same}");
    assert_eq!(num(&same, "missing_frames"), 0, "{same}");

    let holed = dir.join("hole.wav");
    let hole = 8000..8000 + FRAMES_PER_PACKET;
    let mut damaged = signal.clone();
    damaged[hole.clone()].fill(0);
    write_samples(&holed, RATE, 1, &damaged);
    let q = eval(&holed);
    let snr = q["snr_db"].as_f64().unwrap();
    let energy = |x: &[i16]| x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>();
    let want = 10.0 * (energy(&signal) / energy(&signal[hole])).log10();
    assert!(snr.is_finite() && snr < SNR_CAP_DB, "{q}");
    assert!(
        (snr - want).abs() < 0.01,
        "SNR {snr} dB, the definition gives {want:.3} dB: {q}"
    );
    assert_eq!(num(&q, "offset_frames"), 0, "{q}");
}

/// Bad arguments end with a non-zero exit and a message naming what is wrong, never a panic.
#[test]
fn bad_arguments_are_refused_with_a_clear_message() {
    let dir = scratch("cli-args");
    let out = dir.join("out.wav");
    let out = s(&out);
    let recv = |extra: &[&str]| {
        let mut c = bin();
        c.args([
            "recv",
            "--listen",
            "127.0.0.1:0",
            "--out",
            out,
            "--first-timeout",
            "5",
        ])
        .args(extra);
        c
    };
    let cases: Vec<(Command, &[&str])> = vec![
        (recv(&[]), &["--sdp", "--rate", "--channels"]),
        (recv(&["--rate", "16000"]), &["--channels"]),
        (
            recv(&["--rate", "16000", "--channels", "1", "--latency", "soon"]),
            &["--latency", "soon", "auto"],
        ),
        (
            recv(&["--rate", "16000", "--channels", "1", "--latency", "20000"]),
            &["--latency", "20000", "0 to 10000"],
        ),
        (
            recv(&["--rate", "16000", "--channels", "1", "--conceal", "magic"]),
            &["--conceal", "magic", "g711"],
        ),
        (
            recv(&["--rate", "0", "--channels", "1"]),
            &["--rate", "0", "1 to 384000"],
        ),
        (recv(&["--sdp", s(&dir.join("nope.sdp"))]), &["nope.sdp"]),
        (
            {
                let mut c = bin();
                c.args([
                    "impair",
                    "--listen",
                    "127.0.0.1:0",
                    "--forward",
                    "127.0.0.1:9",
                    "--seed",
                    "1",
                    "--loss",
                    "1.5",
                ]);
                c
            },
            &["--loss", "1.5", "0 to 1"],
        ),
        (
            {
                let mut c = bin();
                c.args([
                    "impair",
                    "--listen",
                    "127.0.0.1:0",
                    "--forward",
                    "127.0.0.1:9",
                    "--loss",
                    "0.1",
                ]);
                c
            },
            &["--seed"],
        ),
        (
            {
                let mut c = bin();
                c.args(["send", "x.wav", "--to", "nowhere"]);
                c
            },
            &["--connect", "nowhere", "HOST:PORT"],
        ),
    ];
    for (mut cmd, needles) in cases {
        let stderr = run_fails(&mut cmd);
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{cmd:?}: stderr does not mention {needle:?}:\n{stderr}"
            );
        }
    }
}

/// A FIFO with no writer given as an input: `send`, `eval` (either file) and `recv --sdp`
/// exit at once with an error naming the file and saying a regular file was expected
/// (opening a FIFO for reading would otherwise wait for a writer for ever).
#[test]
fn a_fifo_input_is_refused_at_once() {
    let dir = scratch("cli-fifo");
    let fifo = dir.join("pipe.wav");
    let c = std::ffi::CString::new(s(&fifo)).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let reference = dir.join("ref.wav");
    write_signal(&reference, RATE, 1, 0.1);
    let out = dir.join("out.wav");
    let cases: Vec<Vec<&str>> = vec![
        vec!["send", s(&fifo), "--to", "127.0.0.1:9"],
        vec![
            "send",
            s(&fifo),
            "--to",
            "127.0.0.1:9",
            "--sdp",
            s(&out),
            "--sdp-only",
        ],
        vec!["eval", s(&fifo), s(&reference)],
        vec!["eval", s(&reference), s(&fifo)],
        vec![
            "recv",
            "--sdp",
            s(&fifo),
            "--listen",
            "127.0.0.1:0",
            "--out",
            s(&out),
        ],
    ];
    for args in cases {
        let o = run(bin().args(&args));
        let stderr = &o.stderr;
        assert_eq!(o.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(s(&fifo)) && stderr.contains("a FIFO: expected a regular file"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // An output that is a FIFO with no reader is refused too, instead of waiting for one.
    let o = run(bin().args(["synth", "tone", s(&fifo), "--secs", "0.1"]));
    let stderr = &o.stderr;
    assert_eq!(o.code(), Some(1), "{stderr}");
    assert!(stderr.contains("a FIFO"), "{stderr}");
}

/// `synth` with a rate × duration × channels too large to hold in memory refuses with the
/// product and the limit, before allocating or creating the file (it used to abort on a
/// failed allocation).
#[test]
fn synth_refuses_a_signal_too_large_to_build() {
    let dir = scratch("cli-synth-huge");
    let out = dir.join("huge.wav");
    for kind in ["tone", "music", "speech"] {
        let stderr = run_fails(bin().args([
            "synth",
            kind,
            s(&out),
            "--rate",
            "384000",
            "--channels",
            "16",
            "--secs",
            "86400",
        ]));
        assert!(
            stderr.contains("samples") && stderr.contains("at most 33554432"),
            "{kind}: {stderr}"
        );
        assert!(!out.exists(), "{kind}: nothing is written");
    }
    // Within the limit it still works.
    run_ok(bin().args(["synth", "tone", s(&out), "--secs", "0.5"]));
    assert_eq!(read_samples(&out).0.len(), 8000);
}

/// Values that used to be taken (and then panicked, aborted or ran for ever) exit with the
/// usage code 2 and a message naming the flag, without a panic.
#[test]
fn hostile_numeric_values_exit_2_naming_the_flag() {
    let out = scratch("cli-hostile-flags").join("x.wav");
    let out = s(&out).to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["synth", "tone", &out, "--rate", "0"], "--rate"),
        (vec!["synth", "tone", &out, "--secs", "1e30"], "--secs"),
        (
            vec!["synth", "tone", &out, "--channels", "70000"],
            "--channels",
        ),
        (
            vec![
                "impair",
                "--listen",
                "127.0.0.1:0",
                "--forward",
                "127.0.0.1:9",
                "--seed",
                "1",
                "--loss",
                "nan",
            ],
            "--loss",
        ),
        (
            vec![
                "impair",
                "--listen",
                "127.0.0.1:0",
                "--forward",
                "127.0.0.1:9",
                "--seed",
                "1",
                "--delay",
                "inf",
            ],
            "--delay",
        ),
        (
            vec![
                "impair",
                "--listen",
                "127.0.0.1:0",
                "--forward",
                "127.0.0.1:9",
                "--seed",
                "1",
                "--burst=-1",
            ],
            "--burst",
        ),
        (vec!["quality", "--loss", "0.1/inf"], "--loss"),
        (vec!["quality", "--secs", "inf"], "--secs"),
        (
            vec![
                "recv",
                "--listen",
                "127.0.0.1:0",
                "--out",
                &out,
                "--rate",
                "16000",
                "--channels",
                "1",
                "--idle-timeout",
                "1e30",
            ],
            "--idle-timeout",
        ),
        (
            vec![
                "recv",
                "--listen",
                "127.0.0.1:0",
                "--out",
                &out,
                "--rate",
                "4294967296",
                "--channels",
                "1",
            ],
            "--rate",
        ),
        (
            vec![
                "recv",
                "--listen",
                "127.0.0.1:0",
                "--out",
                &out,
                "--rate",
                "16000",
                "--channels",
                "1",
                "--ssrc=-1",
            ],
            "--ssrc",
        ),
    ];
    for (args, flag) in cases {
        let o = run(bin().args(&args));
        let stderr = &o.stderr;
        assert_eq!(o.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(flag),
            "{args:?}: stderr does not name {flag}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// `quality --seeds` and `--latency` refuse what they cannot run, with exit code 2 and the
/// flag named.
#[test]
fn quality_refuses_bad_seed_counts_and_latencies() {
    let cases: &[(&[&str], &str)] = &[
        (&["quality", "--seeds", "0"], "--seeds"),
        (&["quality", "--seeds=-1"], "--seeds"),
        (&["quality", "--seeds", "1001"], "--seeds"),
        (&["quality", "--latency", "nan"], "--latency"),
        (&["quality", "--latency", "20000"], "--latency"),
    ];
    for (args, flag) in cases {
        let o = run(bin().args(*args));
        let stderr = &o.stderr;
        assert_eq!(o.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// Several seeds: one row per condition, seed and mode, each naming its seed, packet time
/// and the packets lost (the same for every mode of a seed), one WAV file per row under
/// `NAME-CONDITION-MODE-sSEED.wav`, and a table of `mean ± sd` that says how many seeds.
#[test]
fn quality_runs_several_seeds_and_reports_the_lost_packets() {
    let dir = scratch("cli-quality-seeds");
    let input = dir.join("tone.wav");
    write_signal(&input, 8000, 1, 2.0);
    let out_dir = dir.join("out");
    let o = run(bin().args([
        "quality",
        "--signal",
        &format!("t={}", s(&input)),
        "--loss",
        "0.2",
        "--seed",
        "7",
        "--seeds",
        "3",
        "--latency",
        "60",
        "--write",
        s(&out_dir),
        "--json",
    ]));
    let (stdout, stderr) = (&o.stdout, &o.stderr);
    assert_eq!(o.code(), Some(0), "{stderr}");
    // With --json the table goes to stderr and stdout carries only the document.
    assert!(stderr.contains("3 seeds (7 .. 9)"), "{stderr}");
    assert!(stderr.contains('±'), "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let report = our_document(&o);
    assert_eq!(report["seeds"], json!(3), "{report}");
    assert_eq!(report["latency"], json!("60"), "{report}");
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3 * 5, "{report}");
    for seed in 7..10u64 {
        let of_seed: Vec<&serde_json::Value> = rows
            .iter()
            .filter(|r| r["seed"].as_u64() == Some(seed))
            .collect();
        assert_eq!(of_seed.len(), 5, "seed {seed}");
        let lost = &of_seed[0]["lost_packets"];
        let mut impairer = Impairer::new(ImpairConfig {
            loss: 0.2,
            seed,
            ..ImpairConfig::default()
        })
        .unwrap();
        let want: Vec<u64> = (0..100u64)
            .filter(|&k| impairer.on_datagram(k * 20_000).is_dropped())
            .collect();
        assert_eq!(lost, &json!(want), "seed {seed}");
        for r in &of_seed {
            assert_eq!(&r["lost_packets"], lost, "seed {seed}: {r}");
            assert_eq!(r["ptime_ms"], json!(20), "{r}");
            assert_eq!(r["packet_frames"], json!(160), "{r}");
            let file = out_dir.join(format!(
                "t-random_20__-{}-s{seed}.wav",
                r["mode"].as_str().unwrap()
            ));
            assert!(file.exists(), "{}", file.display());
        }
    }
    assert!(out_dir.join("t-reference.wav").exists());
}
