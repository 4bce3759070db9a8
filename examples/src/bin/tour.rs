//! `tour`: runs every demo pair on loopback and prints one report.

use std::process::ExitCode;

use clap::Parser;
use examples::init_tracing;
use examples::tour::{Part, TourSettings, run};

/// Run every demo of the workspace on loopback and print one report.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Smaller runs (a smoke test of the tour itself).
    #[arg(long)]
    quick: bool,
    /// Run only this section.
    #[arg(long, value_enum, value_name = "SECTION")]
    only: Option<Part>,
    /// Also print every figure as one JSON object on the last line.
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
    let report = run(TourSettings {
        quick: cli.quick,
        only: cli.only,
    });
    print!("{}", report.render());
    if cli.json {
        println!("{}", report.to_json());
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
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
