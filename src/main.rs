//! The only exit point: parse the CLI, run, print one `stockade: …` line on error.

use std::process::ExitCode;

use clap::Parser;
use nix::sys::signal::{SigSet, SigmaskHow};

fn main() -> ExitCode {
    // The dispositions stockade's parent left were recorded by an ELF constructor before Rust's
    // runtime ran (src/sys.rs): ignored ones stay ignored for the server, as under tini. Should
    // the constructor not have run, record now; SIGPIPE's original is then unknown (the runtime
    // ignored it) and the server gets the default.
    if stockade::sys::record_ignored_at_start() {
        stockade::sys::forget_ignored_at_start(nix::libc::SIGPIPE);
    }
    // An ignored SIGCHLD makes the kernel reap our children itself, so the server's exit status
    // would be lost: stockade and the server get the default (a deliberate deviation).
    if stockade::sys::ignored_at_start(nix::libc::SIGCHLD) {
        let _ = stockade::sys::default_disposition(nix::libc::SIGCHLD);
        stockade::sys::forget_ignored_at_start(nix::libc::SIGCHLD);
    }
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
            say(&format!(
                "stockade: usage: {} (see stockade --help)",
                one_line(&e.to_string())
            ));
            return ExitCode::from(stockade::error::code::USAGE);
        }
    };
    stockade::logging::init();
    match stockade::app::run(&cli, original) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            say(&format!("stockade: {e}"));
            ExitCode::from(e.exit_code())
        }
    }
}

/// One line to stderr. A closed or broken stderr is not an error of the run: eprintln! would
/// panic on EPIPE (SIGPIPE is ignored or caught, so the write returns EPIPE instead of killing).
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// clap's message without its usage block and tips, on one line.
fn one_line(msg: &str) -> String {
    let body = msg.split("\n\n").next().unwrap_or(msg);
    let body = body.strip_prefix("error: ").unwrap_or(body);
    body.split_whitespace().collect::<Vec<_>>().join(" ")
}
