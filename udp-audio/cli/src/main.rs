//! `udp-audio`: stream a WAV file as RTP/L16, receive it through a jitter buffer with loss
//! concealment, impair the path in user space, and measure what came out.
//!
//! ```text
//! udp-audio recv --listen 127.0.0.1:5004 --rate 16000 --channels 1 --out out.wav
//! udp-audio send in.wav --connect 127.0.0.1:5004 --sdp s.sdp
//! ```
//!
//! This file only parses arguments and prints reports; the work is in the library. Output,
//! logs, exit codes and Ctrl-C follow the workspace's `CONVENTIONS.md` (`cli_conventions`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use cli_conventions::{Interrupt, Program, exit, json};
use serde::Serialize;

use udp_audio::conceal::ConcealMode;
use udp_audio::impair::{ImpairConfig, MAX_BURST, MAX_DELAY_MS, Relay};
use udp_audio::jitter::{JitterConfig, Latency};
use udp_audio::l16::DEFAULT_PTIME_MS;
use udp_audio::net::{self, Receiver, RecvOptions, SendOptions, StreamSpec};
use udp_audio::quality::{self, Condition};
use udp_audio::source::SourceFilter;
use udp_audio::{Error, Result, eval, synth, wav};

/// The identity of every JSON document this program prints.
const PROGRAM: Program = cli_conventions::program!("udp-audio", 1);

/// What `--version` prints after the program's name.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    ": stream WAV audio as RTP/L16 over UDP, receive it through a jitter buffer with loss \
     concealment, impair the path, and measure what came out"
);

#[derive(Debug, Parser)]
#[command(
    name = "udp-audio",
    version = VERSION,
    about = "udp-audio: RTP/L16 audio over UDP. A paced streamer (send), a receiver with an \
             adaptive jitter buffer and loss concealment (recv), an impairment relay (impair), \
             and objective quality (eval, quality).",
    long_about = None,
    after_help = "Logs go to stderr; RUST_LOG=debug shows every decision. Every command that \
                  reports figures has --json: stdout then carries one JSON document (on one \
                  line) and nothing else. Exit codes: 0 done, 1 the run failed (recv: \
                  nothing written, or the stream's rate or channels differ from the ones \
                  given), 2 usage or configuration, 130 interrupted (after the report)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Stream a WAV file as RTP/L16 (RFC 3550/3551), paced by absolute deadlines.
    Send(SendArgs),
    /// Receive an RTP/L16 stream through the jitter buffer and write a WAV file.
    Recv(RecvArgs),
    /// A user-space impairment relay: loss, bursts, delay, jitter, reordering, duplication.
    Impair(ImpairArgs),
    /// Align two WAV files and report SNR and segmental SNR of the second against the first.
    Eval(EvalArgs),
    /// The concealment quality matrix: a signal through seeded loss with every mode
    /// (simulated clock, the same cores as send/recv).
    Quality(QualityArgs),
    /// Write a synthetic test signal (speech-like or music-like) to a WAV file.
    Synth(SynthArgs),
}

