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
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => stockade::error::code::USAGE,
            };
            let _ = e.print();
            return ExitCode::from(code);
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

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("STOCKADE_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}
