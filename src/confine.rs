//! The child: irreversible steps in one fixed order, then exec. Nothing here depends on input
//! that was not already checked by `plan`; a failure is reported as `{step, errno}` and the child
//! `_exit`s.
//!
//! The order is minijail's, and each step says why it sits where it does.

use std::ffi::{CStr, CString};
use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::{Gid, Pid, Uid};

use crate::identity::Mode;
use crate::plan::Plan;
use crate::report::{self, Step};

type StepResult = Result<(), (Step, Errno)>;

fn at<E: Into<Errno>>(step: Step) -> impl FnOnce(E) -> (Step, Errno) {
    move |e| (step, e.into())
}

/// The caps crate keeps the errno only in its message: recover it from there.
fn caps_err(step: Step) -> impl FnOnce(caps::errors::CapsError) -> (Step, Errno) {
    move |e| (step, crate::capabilities::errno_of(&e))
}

/// Run the steps and exec; on failure report and `_exit`. Never returns.
pub fn enter(plan: &mut Plan, report_fd: OwnedFd, go: OwnedFd, parent: Pid, mask: &SigSet) -> ! {
    let err = match steps(plan, go, parent, mask) {
        Ok(()) => (Step::Exec, Errno::EINVAL),
        Err(e) => e,
    };
    report::send(&report_fd, err.0, err.1);
    crate::sys::exit_now(match (err.0, err.1) {
        (Step::Exec, Errno::ENOENT) => 127,
        (Step::Exec, _) => 126,
        _ => 71,
    })
}

