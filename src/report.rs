//! The child's failure report: a fixed-size `{step, errno}` record written to a CLOEXEC pipe.
//!
//! EOF on the read end means `execve` succeeded (the pipe closed with the exec), a record means the
//! child stopped at that step. This is std's spawn pipe with the step added, so the parent can say
//! which confinement step failed instead of a bare errno.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;

/// Each irreversible step of the child, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Step {
    Signals = 1,
    ProcessGroup,
    Fds,
    Rlimits,
    Mounts,
    Securebits,
    BoundingSet,
    Groups,
    Gid,
    Uid,
    Capabilities,
    VerifyIdentity,
    ParentDeath,
    Chdir,
    NoNewPrivs,
    Landlock,
    Seccomp,
    Exec,
}

impl Step {
    const ALL: [Step; 18] = [
        Step::Signals,
        Step::ProcessGroup,
        Step::Fds,
        Step::Rlimits,
        Step::Mounts,
        Step::Securebits,
        Step::BoundingSet,
        Step::Groups,
        Step::Gid,
        Step::Uid,
        Step::Capabilities,
        Step::VerifyIdentity,
        Step::ParentDeath,
        Step::Chdir,
        Step::NoNewPrivs,
        Step::Landlock,
        Step::Seccomp,
        Step::Exec,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::Signals => "restore signal mask",
            Step::ProcessGroup => "process group",
            Step::Fds => "close inherited fds",
            Step::Rlimits => "rlimits",
            Step::Mounts => "private mounts",
            Step::Securebits => "lock securebits",
            Step::BoundingSet => "clear capability bounding set",
            Step::Groups => "clear supplementary groups",
            Step::Gid => "setresgid",
            Step::Uid => "setresuid",
            Step::Capabilities => "clear capabilities",
            Step::VerifyIdentity => "verify ids and capabilities",
            Step::ParentDeath => "parent-death signal",
            Step::Chdir => "chdir",
            Step::NoNewPrivs => "no_new_privs",
            Step::Landlock => "landlock",
            Step::Seccomp => "seccomp",
            Step::Exec => "exec",
        }
    }

    fn from_u8(v: u8) -> Option<Step> {
        Step::ALL.iter().copied().find(|s| *s as u8 == v)
    }
}

const RECORD: usize = 5;

/// Child side: write the record, best effort (the parent also sees the exit status).
pub fn send(fd: impl AsFd, step: Step, errno: Errno) {
    let mut buf = [0u8; RECORD];
    buf[0] = step as u8;
    buf[1..].copy_from_slice(&(errno as i32).to_le_bytes());
    let _ = nix::unistd::write(fd, &buf);
}

/// Parent side: `Ok(None)` on EOF (exec succeeded), `Ok(Some(..))` for a failure record.
pub fn receive(fd: OwnedFd) -> std::io::Result<Option<(Step, Errno)>> {
    let mut file = std::fs::File::from(fd);
    let mut buf = [0u8; RECORD];
    let mut got = 0;
    while got < RECORD {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if got == 0 {
        return Ok(None);
    }
    let step = Step::from_u8(buf[0]).filter(|_| got == RECORD);
    let errno = i32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]);
    match step {
        Some(step) => Ok(Some((step, Errno::from_raw(errno)))),
        None => Err(std::io::Error::other("truncated child report")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_every_step() {
        for step in Step::ALL {
            let (r, w) = nix::unistd::pipe().unwrap();
            send(&w, step, Errno::EACCES);
            drop(w);
            assert_eq!(receive(r).unwrap(), Some((step, Errno::EACCES)));
        }
    }

    #[test]
    fn eof_means_exec_succeeded() {
        let (r, w) = nix::unistd::pipe().unwrap();
        drop(w);
        assert_eq!(receive(r).unwrap(), None);
    }
}
