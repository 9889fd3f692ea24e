//! `STOCKADE_LOG=error|warn|info|debug|trace` (default warn), to stderr, for both binaries.

/// A plain level, not an env-filter expression: the filter's regex engine would double the
/// static binary's size.
pub fn init() {
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
        // Its report of a failed write (a closed or broken stderr) is an eprintln!, which
        // panics on that same stderr: a log line must never end the supervisor.
        .log_internal_errors(false)
        .try_init();
}