fn steps(plan: &mut Plan, go: OwnedFd, parent: Pid, mask: &SigSet) -> StepResult {
    let root = plan.identity.mode == Mode::Root;
    // Rootless can clear the bounding set only when it happens to hold CAP_SETPCAP.
    let clear_bounding = root || crate::capabilities::has_setpcap();

    // 1. Own process group, and the terminal's foreground when we have one, so Ctrl-C and job
    //    control reach the server as under a shell. All signals are still blocked, so
    //    tcsetpgrp from the background cannot stop us with SIGTTOU.
    nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0)).map_err(at(Step::ProcessGroup))?;
    let stdin = std::io::stdin();
    if nix::unistd::isatty(&stdin).unwrap_or(false)
        && nix::unistd::tcgetpgrp(&stdin).is_ok_and(|g| Ok(g) == nix::unistd::getpgid(Some(parent)))
    {
        let _ = nix::unistd::tcsetpgrp(&stdin, nix::unistd::getpid());
    }

    // 2. Dispositions as tini leaves them: what stockade's parent ignored (nohup, a shell's
    //    `trap '' HUP`, recorded before Rust's runtime ignored SIGPIPE) stays ignored, everything
    //    else is the default (the supervisor's handlers would write into its self-pipe). Then the
    //    mask stockade started with: both survive execve otherwise.
    let inherit = |sig: i32| {
        let _ = if crate::sys::ignored_at_start(sig) {
            crate::sys::ignore_disposition(sig)
        } else {
            crate::sys::default_disposition(sig)
        };
    };
    for sig in Signal::iterator() {
        if !matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            inherit(sig as i32);
        }
    }
    crate::sys::rt_signals().for_each(inherit);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(mask), None)
        .map_err(at(Step::Signals))?;

    // 3. Only 0, 1, 2, the profile's pass_fds and socket-activation fds reach the server.
    crate::sys::cloexec_range(3, u32::MAX).map_err(at(Step::Fds))?;
    let listen = 3..3 + plan.env.listen_fds;
    for fd in plan.supervise.pass_fds.iter().copied().chain(listen) {
        nix::fcntl::fcntl(
            crate::sys::borrow_fd(fd),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .map_err(at(Step::Fds))?;
    }

    // 4. rlimits while still privileged: raising a hard limit needs CAP_SYS_RESOURCE.
    for r in &plan.rlimits {
        let v = r.value.unwrap_or(nix::libc::RLIM_INFINITY);
        nix::sys::resource::setrlimit(r.resource, v, v).map_err(at(Step::Rlimits))?;
    }

    // 5. The private mount namespace (needs CAP_SYS_ADMIN, so before the drop): tmpfs, binds
    //    with their attributes set recursively and read back, or a fresh root and pivot_root.
    //    Before chdir (12), which then resolves in the server's view.
    if let Some(m) = &plan.mounts {
        crate::mounts::apply(m).map_err(at(Step::Mounts))?;
    }

    if root {
        // 6. securebits, locked, while we hold CAP_SETPCAP: no root privilege on exec, no
        //    keep-caps, no ambient raise (unless the profile keeps capabilities).
        let bits = if plan.keep_caps.is_empty() {
            crate::sys::SECUREBITS_LOCKED
        } else {
            0b11 // SECBIT_NOROOT | SECBIT_NOROOT_LOCKED; keep-caps is needed for the handover
        };
        crate::sys::set_securebits(bits).map_err(at(Step::Securebits))?;
        if !plan.keep_caps.is_empty() {
            caps::securebits::set_keepcaps(true).map_err(caps_err(Step::Securebits))?;
        }
        // 7. Bounding set, before the uid change: dropping needs CAP_SETPCAP.
        crate::capabilities::drop_bounding(&plan.keep_caps).map_err(at(Step::BoundingSet))?;
        // 8. groups → gid → uid: each call needs a capability the next one removes. setres*
        //    so no saved id can bring root back.
        let groups: Vec<Gid> = plan
            .identity
            .groups
            .iter()
            .map(|g| Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&groups).map_err(at(Step::Groups))?;
        let g = Gid::from_raw(plan.identity.gid);
        nix::unistd::setresgid(g, g, g).map_err(at(Step::Gid))?;
        let u = Uid::from_raw(plan.identity.uid);
        nix::unistd::setresuid(u, u, u).map_err(at(Step::Uid))?;
    } else if clear_bounding {
        crate::capabilities::drop_bounding(&[]).map_err(at(Step::BoundingSet))?;
    }

    // 9. The other four sets to exactly the keep list (empty by default).
    crate::capabilities::set_all(&plan.keep_caps).map_err(caps_err(Step::Capabilities))?;

    // 10. Read everything back; a mismatch means the kernel did not do what we asked.
    verify_identity(plan, root, clear_bounding)
        .map_err(|_| (Step::VerifyIdentity, Errno::EPERM))?;

    // 11. Parent-death signal after the credential change (which clears it), then make sure the
    //     parent did not die before it was set.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(at(Step::ParentDeath))?;
    if nix::unistd::getppid() != parent {
        return Err((Step::ParentDeath, Errno::ESRCH));
    }

    // 12. chdir as the target user, so a profile's directory the server cannot enter fails
    //     here, loudly; stockade's own directory falls back to `/` (the plan warned).
    if let Err(e) = nix::unistd::chdir(&plan.cwd) {
        if !plan.cwd_inherited {
            return Err((Step::Chdir, e));
        }
        nix::unistd::chdir("/").map_err(at(Step::Chdir))?;
    }

    // 13. no_new_privs: required by Landlock and seccomp, and no exec may gain privileges.
    nix::sys::prctl::set_no_new_privs().map_err(at(Step::NoNewPrivs))?;
    if !nix::sys::prctl::get_no_new_privs().unwrap_or(false) {
        return Err((Step::NoNewPrivs, Errno::EPERM));
    }

    // 14. Landlock: a ruleset built for this child from the paths the parent held open (never the
    //     parent's, which would collect each child's rules), the rules for the fresh tmpfs and
    //     /proc (new inodes, only here after step 5), audit logging after exec where the kernel
    //     has it; fail closed unless the kernel enforced what the plan promised.
    //     `stockade learn` records without it: Landlock has no permissive mode.
    if plan.learn != Some(crate::plan::LearnMode::Record) {
        landlock(plan)?;
    }

    // 14b. Wait for the supervisor's byte: it has given up its capabilities (it does that right
    //      after the fork, in parallel with the steps above), so the server never runs beside a
    //      privileged parent. EOF: the parent died or failed, and kills us anyway.
    if !crate::sys::wait_byte(&go) {
        return Err((Step::ParentDeath, Errno::ESRCH));
    }
    drop(go);

    // LISTEN_PID, which only the child knows, read before the filter (which need not allow
    // getpid), and only for socket activation: the launch path makes no call it does not need.
    let mut buf = [0u8; 32];
    let pid = (plan.env.listen_fds > 0).then(|| nix::unistd::getpid().as_raw());

    // 15. seccomp last: from here on only the filter's syscalls exist, and it stays for the
    //     server.
    crate::seccomp_policy::install(&plan.seccomp).map_err(|e| (Step::Seccomp, e))?;

    // 16. exec, by absolute path, with the planned environment only (plus LISTEN_PID; the
    //     launcher is single-threaded, so the one Vec of pointers here is as safe as the ones
    //     nix's execve allocates).
    let e = if let Some(pid) = pid {
        let listen_pid = listen_pid_entry(&mut buf, pid);
        let env: Vec<&CStr> = plan
            .c_env
            .iter()
            .map(CString::as_c_str)
            .chain([listen_pid])
            .collect();
        nix::unistd::execve(&plan.c_exe, &plan.c_argv, &env).err()
    } else {
        nix::unistd::execve(&plan.c_exe, &plan.c_argv, &plan.c_env).err()
    };
    Err((Step::Exec, e.unwrap_or(Errno::EINVAL)))
}

