//! One error type for the launcher, and the one table of its exit codes.
//!
//! Every variant prints as a single `where: what` line (main adds the `stockade: ` prefix) and maps
//! to one exit code. Launcher codes only occur when the server never started; once it ran, its own
//! status (or 128+N) is what stockade returns.

use std::fmt;
use std::path::PathBuf;

use crate::report::Step;

/// Exit codes of stockade itself (sysexits.h where one fits).
pub mod code {
    /// Bad stockade command line, or an empty server command.
    pub const USAGE: u8 = 64;
    /// Malformed profile, unknown key, wrong type, bad value, unsupported version.
    pub const PROFILE: u8 = 65;
    /// A file or directory that must exist does not: the profile, a path it names, a flag's path.
    pub const MISSING: u8 = 66;
    /// Unknown user or group.
    pub const NO_USER: u8 = 67;
    /// A kernel feature the profile requires is missing (Landlock ABI or right, seccomp).
    pub const KERNEL: u8 = 69;
    /// Internal error: a bug in stockade.
    pub const SOFTWARE: u8 = 70;
    /// A confinement step failed in the child, or the supervisor could not work.
    pub const CONFINE: u8 = 71;
    /// uid/gid 0 as the target, or stockade lacks the privilege it needs.
    pub const PERMISSION: u8 = 77;
    /// The server did not pass its readiness probe in time (the start failed; it was stopped).
    pub const NOT_READY: u8 = 75;
    /// A server flag, or a key of the server's own configuration, refused by the profile's policy.
    pub const SERVER_FLAG: u8 = 78;
    /// The server exists but cannot be executed.
    pub const NOT_EXECUTABLE: u8 = 126;
    /// The server was not found.
    pub const NOT_FOUND: u8 = 127;
    /// A `supervise.pass_fds` entry is not an fd the caller opened for the server.
    pub const PASS_FD: u8 = 72;
}

/// Where in a profile something is: `file:line:col`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

