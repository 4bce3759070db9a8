//! The concealment quality matrix: a signal streamed through seeded loss into the jitter
//! buffer with each concealment mode, scored against the original.
//!
//! This runs the same sans-IO cores the programs use ([`Packetizer`], [`Impairer`],
//! [`JitterBuffer`]) on a simulated clock, so a matrix of minutes of audio takes a second and
//! every mode sees exactly the same losses. The tour and the README's socket runs check the
//! same figures over real sockets.

use serde::Serialize;

use crate::Result;
use crate::conceal::ConcealMode;
use crate::eval::{self, Quality};
use crate::impair::{ImpairConfig, Impairer};
use crate::jitter::{JitterBuffer, JitterConfig, Latency, RecvStats};
use crate::l16::{AudioFormat, StreamParams};
use crate::sender::Packetizer;
use crate::wav::{self, Audio};
use std::path::Path;

/// A loss condition of the matrix.
#[derive(Debug, Clone, Serialize)]
pub struct Condition {
    /// Short name, e.g. "random 10 %".
    pub name: String,
    /// Loss probability.
    pub loss: f64,
    /// Mean burst length (Gilbert-Elliott), or independent loss.
    pub burst: Option<f64>,
}

/// Random loss at 5, 10 and 20 %, and bursty loss (10 %, mean burst 3 packets).
pub fn default_conditions() -> Vec<Condition> {
    let mut v: Vec<Condition> = [0.05, 0.10, 0.20]
        .iter()
        .map(|&loss| Condition {
            name: format!("random {:.0} %", loss * 100.0),
            loss,
            burst: None,
        })
        .collect();
    v.push(Condition {
        name: "bursty 10 %, mean burst 3".into(),
        loss: 0.10,
        burst: Some(3.0),
    });
    v
}

/// One cell of the matrix.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Signal name.
    pub signal: String,
    /// Condition name.
    pub condition: String,
    /// Concealment mode.
    pub mode: String,
    /// Packets lost, as a fraction of those sent.
    pub lost_fraction: f64,
    /// Objective quality of the output against the original.
    pub quality: Quality,
}

/// Streams `audio` in `ptime_ms` packets through `impair` into a jitter buffer concealing
/// with `mode`, on a simulated clock. Returns the output samples and the receiver's report.
pub fn simulate(
    audio: &Audio,
    ptime_ms: u32,
    impair: ImpairConfig,
    latency: Latency,
    mode: ConcealMode,
) -> Result<(Audio, RecvStats)> {
    let format = AudioFormat::new(audio.rate, audio.channels)?;
    let params = StreamParams::new(format, ptime_ms, None)?;
    let mut packetizer = Packetizer::new(params, 0x5eed, 1000, 123_456);
    let mut impairer = Impairer::new(impair)?;
    let ptime_ns = params.frames_per_packet as u64 * 1_000_000_000 / u64::from(format.rate);
    let mut events = Vec::new();
    let mut datagram = Vec::new();
    let mut k = 0u64;
    while packetizer
        .next_packet(&audio.samples, &mut datagram)?
        .is_some()
    {
        let sent_us = 1_000_000 + k * ptime_ns / 1000;
        for release in impairer.on_datagram(sent_us) {
            events.push((release, datagram.clone()));
        }
        k += 1;
    }
    let cfg = JitterConfig {
        format,
        payload_type: None,
        latency,
        conceal: mode,
    };
    let mut jb = JitterBuffer::new(cfg)?;
    let samples = crate::jitter::run_offline(&mut jb, events);
    Ok((
        Audio {
            rate: audio.rate,
            channels: audio.channels,
            samples,
        },
        jb.stats(),
    ))
}

/// Runs every condition × mode for one signal (20 ms packets, `seed` for the losses). With
/// `write_dir`, each output is also written there as `NAME-CONDITION-MODE.wav` (and the
/// reference as `NAME-reference.wav`), for other measures such as PESQ.
pub fn matrix(
    name: &str,
    audio: &Audio,
    conditions: &[Condition],
    seed: u64,
    write_dir: Option<&Path>,
) -> Result<Vec<Row>> {
    if let Some(dir) = write_dir {
        wav::write_wav(
            &dir.join(format!("{}-reference.wav", file_stem(name))),
            audio,
        )?;
    }
    let mut rows = Vec::new();
    for c in conditions {
        for mode in ConcealMode::ALL {
            let impair = ImpairConfig {
                loss: c.loss,
                burst: c.burst,
                delay_ms: 0.0,
                jitter_ms: 0.0,
                reorder: 0.0,
                duplicate: 0.0,
                seed,
            };
            let (out, stats) = simulate(audio, 20, impair, Latency::Fixed(20), mode)?;
            let quality = eval::evaluate(audio, &out)?;
            if let Some(dir) = write_dir {
                let file = format!(
                    "{}-{}-{}.wav",
                    file_stem(name),
                    file_stem(&c.name),
                    mode.name()
                );
                wav::write_wav(&dir.join(file), &out)?;
            }
            let sent = stats.received + stats.lost;
            rows.push(Row {
                signal: name.to_string(),
                condition: c.name.clone(),
                mode: mode.name().to_string(),
                lost_fraction: if sent == 0 {
                    0.0
                } else {
                    stats.lost as f64 / sent as f64
                },
                quality,
            });
        }
    }
    Ok(rows)
}

/// `text` with everything but ASCII letters and digits turned into `_`.
pub fn file_stem(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The matrix as a Markdown table: one row per signal and condition, one column pair (SNR,
/// segmental SNR) per mode.
pub fn markdown(rows: &[Row]) -> String {
    let modes: Vec<&str> = ConcealMode::ALL.iter().map(|m| m.name()).collect();
    let mut s = String::from("| signal | loss (measured) |");
    for m in &modes {
        s.push_str(&format!(" {m}: SNR / segSNR / LSD |"));
    }
    s.push_str("\n|---|---|");
    for _ in &modes {
        s.push_str("---:|");
    }
    s.push('\n');
    let mut i = 0;
    while i < rows.len() {
        let r = &rows[i];
        s.push_str(&format!(
            "| {} | {} ({:.1} %) |",
            r.signal,
            r.condition,
            100.0 * r.lost_fraction
        ));
        for m in &modes {
            match rows[i..].iter().take(modes.len()).find(|x| x.mode == *m) {
                Some(x) => s.push_str(&format!(
                    " {:.1} / {:.1} / {:.2} dB |",
                    x.quality.snr_db, x.quality.seg_snr_db, x.quality.lsd_db
                )),
                None => s.push_str(" - |"),
            }
        }
        s.push('\n');
        i += modes.len();
    }
    s
}