fn landlock(plan: &mut Plan) -> StepResult {
    if plan.landlock.held.is_empty() && !plan.landlock.rules.is_empty() {
        return Err((Step::Landlock, Errno::EINVAL));
    }
    let ruleset = plan
        .landlock
        .ruleset_for_spawn()
        .map_err(|e| (Step::Landlock, crate::landlock_policy::errno(&e)))?;
    let ruleset = crate::landlock_policy::add_deferred(ruleset, &plan.landlock.deferred)
        .map_err(|e| (Step::Landlock, e))?;
    let status = ruleset
        .restrict_self()
        .map_err(|e| (Step::Landlock, crate::sys::errno_in(&e)))?;
    if !status.no_new_privs || !crate::landlock_policy::status_acceptable(&plan.landlock, &status) {
        return Err((Step::Landlock, Errno::EOPNOTSUPP));
    }
    Ok(())
}

/// `LISTEN_PID=<pid>` in `buf`, without allocating.
fn listen_pid_entry(buf: &mut [u8; 32], pid: i32) -> &CStr {
    const KEY: &[u8] = b"LISTEN_PID=";
    buf[..KEY.len()].copy_from_slice(KEY);
    let mut digits = [0u8; 10];
    let mut n = pid.unsigned_abs();
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for (i, d) in digits[..len].iter().rev().enumerate() {
        buf[KEY.len() + i] = *d;
    }
    buf[KEY.len() + len] = 0;
    CStr::from_bytes_until_nul(&buf[..]).unwrap_or(c"LISTEN_PID=")
}

fn verify_identity(plan: &Plan, root: bool, bounding_checked: bool) -> Result<(), ()> {
    let u = nix::unistd::getresuid().map_err(drop)?;
    let g = nix::unistd::getresgid().map_err(drop)?;
    let ids_ok = [u.real, u.effective, u.saved]
        .iter()
        .all(|x| x.as_raw() == plan.identity.uid && !x.is_root())
        && [g.real, g.effective, g.saved]
            .iter()
            .all(|x| x.as_raw() == plan.identity.gid && x.as_raw() != 0);
    let groups_ok = !root
        || nix::unistd::getgroups().is_ok_and(|have| {
            have.iter().map(|g| g.as_raw()).collect::<Vec<_>>() == plan.identity.groups
        });
    let caps_ok = crate::capabilities::verify(&plan.keep_caps, bounding_checked);
    if ids_ok && groups_ok && caps_ok {
        Ok(())
    } else {
        Err(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn listen_pid_entry_formats_the_pid() {
        let mut buf = [0u8; 32];
        for (pid, want) in [
            (1, "LISTEN_PID=1"),
            (2, "LISTEN_PID=2"),
            (4194304, "LISTEN_PID=4194304"),
        ] {
            assert_eq!(super::listen_pid_entry(&mut buf, pid).to_str(), Ok(want));
        }
        assert_eq!(
            super::listen_pid_entry(&mut buf, i32::MAX).to_str(),
            Ok("LISTEN_PID=2147483647")
        );
    }
}
