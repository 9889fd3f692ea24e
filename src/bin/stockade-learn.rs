//! `stockade-learn` (also reached as `stockade learn`): record a server under the normal
//! pipeline, write its profile, replay it. A separate binary so the PID-1 launcher that
//! containers ship carries neither ptrace nor the profile writer (src/learn).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // The parent's ignored signals kept for the server (as under tini), an ignored SIGCHLD
    // reset, everything blocked until the handlers exist (src/sys.rs).
    let original = stockade::sys::take_signals_at_start();
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