#[derive(Debug, Args)]
struct SendArgs {
    /// The WAV file (16-bit PCM sent as is; 8/24/32-bit integer and float converted).
    input: PathBuf,
    /// Destination address, HOST:PORT (e.g. 127.0.0.1:5004, localhost:5004).
    #[arg(long = "connect", alias = "to", value_name = "ADDR", value_parser = cli_values::socket_addr)]
    connect: SocketAddr,
    /// Packet duration in ms; shortened so a payload fits 1460 bytes.
    #[arg(long, default_value_t = DEFAULT_PTIME_MS, value_parser = int_in(1u32, 1000, "a packet duration in ms"))]
    ptime: u32,
    /// RTP payload type; default 10/11 for 44.1 kHz stereo/mono, else 96.
    #[arg(long, value_parser = int_in(0u8, 127, "an RTP payload type"))]
    pt: Option<u8>,
    /// Write an SDP description (opens in ffmpeg, GStreamer's sdpdemux and VLC).
    #[arg(long, value_name = "FILE")]
    sdp: Option<PathBuf>,
    /// Only write the SDP file and exit (needs --sdp).
    #[arg(long, requires = "sdp")]
    sdp_only: bool,
    /// Print the report as one JSON document on stdout (human text goes to stderr).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct RecvArgs {
    /// Address to listen on, HOST:PORT; defaults to the SDP's connection address and port.
    #[arg(long, value_name = "ADDR", value_parser = cli_values::socket_addr)]
    listen: Option<SocketAddr>,
    /// Output WAV file.
    #[arg(long)]
    out: PathBuf,
    /// Take rate, channels and payload type from this SDP file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["rate", "channels"])]
    sdp: Option<PathBuf>,
    /// Sample rate (RTP clock), Hz, when there is no SDP. A stream whose timestamps advance
    /// more than 5 % faster or slower is warned about with the rate measured, and recv exits 1.
    #[arg(long, requires = "channels", value_parser = int_in(1u32, 384_000, "a rate in Hz"))]
    rate: Option<u32>,
    /// Channels, when there is no SDP. Packets that carry another count are warned about with
    /// the count that fits, and recv exits 1.
    #[arg(long, requires = "rate", value_parser = int_in(1u16, 16, "a channel count"))]
    channels: Option<u16>,
    /// Accept only this payload type (default: the SDP's, or the first packet's).
    #[arg(long, value_parser = int_in(0u8, 127, "an RTP payload type"))]
    pt: Option<u8>,
    /// How missing audio is concealed: silence, repeat, fade, g711 (ITU-T G.711 Appendix
    /// I) or bridge, the default: Appendix I from the past and, when the jitter buffer already
    /// holds the packet after a gap, that packet extrapolated backward, the two crossfaded.
    /// It scored best in scripts/udp-audio-quality (PESQ-NB 3.15 against g711's 2.47 at 10 %
    /// random loss, 16 kHz speech); with nothing held after a gap it is g711.
    #[arg(long, default_value = "bridge")]
    conceal: ConcealMode,
    /// Playout delay: "auto" adapts to the observed delays (0.99 quantile), or a fixed
    /// delay in ms after the first packet.
    #[arg(long, default_value = "auto")]
    latency: Latency,
    /// End when no packet of the stream has arrived for this long (seconds, or 500ms, 2s);
    /// other datagrams do not count.
    #[arg(long, default_value = "2", value_parser = cli_values::seconds(0.001, 86_400.0))]
    idle_timeout: Duration,
    /// Give up when no stream has been found within this long (default: wait).
    #[arg(long, value_parser = cli_values::seconds(0.001, 86_400.0))]
    first_timeout: Option<Duration>,
    /// Play only the stream sent from this address (HOST:PORT; port 0: any port of HOST).
    /// By default the first source to send 2 packets in sequence (RFC 3550 A.1) is played,
    /// and only from the address it came from.
    #[arg(long, value_name = "ADDR", value_parser = cli_values::socket_addr)]
    source: Option<SocketAddr>,
    /// Play only the stream with this SSRC (decimal or 0x-hexadecimal).
    #[arg(long, value_parser = parse_ssrc)]
    ssrc: Option<u32>,
    /// Print the report as one JSON document on stdout (human text goes to stderr).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ImpairArgs {
    /// Address to receive the stream on, HOST:PORT.
    #[arg(long, value_name = "ADDR", value_parser = cli_values::socket_addr)]
    listen: SocketAddr,
    /// Address to forward to, HOST:PORT.
    #[arg(long = "connect", alias = "forward", value_name = "ADDR", value_parser = cli_values::socket_addr)]
    connect: SocketAddr,
    /// Loss probability, 0..1 (stationary loss rate with --burst).
    #[arg(long, default_value_t = 0.0, value_parser = cli_values::float_in(0.0, 1.0, "a probability"))]
    loss: f64,
    /// Mean burst length in packets (Gilbert-Elliott); without it losses are independent.
    #[arg(long, value_parser = cli_values::float_in(1.0, MAX_BURST, "a mean burst length in datagrams"))]
    burst: Option<f64>,
    /// Fixed delay, ms.
    #[arg(long, default_value_t = 0.0, value_parser = cli_values::float_in(0.0, MAX_DELAY_MS, "milliseconds"))]
    delay: f64,
    /// Extra delay uniform in [0, JITTER] ms.
    #[arg(long, default_value_t = 0.0, value_parser = cli_values::float_in(0.0, MAX_DELAY_MS, "milliseconds"))]
    jitter: f64,
    /// Probability a datagram is held behind the next one to three.
    #[arg(long, default_value_t = 0.0, value_parser = cli_values::float_in(0.0, 1.0, "a probability"))]
    reorder: f64,
    /// Probability a datagram is sent twice.
    #[arg(long, default_value_t = 0.0, value_parser = cli_values::float_in(0.0, 1.0, "a probability"))]
    duplicate: f64,
    /// Seed of the random decisions: the same seed gives the same losses.
    #[arg(long)]
    seed: u64,
    /// End when nothing has arrived for this long (seconds, or 500ms, 2s; default: run until
    /// Ctrl-C, which prints the report and exits 130).
    #[arg(long, value_parser = cli_values::seconds(0.001, 86_400.0))]
    idle_timeout: Option<Duration>,
    /// Print the report as one JSON document on stdout (human text goes to stderr).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// The reference (what was sent).
    reference: PathBuf,
    /// The output to judge (what was received).
    output: PathBuf,
    /// Print the report as one JSON document on stdout (human text goes to stderr).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct QualityArgs {
    /// Signals to test as NAME=FILE.wav (e.g. speech from espeak-ng); default: synthetic
    /// speech-like and music-like signals.
    #[arg(long = "signal", value_name = "NAME=FILE", value_parser = parse_signal)]
    signals: Vec<(String, PathBuf)>,
    /// Seconds of each synthetic signal.
    #[arg(long, default_value_t = 20.0, value_parser = cli_values::float_above(0.0, 86_400.0, "seconds"))]
    secs: f64,
    /// Loss conditions as LOSS or LOSS/BURST, e.g. 0.05 0.1 0.2 0.1/3 (default those).
    #[arg(long = "loss", value_name = "P[/BURST]", value_parser = parse_condition)]
    conditions: Vec<Condition>,
    /// Seed of the losses (the first, with --seeds).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run every condition with this many seeds: SEED, SEED+1, ... (every mode sees the same
    /// losses for a seed); the table shows mean ± sample standard deviation over them.
    #[arg(long, default_value_t = 1, value_parser = int_in(1u32, MAX_SEEDS, "a number of seeds"))]
    seeds: u32,
    /// Fixed jitter-buffer latency of the simulated runs, ms (0 to 10000), or "auto". The
    /// default, two 20 ms packets, means that when a loss is due the packet after it has
    /// already arrived, so a mode that bridges the gap (bridge) can use it; with 20 ms the
    /// buffer is empty whenever a loss starts.
    #[arg(long, default_value = "40", value_parser = parse_latency)]
    latency: Latency,
    /// Also write every output as NAME-CONDITION-MODE-sSEED.wav (and each reference as
    /// NAME-reference.wav) into this directory.
    #[arg(long, value_name = "DIR")]
    write: Option<PathBuf>,
    /// Print the rows as one JSON document on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct SynthArgs {
    /// speech (voice-like: pitched, formant-filtered syllables and pauses), music (chords),
    /// or tone.
    kind: String,
    /// Output WAV file.
    out: PathBuf,
    /// Sample rate, Hz.
    #[arg(long, default_value_t = 16000, value_parser = int_in(1u32, 384_000, "a rate in Hz"))]
    rate: u32,
    /// Channels (speech is mono).
    #[arg(long, default_value_t = 1, value_parser = int_in(1u16, 16, "a channel count"))]
    channels: u16,
    /// Duration, s (rate x channels x secs at most 2^25 samples).
    #[arg(long, default_value_t = 5.0, value_parser = cli_values::float_above(0.0, 86_400.0, "seconds"))]
    secs: f64,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// An integer from `min` to `max`, as a clap value parser whose error says so in words.
fn int_in<T>(
    min: T,
    max: T,
    what: &'static str,
) -> impl Fn(&str) -> std::result::Result<T, String> + Clone + Send + Sync + 'static
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy + Send + Sync + 'static,
{
    move |s: &str| match s.trim().parse::<T>() {
        Ok(v) if v >= min && v <= max => Ok(v),
        _ => Err(format!("expected {what} from {min} to {max}, got '{s}'")),
    }
}

fn parse_ssrc(s: &str) -> std::result::Result<u32, String> {
    let t = s.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => t.parse::<u32>(),
    };
    parsed.map_err(|_| {
        format!("expected an SSRC from 0 to 4294967295 (or 0x0 to 0xffffffff), got '{s}'")
    })
}