#[derive(Debug)]
pub enum Error {
    Usage(String),
    /// Syntax, type, unknown key or semantic error in a profile.
    Profile {
        at: Location,
        msg: String,
    },
    ProfileNotFound {
        name: String,
        known: Vec<String>,
    },
    /// A path that must exist does not (or cannot be opened).
    Missing {
        what: String,
        path: PathBuf,
        source: std::io::Error,
    },
    UnknownUser {
        at: Location,
        what: &'static str,
        name: String,
    },
    RootTarget {
        at: Option<Location>,
        what: &'static str,
    },
    Privilege(String),
    Kernel(String),
    ServerFlag {
        flag: String,
        reason: String,
    },
    /// The server's own configuration (a settings file, a variable) widens what the profile
    /// allows: `source` is the file or variable, `key` the setting.
    ServerConfig {
        source: String,
        key: String,
        reason: String,
    },
    /// A server flag names a path that does not exist.
    MissingFlagPath(String),
    ServerNotFound(String),
    ServerNotExecutable(PathBuf),
    /// A `supervise.pass_fds` entry that cannot be passed.
    PassFd {
        fd: i32,
        reason: String,
    },
    /// A step in the child failed with this errno (read from the report pipe).
    Confine {
        step: Step,
        errno: nix::errno::Errno,
    },
    /// The supervisor or another launcher-side operation failed.
    Os {
        what: String,
        source: std::io::Error,
    },
    Internal(String),
    /// The readiness probe did not pass within the start-up timeout.
    NotReady {
        url: String,
        secs: u64,
        last: String,
    },
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => code::USAGE,
            Error::Profile { .. } => code::PROFILE,
            Error::ProfileNotFound { .. } | Error::Missing { .. } | Error::MissingFlagPath(_) => {
                code::MISSING
            }
            Error::UnknownUser { .. } => code::NO_USER,
            Error::RootTarget { .. } | Error::Privilege(_) => code::PERMISSION,
            Error::Kernel(_) => code::KERNEL,
            Error::ServerFlag { .. } | Error::ServerConfig { .. } => code::SERVER_FLAG,
            Error::ServerNotFound(_) => code::NOT_FOUND,
            Error::ServerNotExecutable(_) => code::NOT_EXECUTABLE,
            Error::PassFd { .. } => code::PASS_FD,
            Error::Confine { step, errno } => match (step, errno) {
                (Step::Exec, nix::errno::Errno::ENOENT) => code::NOT_FOUND,
                (Step::Exec, _) => code::NOT_EXECUTABLE,
                (Step::Landlock | Step::Seccomp, nix::errno::Errno::ENOSYS)
                | (Step::Landlock | Step::Seccomp, nix::errno::Errno::EOPNOTSUPP) => code::KERNEL,
                _ => code::CONFINE,
            },
            Error::Os { .. } => code::CONFINE,
            Error::Internal(_) => code::SOFTWARE,
            Error::NotReady { .. } => code::NOT_READY,
        }
    }

    pub fn profile(at: Location, msg: impl Into<String>) -> Self {
        Error::Profile {
            at,
            msg: msg.into(),
        }
    }

    pub fn os(what: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        Error::Os {
            what: what.into(),
            source: source.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => write!(f, "usage: {m}"),
            // The message may quote the profile's text: keep it one line, no terminal controls
            // (found by fuzz/ target profile).
            Error::Profile { at, msg } => {
                write!(f, "{at}: ")?;
                msg.chars().try_for_each(|c| match c.is_control() {
                    true => write!(f, "{}", c.escape_default()),
                    false => write!(f, "{c}"),
                })
            }
            Error::ProfileNotFound { name, known } => write!(
                f,
                "profile '{name}': no such built-in profile and no such file (built-in: {})",
                known.join(", ")
            ),
            Error::Missing { what, path, source } => {
                write!(f, "{what} '{}': {source}", path.display())
            }
            Error::UnknownUser { at, what, name } => {
                write!(
                    f,
                    "{at}: unknown {what} '{name}' (not in the user database)"
                )
            }
            Error::RootTarget { at: Some(at), what } => write!(
                f,
                "{at}: {what} 0 (root) is refused as a target: the server must run unprivileged"
            ),
            Error::RootTarget { at: None, what } => write!(
                f,
                "running as {what} 0 without the capabilities to change it: refusing to start the server as root"
            ),
            Error::Privilege(m) => write!(f, "privilege: {m}"),
            Error::Kernel(m) => write!(f, "kernel: {m}"),
            Error::ServerFlag { flag, reason } => {
                write!(f, "server flag refused: {flag}: {reason}")
            }
            Error::ServerConfig {
                source,
                key,
                reason,
            } => {
                if key.is_empty() {
                    write!(f, "server configuration refused: {source}: {reason}")
                } else {
                    write!(f, "server configuration refused: {source}: {key}: {reason}")
                }
            }
            Error::MissingFlagPath(m) => write!(f, "server flag {m}"),
            Error::ServerNotFound(name) => write!(f, "server '{name}': not found"),
            Error::ServerNotExecutable(p) => {
                write!(f, "server '{}': not executable", p.display())
            }
            Error::PassFd { fd, reason } => {
                write!(f, "supervise.pass_fds: fd {fd}: {reason}; nothing started")
            }
            Error::Confine {
                step: Step::Exec,
                errno,
            } => write!(
                f,
                "cannot execute the server: {} ({errno:?}){}",
                errno.desc(),
                if *errno == nix::errno::Errno::EACCES {
                    "; Landlock allows exec only below [landlock] read_exec paths"
                } else {
                    ""
                }
            ),
            Error::Confine {
                step: Step::Mounts,
                errno,
            } if *errno == crate::mounts::VERIFY_ERRNO => write!(
                f,
                "confinement step '{}' failed: a mount in the server's view is not read-only / \
                 noexec as planned after the attributes were set (read back from \
                 /proc/self/mountinfo), or one the plan does not list is there",
                Step::Mounts.name()
            ),
            Error::Confine { step, errno } => write!(
                f,
                "confinement step '{}' failed: {} ({errno:?})",
                step.name(),
                errno.desc(),
            ),
            Error::Os { what, source } => write!(f, "{what}: {source}"),
            Error::Internal(m) => write!(f, "internal error: {m}"),
            Error::NotReady { url, secs, last } => write!(
                f,
                "the server did not become ready within {secs}s (supervise.ready.http_get {url}, \
                 last probe: {last}): stopped it"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Missing { source, .. } | Error::Os { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The exit status a shell would report for a wait status: the code, or 128+N for signal N.
pub fn status_code(status: nix::sys::wait::WaitStatus) -> Option<u8> {
    use nix::sys::wait::WaitStatus;
    match status {
        WaitStatus::Exited(_, c) => Some((c & 0xff) as u8),
        WaitStatus::Signaled(_, sig, _) => Some(128u8.wrapping_add(sig as i32 as u8)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;
    use nix::sys::wait::WaitStatus;
    use nix::unistd::Pid;

    #[test]
    fn wait_status_maps_like_a_shell() {
        let p = Pid::from_raw(1);
        for c in [0, 1, 42, 255] {
            assert_eq!(status_code(WaitStatus::Exited(p, c)), Some(c as u8));
        }
        assert_eq!(
            status_code(WaitStatus::Signaled(p, Signal::SIGKILL, false)),
            Some(137)
        );
        assert_eq!(
            status_code(WaitStatus::Signaled(p, Signal::SIGTERM, true)),
            Some(143)
        );
        assert_eq!(
            status_code(WaitStatus::Signaled(p, Signal::SIGSYS, false)),
            Some(159)
        );
    }

    #[test]
    fn exec_errors_map_to_shell_codes() {
        let e = Error::Confine {
            step: Step::Exec,
            errno: nix::errno::Errno::ENOENT,
        };
        assert_eq!(e.exit_code(), 127);
        let e = Error::Confine {
            step: Step::Exec,
            errno: nix::errno::Errno::EACCES,
        };
        assert_eq!(e.exit_code(), 126);
    }
}
