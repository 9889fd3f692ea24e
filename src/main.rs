//! The only exit point: parse the CLI, run, print one `stockade: …` line on error.

use std::process::ExitCode;

use nix::sys::signal::{SigSet, SigmaskHow};
use stockade::cli::say;

fn main() -> ExitCode {
    // The parent's ignored signals kept for the server (as under tini), an ignored SIGCHLD
    // reset, everything blocked until the handlers exist (src/sys.rs).
    let original = stockade::sys::take_signals_at_start();
    if let Some(spec) = std::env::var_os(stockade::supervise::pidns::RELAY_VAR) {
        // The outer relay of a PID namespace, in a fresh image (supervise/pidns.rs).
        stockade::logging::init();
        return match stockade::supervise::pidns::relay_main(&spec) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                say(&format!("stockade: {e}"));
                ExitCode::from(e.exit_code())
            }
        };
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "learn") {
        return learn(args, original);
    }
    let cli: stockade::cli::Cli = match stockade::cli::parse_or_exit("stockade --help") {
        Ok(c) => c,
        Err(code) => return code,
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

/// `stockade learn …` is the `stockade-learn` binary next to this one: the learner (ptrace,
/// the profile writer) stays out of the PID-1 binary that containers ship.
fn learn(args: Vec<std::ffi::OsString>, original: SigSet) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("stockade-learn")))
        .filter(|p| p.is_file());
    let Some(exe) = sibling else {
        say(
            "stockade: usage: `stockade learn` needs the stockade-learn binary next to stockade \
             (the .deb installs it; the static container binary does not include it)",
        );
        return ExitCode::from(stockade::error::code::USAGE);
    };
    // The mask stockade started with, as the learner's own main expects to find it.
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&original), None);
    let e = std::process::Command::new(&exe).args(&args[2..]).exec();
    say(&format!("stockade: cannot run {}: {e}", exe.display()));
    ExitCode::from(stockade::error::code::NOT_EXECUTABLE)
}