/// Most seeds `quality --seeds` runs.
const MAX_SEEDS: u32 = 1000;

fn parse_latency(s: &str) -> std::result::Result<Latency, String> {
    s.parse::<Latency>().map_err(|e| e.to_string())
}

fn parse_signal(s: &str) -> std::result::Result<(String, PathBuf), String> {
    let (name, path) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=FILE.wav"))?;
    Ok((name.to_string(), PathBuf::from(path)))
}

fn parse_condition(s: &str) -> std::result::Result<Condition, String> {
    s.parse::<Condition>().map_err(|e| match e {
        Error::Config { what } => what,
        e => e.to_string(),
    })
}

/// Prints a command's report: with `--json` the human text goes to stderr and stdout carries
/// the one JSON document, otherwise the text goes to stdout.
///
/// The document is written on one line: scripts/udp-audio-report and
/// scripts/udp-audio-quality read it as the last line of stdout (`json::print_row` writes
/// the same document as `json::print`, unindented).
fn print_report<T: Serialize>(human: &str, report: &T, as_json: bool) {
    if as_json {
        eprintln!("{human}");
        if let Err(e) = json::print_row(&PROGRAM, report) {
            tracing::error!("writing the JSON report: {e}");
        }
    } else {
        println!("{human}");
    }
}

