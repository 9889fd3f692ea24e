//! `stockade-learn` (also reached as `stockade learn`): record a server under the normal
//! pipeline, write its profile, replay it. A separate binary so the PID-1 launcher that
//! containers ship carries neither ptrace nor the profile writer (src/learn).

use std::process::ExitCode;

use clap::Parser;
use nix::sys::signal::{SigSet, SigmaskHow};

fn main() -> ExitCode {
    // As stockade's main: record the parent's ignored signals, never inherit an ignored
    // SIGCHLD (the server's status would be lost), and block everything before any handler.
    if stockade::sys::record_ignored_at_start() {
        stockade::sys::forget_ignored_at_start(nix::libc::SIGPIPE);
    }
    if stockade::sys::ignored_at_start(nix::libc::SIGCHLD) {
        let _ = stockade::sys::default_disposition(nix::libc::SIGCHLD);
        stockade::sys::forget_ignored_at_start(nix::libc::SIGCHLD);
    }
    let mut original = SigSet::empty();
    let _ = nix::sys::signal::sigprocmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut original),
    );
    let cli = match stockade::learn::LearnCli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            say(&format!(
                "stockade: usage: {} (see stockade learn --help)",
                one_line(&e.to_string())
            ));
            return ExitCode::from(stockade::error::code::USAGE);
        }
    };
    stockade::logging::init();
    match stockade::learn::run(&cli, original) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            say(&format!("stockade: {e}"));
            ExitCode::from(e.exit_code())
        }
    }
}

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
