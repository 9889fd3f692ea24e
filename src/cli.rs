//! The command line. Security policy comes only from the profile and these flags; the
//! environment may tune logging only (`STOCKADE_LOG`).

use std::ffi::OsString;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

const AFTER_HELP: &str = "\
Exit codes (stockade's own; the server's code passes through, 128+N if it died of signal N):
  64  usage: bad stockade command line, no server command
  65  profile: malformed TOML, unknown key, wrong type, bad value, unsupported version
  66  a file or directory that must exist does not (profile, path in the profile, flag path)
  67  unknown user or group
  69  a kernel feature the profile requires is missing (Landlock, seccomp)
  70  internal error
  71  a confinement step failed (the step is named)
  75  the readiness probe did not pass within supervise.ready.timeout_secs
  77  uid/gid 0 as the target, or not enough privilege to change ids
  78  a server flag refused by the profile's policy
  126 the server cannot be executed, 127 the server was not found

Logging: STOCKADE_LOG=error|warn|info|debug (default warn), to stderr.";

/// Confine an inference server (uid drop, no capabilities, Landlock, seccomp, least-privilege
/// flags) and supervise it as its parent (signals, reaping, exit status, graceful stop).
#[derive(Debug, Parser)]
#[command(name = "stockade", version, after_help = AFTER_HELP)]
#[command(
    override_usage = "stockade --profile <NAME|PATH> [--dry-run [--format json]] -- <SERVER> [ARGS]...\n       stockade --list-profiles | --print-profile <NAME>\n       stockade learn --help   (record a server, write a profile, replay it)"
)]
pub struct Cli {
    /// A built-in profile name (see --list-profiles) or a path to a TOML profile.
    #[arg(short, long, value_name = "NAME|PATH", required_unless_present_any = ["list_profiles", "print_profile"])]
    pub profile: Option<String>,

    /// Print the resolved plan and exit without starting anything (needs no root). Exits 69
    /// if this kernel cannot enforce everything the profile asks for.
    #[arg(long)]
    pub dry_run: bool,

    /// Output format of --dry-run.
    #[arg(long, value_enum, default_value_t = Format::Text, requires = "dry_run")]
    pub format: Format,

    /// List the built-in profiles.
    #[arg(long, conflicts_with_all = ["profile", "print_profile"])]
    pub list_profiles: bool,

    /// Print a built-in profile's TOML, to start your own from.
    #[arg(long, value_name = "NAME", conflicts_with = "profile")]
    pub print_profile: Option<String>,

    /// The server command line, after `--`.
    #[arg(last = true, value_name = "SERVER")]
    pub command: Vec<OsString>,
}

/// Parse a command line; a refusal becomes stockade's one `stockade: usage: …` line (exit 64),
/// `--help` and `--version` print as clap does (exit 0). `Err` is the exit code.
pub fn parse_or_exit<T: Parser>(hint: &str) -> Result<T, std::process::ExitCode> {
    T::try_parse().map_err(|e| {
        use clap::error::ErrorKind;
        if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
            let _ = e.print();
            return std::process::ExitCode::SUCCESS;
        }
        say(&format!(
            "stockade: usage: {} (see {hint})",
            one_line(&e.to_string())
        ));
        std::process::ExitCode::from(crate::error::code::USAGE)
    })
}

/// One line to stderr. A closed or broken stderr is not an error of the run: eprintln! would
/// panic on EPIPE (SIGPIPE is ignored or caught, so the write returns EPIPE instead of killing).
pub fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// clap's message without its usage block and tips, on one line.
fn one_line(msg: &str) -> String {
    let body = msg.split("\n\n").next().unwrap_or(msg);
    let body = body.strip_prefix("error: ").unwrap_or(body);
    body.split_whitespace().collect::<Vec<_>>().join(" ")
}