/// A report with whether the run was interrupted beside its own keys.
#[derive(Serialize)]
struct Ended<'a, T> {
    #[serde(flatten)]
    report: &'a T,
    interrupted: bool,
}

/// `text`, followed by a line saying the run was interrupted when it was.
fn with_interruption(text: String, interrupt: &Interrupt) -> String {
    if interrupt.requested() {
        text + "\ninterrupted (SIGINT/SIGTERM): the report covers what was done until then"
    } else {
        text
    }
}

/// SIGINT/SIGTERM as a flag the long-running roles check (see `CONVENTIONS.md`).
fn install_interrupt() -> Result<Interrupt> {
    Interrupt::install().map_err(|e| Error::io("installing the SIGINT/SIGTERM handlers", e))
}

fn send(a: SendArgs) -> Result<ExitCode> {
    let opts = SendOptions {
        to: a.connect,
        ptime_ms: a.ptime,
        payload_type: a.pt,
        sdp: a.sdp,
        progress: true,
    };
    if a.sdp_only {
        let path = net::write_sdp_for(&a.input, &opts)?;
        eprintln!("wrote {}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let interrupt = install_interrupt()?;
    let report = net::send_file(&a.input, &opts, &interrupt.flag())?;
    print_report(&report.report(), &report, a.json);
    Ok(interrupt.exit_code(true))
}

fn recv(a: RecvArgs) -> Result<ExitCode> {
    let sdp = a.sdp.as_deref().map(net::read_sdp_file).transpose()?;
    let StreamSpec {
        format,
        payload_type,
        listen,
    } = StreamSpec::resolve(sdp.as_ref(), a.rate, a.channels, a.pt, a.listen)?;
    let out = a.out.clone();
    let opts = RecvOptions {
        listen,
        out: a.out,
        jitter: JitterConfig {
            format,
            payload_type,
            latency: a.latency,
            conceal: a.conceal,
        },
        idle_timeout: a.idle_timeout,
        first_timeout: a.first_timeout,
        progress: true,
    };
    let mut receiver = Receiver::bind(opts)?;
    receiver.set_source_filter(SourceFilter {
        address: a.source,
        ssrc: a.ssrc,
    });
    let interrupt = install_interrupt()?;
    // Tests and scripts read this line to learn the port chosen for port 0.
    eprintln!(
        "listening on {} ({} Hz x{}, {})",
        receiver.local_addr()?,
        format.rate,
        format.channels,
        a.conceal
    );
    let stats = receiver.run(&interrupt.flag())?;
    print_report(
        &with_interruption(stats.report(), &interrupt),
        &Ended {
            report: &stats,
            interrupted: interrupt.requested(),
        },
        a.json,
    );
    let failure = stats.failure();
    if let Some(why) = &failure {
        if !interrupt.requested() {
            eprintln!("udp-audio: {}: {why}", out.display());
            if let (Some(sdp), false) = (&a.sdp, stats.warnings.is_empty()) {
                eprintln!(
                    "udp-audio: the format came from {}: correct its a=rtpmap line, or give \
                     --rate and --channels instead",
                    sdp.display()
                );
            }
        }
    }
    Ok(interrupt.exit_code(failure.is_none()))
}

fn impair(a: ImpairArgs) -> Result<ExitCode> {
    let cfg = ImpairConfig {
        loss: a.loss,
        burst: a.burst,
        delay_ms: a.delay,
        jitter_ms: a.jitter,
        reorder: a.reorder,
        duplicate: a.duplicate,
        seed: a.seed,
    };
    let relay = Relay::bind(a.listen, a.connect, cfg)?;
    let interrupt = install_interrupt()?;
    // Tests and scripts read this line to learn the port chosen for port 0.
    eprintln!(
        "listening on {} forwarding to {}",
        relay.local_addr(),
        a.connect
    );
    let stats = relay.run(a.idle_timeout, &interrupt.flag())?;
    print_report(
        &with_interruption(stats.report(), &interrupt),
        &Ended {
            report: &stats,
            interrupted: interrupt.requested(),
        },
        a.json,
    );
    Ok(interrupt.exit_code(true))
}

fn evaluate(a: EvalArgs) -> Result<ExitCode> {
    let (reference, _) = wav::read_wav(&a.reference)?;
    let (output, _) = wav::read_wav(&a.output)?;
    let q = eval::evaluate(&reference, &output)?;
    let human = format!(
        "SNR {:.2} dB, segmental SNR {:.2} dB, log-spectral distance {:.2} dB over {} frames; \
         output offset {} frames, {} reference frames missing",
        q.snr_db, q.seg_snr_db, q.lsd_db, q.compared_frames, q.offset_frames, q.missing_frames
    );
    print_report(&human, &q, a.json);
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct QualityReport {
    seed: u64,
    seeds: u32,
    /// "auto" or the fixed latency in ms.
    latency: String,
    ptime_ms: u32,
    rows: Vec<quality::Row>,
}

fn latency_name(latency: Latency) -> String {
    match latency {
        Latency::Fixed(ms) => ms.to_string(),
        Latency::Auto { .. } => "auto".to_string(),
    }
}

fn quality_matrix(a: QualityArgs) -> Result<ExitCode> {
    let conditions = if a.conditions.is_empty() {
        quality::default_conditions()
    } else {
        a.conditions
    };
    let mut signals = Vec::new();
    if a.signals.is_empty() {
        synth::check_size(44100, 2, a.secs)?;
        signals.push((
            "speech-like".to_string(),
            synth::voice_like(16000, a.secs, a.seed),
        ));
        signals.push((
            "music-like".to_string(),
            synth::music_like(44100, 2, a.secs, a.seed),
        ));
    }
    for (name, path) in a.signals {
        let (audio, source) = wav::read_wav(&path)?;
        if source.converted {
            tracing::info!("{}: {source} converted to 16-bit PCM", path.display());
        }
        signals.push((name, audio));
    }
    if let Some(dir) = &a.write {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    let interrupt = install_interrupt()?;
    let stop = interrupt.flag();
    let opts = quality::MatrixOptions {
        latency: a.latency,
        seed: a.seed,
        seeds: a.seeds,
        write_dir: a.write.as_deref(),
        stop: Some(&stop),
    };
    let mut rows = Vec::new();
    for (name, audio) in &signals {
        if interrupt.requested() {
            break;
        }
        tracing::info!(
            "{name}: {:.1} s, {} Hz x{}",
            audio.duration_secs(),
            audio.rate,
            audio.channels
        );
        rows.extend(quality::run(name, audio, &conditions, &opts)?);
    }
    print_report(
        &with_interruption(quality::markdown(&rows), &interrupt),
        &Ended {
            report: &QualityReport {
                seed: a.seed,
                seeds: a.seeds,
                latency: latency_name(a.latency),
                ptime_ms: quality::PTIME_MS,
                rows,
            },
            interrupted: interrupt.requested(),
        },
        a.json,
    );
    Ok(interrupt.exit_code(true))
}

fn synthesize(a: SynthArgs) -> Result<ExitCode> {
    let channels = if a.kind == "speech" { 1 } else { a.channels };
    synth::check_size(a.rate, channels, a.secs)?;
    let audio = match a.kind.as_str() {
        "speech" => synth::voice_like(a.rate, a.secs, a.seed),
        "music" => synth::music_like(a.rate, a.channels, a.secs, a.seed),
        "tone" => synth::tone(a.rate, a.channels, a.secs, 440.0),
        other => {
            return Err(Error::Config {
                what: format!("signal kind {other:?}: expected speech, music or tone"),
            });
        }
    };
    wav::write_wav(&a.out, &audio)?;
    eprintln!(
        "wrote {} ({:.2} s, {} Hz x{})",
        a.out.display(),
        audio.duration_secs(),
        audio.rate,
        audio.channels
    );
    Ok(ExitCode::SUCCESS)
}

/// The exit code of a run that ended in `e`: 2 when the configuration was at fault and
/// nothing was run, 1 otherwise.
fn error_code(e: &Error) -> u8 {
    match e {
        Error::Config { .. } | Error::Sdp { .. } => exit::USAGE,
        _ => exit::FAILED,
    }
}

fn main() -> ExitCode {
    cli_conventions::init_logs("info");
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Send(a) => send(a),
        Command::Recv(a) => recv(a),
        Command::Impair(a) => impair(a),
        Command::Eval(a) => evaluate(a),
        Command::Quality(a) => quality_matrix(a),
        Command::Synth(a) => synthesize(a),
    };
    result.unwrap_or_else(|e| {
        eprintln!("udp-audio: {e}");
        ExitCode::from(error_code(&e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_numeric_flag_refuses_hostile_values() {
        cli_values::assert_numeric_flags_refuse_hostile_values(&Cli::command());
    }

    #[test]
    fn old_flag_names_still_parse_as_hidden_aliases() {
        let cli =
            Cli::try_parse_from(["udp-audio", "send", "in.wav", "--to", "localhost:5004"]).unwrap();
        let Command::Send(a) = cli.command else {
            panic!("not send")
        };
        assert_eq!(a.connect.port(), 5004);
        assert!(a.connect.ip().is_loopback());
        let cli = Cli::try_parse_from([
            "udp-audio",
            "impair",
            "--listen",
            "127.0.0.1:0",
            "--forward",
            "127.0.0.1:9",
            "--seed",
            "1",
        ])
        .unwrap();
        let Command::Impair(a) = cli.command else {
            panic!("not impair")
        };
        assert_eq!(a.connect, "127.0.0.1:9".parse().unwrap());
    }

    #[test]
    fn integer_flags_say_their_bounds_in_words() {
        let err = Cli::try_parse_from(["udp-audio", "synth", "tone", "x.wav", "--rate", "0"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expected a rate in Hz from 1 to 384000"),
            "{err}"
        );
        assert!(!err.contains("..="), "{err}");
    }

    #[test]
    fn ssrc_takes_decimal_and_hex() {
        assert_eq!(parse_ssrc("0x1234abcd"), Ok(0x1234_abcd));
        assert_eq!(parse_ssrc("4294967295"), Ok(u32::MAX));
        assert!(parse_ssrc("4294967296").is_err());
        assert!(parse_ssrc("0x1_0000_0000").is_err());
    }

    #[test]
    fn quality_latency_defaults_to_the_librarys_constant() {
        let cli = Cli::try_parse_from(["udp-audio", "quality"]).unwrap();
        let Command::Quality(a) = cli.command else {
            panic!("not quality")
        };
        assert_eq!(a.latency, Latency::Fixed(quality::DEFAULT_LATENCY_MS));
        assert_eq!(a.seeds, 1);
    }

    #[test]
    fn loss_conditions_refuse_bad_bursts() {
        assert!(parse_condition("0.1/3").is_ok());
        for bad in [
            "0.1/nan", "0.1/inf", "0.1/-1", "0.1/0.5", "nan", "1", "0.1/1e30",
        ] {
            assert!(parse_condition(bad).is_err(), "{bad}");
        }
    }
}
