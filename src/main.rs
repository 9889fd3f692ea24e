//! The only exit point: parse the CLI, run, print one `stockade: …` line on error.

use std::process::ExitCode;

use clap::Parser;
use nix::sys::signal::{SigSet, SigmaskHow};

fn main() -> ExitCode {
    // Block every signal before anything else: one that arrives before the supervisor's handlers
    // exist stays pending instead of being lost (or ignored, as PID 1 of a namespace would).
    let mut original = SigSet::empty();
    let _ = nix::sys::signal::sigprocmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut original),
    );
    let cli = match stockade::cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            eprintln!(
                "stockade: usage: {} (see stockade --help)",
                one_line(&e.to_string())
            );
            return ExitCode::from(stockade::error::code::USAGE);
        }
    };
    init_logging();
    match stockade::app::run(&cli, original) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("stockade: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// clap's message without its usage block and tips, on one line.
fn one_line(msg: &str) -> String {
    let body = msg.split("\n\n").next().unwrap_or(msg);
    let body = body.strip_prefix("error: ").unwrap_or(body);
    body.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `STOCKADE_LOG=error|warn|info|debug|trace` (default warn), to stderr. A plain level, not an
/// env-filter expression: the filter's regex engine would double the static binary's size.
fn init_logging() {
    use tracing_subscriber::filter::LevelFilter;
    let level = std::env::var("STOCKADE_LOG")
        .ok()
        .and_then(|v| v.trim().parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::WARN);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}
