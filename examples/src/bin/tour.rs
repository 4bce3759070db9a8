//! `tour`: runs every demo pair on loopback and prints one report.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use cli_conventions::{Interrupt, Program, exit, json};
use examples::init_tracing;
use examples::tour::{Part, TourSettings, run_with};

/// Who this is, in the JSON document.
const PROGRAM: Program = cli_conventions::program!("tour", 1);

/// tour: run every demo pair of the workspace on loopback and print one
/// report, each section as it ends (exit 1 if one fails).
#[derive(Parser)]
#[command(name = "tour", version, long_about = None)]
struct Cli {
    /// Smaller runs (a smoke test of the tour itself).
    #[arg(long)]
    quick: bool,
    /// Run only this section.
    #[arg(long, value_enum, value_name = "SECTION")]
    only: Option<Part>,
    /// Print every figure as one JSON document on stdout (the report goes
    /// to stderr), each section under its id: stream, framing, ack_demo,
    /// buffer_demo, udp_audio, tcp_watch.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    // Demos log warnings they expect (hostile clients dropped); the report
    // says what happened. RUST_LOG=info shows the logs too.
    init_tracing("error");
    // The tour re-runs itself as an ack-demo server, to kill a real process.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(examples::ack_tour::SERVER_FLAG) {
        return internal_ack_server(&args[2..]);
    }
    let cli = Cli::parse();
    // Ctrl-C stops the tour after the section that runs; a second one at
    // once.
    let interrupt = match Interrupt::install() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("tour: installing the SIGINT/SIGTERM handlers: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    // Text for people: stdout, or stderr when stdout carries the JSON.
    let say = |text: &str| {
        if cli.json {
            eprint!("{text}");
        } else {
            print!("{text}");
            let _ = std::io::stdout().flush();
        }
    };
    let report = run_with(
        TourSettings {
            quick: cli.quick,
            only: cli.only,
        },
        &interrupt,
        |section| say(&section.render()),
    );
    say(&report.render_verdict());
    if cli.json
        && let Err(e) = json::print(&PROGRAM, &report.to_json())
    {
        eprintln!("tour: printing the JSON report: {e}");
        return ExitCode::from(exit::FAILED);
    }
    interrupt.exit_code(report.passed())
}

fn internal_ack_server(args: &[String]) -> ExitCode {
    let parsed = match args {
        [listen, out, delay] => listen
            .parse()
            .ok()
            .zip(delay.parse().ok())
            .map(|(l, d)| (l, out, d)),
        _ => None,
    };
    let Some((listen, out, delay)) = parsed else {
        eprintln!("tour: internal ack-demo server: expected LISTEN OUT DELAY_US");
        return ExitCode::FAILURE;
    };
    match examples::ack_tour::serve(listen, out.into(), delay) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tour: ack-demo server: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_numeric_flag_refuses_hostile_values() {
        cli_values::assert_numeric_flags_refuse_hostile_values(&Cli::command());
    }
}
