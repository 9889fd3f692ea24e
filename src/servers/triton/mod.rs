//! Rewrites a tritonserver 2.51 command line into least-privilege form.
//!
//! The operator's argv is tokenized exactly like tritonserver's getopt_long
//! (`grammar`), checked against the profile's `[triton]` policy (`policy`),
//! and re-emitted as canonical `--name=value` tokens (`rewrite`). Paths and
//! ports named by the final argv come back for the Landlock rules.
//!
//! Environment inputs the caller must scrub because they change flag defaults
//! behind the argv (research §1.4): `AIP_*` (AIP_MODE=PREDICTION turns Vertex
//! AI on and HTTP/gRPC off; AIP_STORAGE_URI injects a repository), `OTEL_*`,
//! `TRITON*`, `AWS_*`, `GOOGLE_*`, `AZURE_*`, `LD_*`, `PYTHON*`.

use std::fmt;
use std::path::PathBuf;

mod exposure;
pub mod grammar;
mod kind;
pub mod policy;
mod rewrite;
mod secret;
#[cfg(test)]
mod tests;

pub use kind::Triton;
pub use policy::Policy;
pub use rewrite::rewrite;

/// The result of a successful rewrite.
#[derive(Clone)]
pub struct Rewritten {
    /// Final argv WITHOUT argv[0]: only `--full-name=value` and bare `--flag`.
    pub args: Vec<String>,
    /// Canonical model repositories (read-only Landlock rules).
    pub model_repositories: Vec<PathBuf>,
    /// Backend, repoagent and cache directories that exist (read + execute).
    pub read_exec_dirs: Vec<PathBuf>,
    /// Files the server reads, e.g. TLS certificates and keys.
    pub read_files: Vec<PathBuf>,
    /// Files the server writes, e.g. the `--log-file` target (may not exist yet).
    pub write_files: Vec<PathBuf>,
    /// Ports of the endpoints the final argv enables.
    pub bind_ports: Vec<u16>,
    /// The HTTP listener, when enabled (for the readiness probe).
    pub http_endpoint: Option<std::net::SocketAddr>,
    /// Outbound ports; empty for a local repository without tracing.
    pub connect_ports: Vec<u16>,
    /// Final `--exit-timeout-secs`; the supervisor's grace period must exceed it.
    pub exit_timeout_secs: u32,
    /// Generated secrets written for the operator.
    pub secret_files_written: Vec<PathBuf>,
    /// Human-readable summary lines; never contain secret values.
    pub notes: Vec<String>,
}

const REDACTED: &str = "<redacted>";

impl Rewritten {
    /// `args` with every restricted-API secret replaced by `<redacted>`, for logs.
    pub fn redacted_args(&self) -> Vec<String> {
        self.args.iter().map(|a| redact_arg(a)).collect()
    }
}

/// Replaces the `<value>` of `--{http-restricted-api,grpc-restricted-protocol}=<cats>:<key>=<value>`.
fn redact_arg(arg: &str) -> String {
    for flag in ["--http-restricted-api=", "--grpc-restricted-protocol="] {
        if let Some(rest) = arg.strip_prefix(flag) {
            if let Some((cats, kv)) = rest.split_once(':') {
                let key = kv.split_once('=').map_or(kv, |(k, _)| k);
                return format!("{flag}{cats}:{key}={REDACTED}");
            }
            return format!("{flag}{REDACTED}");
        }
    }
    arg.to_string()
}

impl fmt::Debug for Rewritten {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rewritten")
            .field("args", &self.redacted_args())
            .field("model_repositories", &self.model_repositories)
            .field("read_exec_dirs", &self.read_exec_dirs)
            .field("read_files", &self.read_files)
            .field("write_files", &self.write_files)
            .field("bind_ports", &self.bind_ports)
            .field("connect_ports", &self.connect_ports)
            .field("exit_timeout_secs", &self.exit_timeout_secs)
            .field("secret_files_written", &self.secret_files_written)
            .field("notes", &self.notes)
            .finish()
    }
}

/// Why the command line was refused. `flag` is the canonical option name
/// (without dashes), or empty for errors not tied to one option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteError {
    pub flag: String,
    pub reason: String,
    /// The flag names a path that does not exist (exit 66, like any missing input).
    pub missing: bool,
}

impl RewriteError {
    pub fn new(flag: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            flag: flag.into(),
            reason: reason.into(),
            missing: false,
        }
    }
}

impl fmt::Display for RewriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Flags and reasons quote the operator's argv: escape control characters so a refusal
        // stays one line and cannot drive the terminal (found by fuzz/ target triton_argv).
        let line = |s: &str| -> String {
            s.chars()
                .map(|c| match c.is_control() {
                    true => c.escape_default().to_string(),
                    false => c.to_string(),
                })
                .collect()
        };
        if self.flag.is_empty() {
            write!(f, "tritonserver argv: {}", line(&self.reason))
        } else {
            write!(f, "--{}: {}", line(&self.flag), line(&self.reason))
        }
    }
}

impl std::error::Error for RewriteError {}
