//! `stockade-learn` (also reached as `stockade learn`): record a server under the normal
//! pipeline, write its profile, replay it. A separate binary so the PID-1 launcher that
//! containers ship carries neither ptrace nor the profile writer (src/learn).

use std::process::ExitCode;

use stockade::cli::say;

fn main() -> ExitCode {
    // The parent's ignored signals kept for the server (as under tini), an ignored SIGCHLD
    // reset, everything blocked until the handlers exist (src/sys.rs).
    let original = stockade::sys::take_signals_at_start();
    let cli: stockade::learn::LearnCli = match stockade::cli::parse_or_exit("stockade learn --help")
    {
        Ok(c) => c,
        Err(code) => return code,
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
