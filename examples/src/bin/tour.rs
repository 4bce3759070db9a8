//! `tour`: runs every demo pair on loopback and prints one report.

use std::process::ExitCode;

use clap::Parser;
use examples::init_tracing;
use examples::tour::{TourSettings, run};

/// Run every demo of the workspace on loopback and print one report.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Smaller runs (a smoke test of the tour itself).
    #[arg(long)]
    quick: bool,
    /// Also print every figure as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    // Demos log warnings they expect (hostile clients dropped); the report
    // says what happened. RUST_LOG=info shows the logs too.
    init_tracing("error");
    let cli = Cli::parse();
    let report = run(TourSettings { quick: cli.quick });
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
