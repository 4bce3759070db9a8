//! The tour's `framing` section: framed-echo over loopback TCP, small and
//! large frames, hostile clients that the server drops while the others
//! carry on, and the memory a lying header costs.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;

use framing::{Config, Decoder};
use serde_json::json;

use crate::Error;
use crate::echo::{ClientReport, ClientSettings, EchoServer, ServerSettings, run_client};
use crate::tour::{Part, Section};

/// The framing section's heading.
pub const TITLE: &str = "framing: framed-echo over loopback TCP";

/// Largest frame the tour's server accepts.
const TOUR_MAX_FRAME: usize = 1024 * 1024;

/// Runs the section: a framed-echo server and clients on loopback.
///
/// # Errors
/// The server could not start, or a client failed.
pub fn section(quick: bool) -> Result<Section, Error> {
    let framing = Config::u32_be()
        .to_builder()
        .max_frame_len(TOUR_MAX_FRAME)
        .build()?;
    let server_settings = ServerSettings::for_framing(framing);
    let mut server = EchoServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), server_settings)?;
    let addr = server.local_addr();
    let stop = server.stop_handle();
    let serving = thread::spawn(move || server.run());

    let scale = if quick { 10 } else { 1 };
    let runs = (|| -> Result<_, Error> {
        let small = run_client(addr, client(framing, 2_000_000 / scale / scale, 64))?;
        let large = run_client(addr, client(framing, 2_000 / scale / scale, 256 * 1024))?;
        let (good, hostile) = thread::scope(|scope| {
            let good = scope.spawn(|| run_client(addr, client(framing, 50_000 / scale, 1024)));
            let hostile = hostile_clients(addr);
            (good.join().expect("client thread does not panic"), hostile)
        });
        Ok((small, large, good?, hostile?))
    })();
    stop.stop()
        .map_err(|e| Error::io("stopping the server", e))?;
    let stats = serving.join().expect("server thread does not panic")?;
    let (small, large, good, hostile) = runs?;

    let memory = hostile_header_capacity();
    let mut lines = vec![
        format!("server on {addr}, 4-byte big-endian frames, limit {TOUR_MAX_FRAME} bytes"),
        rate_line("small frames", &small),
        rate_line("large frames", &large),
        format!(
            "hostile       {} of {} hostile clients dropped; a good client echoed {}/{} x 1 KiB meanwhile",
            stats.dropped,
            hostile.len(),
            good.messages,
            50_000 / scale,
        ),
    ];
    for dropped in &stats.dropped_clients {
        lines.push(format!(
            "              dropped {}: {}",
            dropped.peer, dropped.reason
        ));
    }
    lines.push(format!(
        "memory        a header declaring 8 MiB, then 1 byte: the decoder holds {memory} bytes"
    ));
    lines.push(format!(
        "limits        {} MiB buffered by all clients together (peak {:.1} MiB, {} closed over it), \
         idle timeout {} s ({} closed), backlog {}",
        server_settings.max_buffered_total >> 20,
        stats.peak_buffered_bytes as f64 / (1u64 << 20) as f64,
        stats.over_budget,
        server_settings.idle_timeout.as_secs_f64(),
        stats.timed_out,
        server_settings.backlog
    ));
    let passed = stats.dropped == hostile.len() as u64 && stats.completed == 3;
    if !passed {
        lines.push(format!(
            "expected {} drops and 3 clean clients, server saw {} drops and {} clean",
            hostile.len(),
            stats.dropped,
            stats.completed
        ));
    }
    Ok(Section {
        id: Part::Framing.id(),
        title: TITLE.to_owned(),
        lines,
        passed,
        figures: json!({
            "small": small, "large": large, "good_during_hostile": good,
            "server": stats, "hostile_header_decoder_capacity": memory,
        }),
    })
}

fn client(framing: Config, count: u64, size: usize) -> ClientSettings {
    ClientSettings {
        count,
        size,
        framing,
        timeout: crate::echo::DEFAULT_TIMEOUT,
    }
}

fn rate_line(label: &str, r: &ClientReport) -> String {
    format!(
        "{label:<13} {} x {} B echoed: {:.0} msg/s, {:.1} MB/s",
        r.messages, r.size, r.messages_per_sec, r.mb_per_sec
    )
}

/// Sends three kinds of bad frame, each on its own connection, and waits
/// for the server to close each. Returns what each sent.
fn hostile_clients(addr: SocketAddr) -> Result<Vec<&'static str>, Error> {
    let attacks: [(&'static str, &[u8]); 3] = [
        ("16 MiB length", &[0x01, 0x00, 0x00, 0x00, b'x']),
        ("4 GiB length", &[0xff, 0xff, 0xff, 0xff]),
        (
            "EOF inside a frame",
            &[0x00, 0x00, 0x00, 100, b'a', b'b', b'c'],
        ),
    ];
    let mut sent = Vec::new();
    for (what, bytes) in attacks {
        let mut stream =
            TcpStream::connect(addr).map_err(|e| Error::io("connecting a hostile client", e))?;
        stream
            .write_all(bytes)
            .and_then(|()| stream.shutdown(Shutdown::Write))
            .map_err(|e| Error::io("sending a hostile frame", e))?;
        // The server closes on us: EOF or a reset both mean it did.
        let mut sink = [0u8; 64];
        loop {
            match stream.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        sent.push(what);
    }
    Ok(sent)
}

/// Capacity of a decoder after a 4-byte header declaring 8 MiB and one byte.
fn hostile_header_capacity() -> usize {
    let mut decoder = Decoder::new(Config::u32_be());
    decoder.feed(&(8u32 * 1024 * 1024).to_be_bytes());
    decoder.feed(b"x");
    decoder.capacity()
}
