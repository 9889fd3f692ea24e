//! The supervisor as PID 1 of its own PID namespace, so that nothing of the server's tree can
//! outlive stockade, even when stockade is SIGKILLed.
//!
//! PDEATHSIG kills the server when its parent dies, but not the server's children, and a process
//! that left the group escapes a group kill. A PID namespace closes both holes: when its PID 1
//! dies the kernel SIGKILLs every process in it. So stockade `unshare`s a PID namespace and
//! forks: the inner process is PID 1 there and supervises, with PDEATHSIG=SIGKILL towards the
//! outer one; the outer one only relays signals in and the exit code (and systemd notifications)
//! out. SIGKILL to the outer → PDEATHSIG kills the inner → the kernel kills the namespace.
//!
//! Without CAP_SYS_ADMIN (rootless, a default container, a pod with only the id-changing
//! capabilities), or when the runtime's seccomp filter refuses unshare, there is no PID namespace:
//! the guarantee is then the server's PDEATHSIG and the process-group kill only. In a container
//! stockade is PID 1 of the container's own PID namespace, which gives the same guarantee.
//!
//! Whether to use one is decided by `plan` (`plan::own_pid_namespace`), not here.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use tracing::{debug, info, warn};

use super::notify::Notifier;
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::profile::PidNamespace;

pub enum Entered {
    /// We are the outer process and the inner one has exited with this code.
    Outer(u8),
    /// We are PID 1 of the new namespace; supervise. Notifications go through the outer one.
    /// The fd reads one byte once the outer one has dropped its capabilities (`outer_dropped`).
    Inner(Notifier, OwnedFd),
    /// `auto` could not create the namespace: supervise as an ordinary process.
    Skipped(Notifier),
}

/// Create the namespace and fork its PID 1. Returns in both processes (see `Entered`).
/// All signals must still be blocked (they are, from `main`).
pub fn enter(plan: &Plan, notifier: Notifier, foreground: bool) -> Result<Entered> {
    if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWPID) {
        if plan.supervise.pid_namespace == PidNamespace::Always {
            return Err(Error::os("unshare(CLONE_NEWPID)", e));
        }
        warn!(error = %e, "cannot create a PID namespace: supervising without one (only PDEATHSIG and the process group stop the server's tree if stockade is killed)");
        return Ok(Entered::Skipped(notifier));
    }
    let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
    // The inner process checks this pipe to learn whether the outer one is still alive.
    let (life_r, life_w) = nix::unistd::pipe2(cloexec).map_err(|e| Error::os("pipe", e))?;
    // One byte once the outer process has no capabilities left: the server waits for it too.
    let (dropped_r, dropped_w) = nix::unistd::pipe2(cloexec).map_err(|e| Error::os("pipe", e))?;
    let relay = if notifier.is_on() {
        Some(nix::unistd::pipe2(cloexec).map_err(|e| Error::os("pipe", e))?)
    } else {
        None
    };
    match crate::sys::fork().map_err(|e| Error::os("fork (PID namespace)", e))? {
        ForkResult::Child => {
            drop(life_w);
            drop(dropped_w);
            drop(notifier);
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(|e| Error::os("PR_SET_PDEATHSIG", e))?;
            // getppid() is 0 here whether or not the outer process lives (it is outside the
            // namespace), so ask the pipe: a hang-up means it died before PDEATHSIG was set.
            let mut fds = [PollFd::new(life_r.as_fd(), PollFlags::POLLIN)];
            let _ = nix::poll::poll(&mut fds, PollTimeout::ZERO);
            if fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLHUP))
            {
                return Err(Error::Internal(
                    "the outer stockade process exited during start-up".into(),
                ));
            }
            let n = relay.map_or(Notifier::Off, |(r, w)| {
                drop(r);
                Notifier::relay(w)
            });
            Ok(Entered::Inner(n, dropped_r))
        }
        ForkResult::Parent { child } => {
            drop(life_r);
            drop(dropped_r);
            let relay = relay.map(|(r, w)| {
                drop(w);
                r
            });
            info!(
                inner = child.as_raw(),
                "supervising from PID 1 of a new PID namespace"
            );
            super::drop_own_capabilities(&caps::CapsHashSet::new())?;
            // EPIPE: the inner process already failed; `outer` reaps it and passes its code on.
            // Without the byte nothing starts there, so the write's failure is safe to ignore.
            let _ = nix::unistd::write(&dropped_w, &[1u8]);
            drop(dropped_w);
            let fresh = Fresh {
                life: &life_w,
                foreground,
            };
            let code = outer(child, relay, notifier, Some(fresh))?;
            drop(life_w);
            Ok(Entered::Outer(code))
        }
    }
}

/// In the inner process: wait until the outer one has dropped its capabilities (it does that
/// right after the fork, in parallel). EOF: it died or failed, and nothing may start.
pub fn outer_dropped(fd: OwnedFd) -> Result<()> {
    if crate::sys::wait_byte(&fd) {
        return Ok(());
    }
    Err(Error::Internal(
        "the outer stockade process exited during start-up".into(),
    ))
}

/// Tells a fresh image of stockade that it is the relay, and what it relays: "inner pid, life
/// fd, relay fd, notify fd, foreground" (-1: none). Set only by `exec_relay`.
pub const RELAY_VAR: &str = "STOCKADE_INTERNAL_RELAY";

/// What the relay in its start-up image needs to exec a fresh one (`exec_relay`).
struct Fresh<'a> {
    life: &'a OwnedFd,
    foreground: bool,
}

/// Replace the relay's image with a fresh one of the same binary that runs only `outer`: the
/// relay then keeps none of start-up's memory (profile, plan, heap, relocated copies, the code
/// that built them), only the pages its loop runs in. Same pid, same children, same argv (what
/// `ps` and systemd show); the signal mask and pending signals survive the exec, so nothing is
/// lost meanwhile. Done when start-up's pages would be released (a second in): a short-lived
/// server never pays for the exec. Returns only if the exec failed (no /proc).
fn exec_relay(
    inner: Pid,
    relay: Option<std::os::fd::BorrowedFd<'_>>,
    notifier: &Notifier,
    life: &OwnedFd,
    foreground: bool,
) -> std::io::Error {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let keep = |fd: i32| {
        nix::fcntl::fcntl(
            crate::sys::borrow_fd(fd),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .map(|_| fd)
    };
    let fds = (|| -> nix::Result<(i32, i32, i32)> {
        let life = keep(life.as_raw_fd())?;
        let relay = relay.map_or(Ok(-1), |r| keep(r.as_raw_fd()))?;
        let notify = notifier.socket_fd().map_or(Ok(-1), keep)?;
        Ok((life, relay, notify))
    })();
    let (life, relay, notify) = match fds {
        Ok(f) => f,
        Err(e) => return e.into(),
    };
    let spec = format!(
        "{RELAY_VAR}={},{life},{relay},{notify},{}",
        inner.as_raw(),
        u8::from(foreground)
    );
    let cstr = |b: &[u8]| CString::new(b).ok();
    let argv: Option<Vec<CString>> = std::env::args_os().map(|a| cstr(a.as_bytes())).collect();
    let mut env: Option<Vec<CString>> = std::env::vars_os()
        .filter(|(k, _)| k != RELAY_VAR)
        .map(|(k, v)| cstr(&[k.as_bytes(), b"=", v.as_bytes()].concat()))
        .collect();
    if let Some(env) = env.as_mut() {
        env.extend(cstr(spec.as_bytes()));
    }
    let (Some(argv), Some(env)) = (argv, env) else {
        return std::io::Error::from(std::io::ErrorKind::InvalidInput);
    };
    // nix's execve, not std's Command: that one empties the signal mask before the exec.
    match nix::unistd::execve(c"/proc/self/exe", &argv, &env) {
        Err(e) => e.into(),
        Ok(never) => match never {},
    }
}

/// The relay in its fresh image (`exec_relay`): parse what the old one left, run the loop, hand
/// the terminal back. Returns the exit code; a malformed or foreign variable is an error.
pub fn relay_main(spec: &std::ffi::OsStr) -> Result<u8> {
    let bad = || Error::Usage(format!("{RELAY_VAR} is internal to stockade; unset it"));
    let f: Vec<i32> = spec
        .to_str()
        .ok_or_else(bad)?
        .split(',')
        .map(|n| n.parse::<i32>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad())?;
    let &[inner, life, relay, notify, fg] = f.as_slice() else {
        return Err(bad());
    };
    let inner = Pid::from_raw(inner);
    // Only the image stockade exec'd has `inner` as its child. WNOWAIT: one that already
    // exited stays to be reaped by the loop, with its status.
    let check = WaitPidFlag::WNOHANG | WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
    if inner.as_raw() <= 0
        || matches!(
            nix::sys::wait::waitid(nix::sys::wait::Id::Pid(inner), check),
            Err(Errno::ECHILD)
        )
    {
        return Err(bad());
    }
    let adopt = |fd: i32| (fd >= 0).then(|| crate::sys::adopt_fd(fd)).transpose();
    let (life, relay, notify) = (|| Ok((adopt(life)?, adopt(relay)?, adopt(notify)?)))()
        .map_err(|e: Errno| Error::os("relay fds", e))?;
    let notifier = notify.map_or(Notifier::Off, Notifier::adopt_socket);
    let code = outer(inner, relay, notifier, None)?;
    drop(life);
    if fg == 1 {
        super::hand_back_terminal(Some((nix::unistd::getpid(), nix::unistd::getpgrp())));
    }
    Ok(code)
}

/// The outer process: no capabilities, relays signals to the inner one and its notifications to
/// systemd, and exits with its code.
///
/// A compact loop, unlike the supervisor's: the forwarded signals (and SIGCHLD) stay blocked and
/// are read from a signalfd, no handler, no allocation per wake-up. Once start-up's pages are
/// given back, the few pages this loop runs in are all the relay keeps of stockade's code.
#[inline(never)]
fn outer(
    inner: Pid,
    relay: Option<OwnedFd>,
    mut notifier: Notifier,
    mut fresh: Option<Fresh<'_>>,
) -> Result<u8> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    // The set the supervisor's handlers cover: every forwarded signal and SIGCHLD. The others
    // (the synchronous faults) are unblocked, with their dispositions, as before.
    let forwarded = super::forwarded();
    let mut set = SigSet::all();
    for sig in Signal::iterator() {
        if sig != Signal::SIGCHLD && !forwarded.contains(&(sig as i32)) {
            set.remove(sig);
        }
    }
    drop(forwarded);
    // The outer process starts no server: no fd of its own can reach one.
    let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| Error::os("signalfd", e))?;
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&set), None)
        .map_err(|e| Error::os("sigprocmask", e))?;
    let me = nix::unistd::getpid().as_raw();
    // The relay only loops from here: give back what start-up left resident, once it has run
    // a while (a short-lived server exits first and pays nothing for it).
    let mut release_at = Some(std::time::Instant::now() + super::RELEASE_AFTER);
    let mut relay = relay.map(std::fs::File::from);
    let mut pending: Vec<u8> = Vec::new();
    loop {
        // Start-up's pages go (or the image, for a fresh one) right before the poll, with its
        // arguments ready: while the relay sleeps, only the poll's own code is back in.
        let now = std::time::Instant::now();
        let release = release_at.is_some_and(|t| t <= now);
        if release {
            release_at = None;
        }
        let timeout = super::poll_timeout(release_at.map(|t| t.saturating_duration_since(now)));
        let relay_fd = relay.as_ref().map(|r| r.as_fd());
        if release {
            // In the start-up image, a fresh one instead (not with half a notification read:
            // it would be lost); in the fresh one, its own start-up pages.
            if let Some(f) = fresh.take().filter(|_| pending.is_empty()) {
                let e = exec_relay(inner, relay_fd, &notifier, f.life, f.foreground);
                debug!(error = %e, "relaying on in the start-up image");
            }
        }
        let n = if relay_fd.is_some() { 2 } else { 1 };
        let mut fds = [
            super::raw_pollfd(sfd.as_raw_fd()),
            super::raw_pollfd(relay_fd.map_or(sfd.as_raw_fd(), |r| r.as_raw_fd())),
        ];
        crate::sys::poll_releasing(&mut fds[..n], timeout.into(), release);
        let ready = |f: &nix::libc::pollfd| {
            PollFlags::from_bits_truncate(f.revents)
                .intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
        };
        let (signalled, relay_ready) = (ready(&fds[0]), n == 2 && ready(&fds[1]));
        // One signal per wake-up: poll reports the next one at once (and a wake-up without one
        // never reaches the EAGAIN path, which would fault in more code after the release).
        if signalled && let Ok(Some(info)) = sfd.read_signal() {
            let sig = info.ssi_signo as i32;
            // A SIGPIPE "sent" by ourselves is the kernel's answer to our own write to a broken
            // pipe (the write sees EPIPE): not for the server (as in `Signals::pending`).
            let own_pipe = sig == nix::libc::SIGPIPE && info.ssi_pid as i32 == me;
            if sig != nix::libc::SIGCHLD && !own_pipe {
                match crate::sys::kill_raw(inner.as_raw(), sig) {
                    Ok(()) | Err(Errno::ESRCH) => debug!(sig, "relayed to the namespace's PID 1"),
                    Err(e) => warn!(sig, error = %e, "relaying failed"),
                }
            }
        }
        if relay_ready {
            relay_once(&mut relay, &mut pending, &mut notifier);
        }
        match nix::sys::wait::waitpid(inner, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
            Ok(s) => {
                if let Some(code) = crate::error::status_code(s) {
                    debug!(status = ?s, "namespace's PID 1 exited");
                    // Its last messages (STOPPING=1) may still be in the pipe; the write end
                    // is closed now, so this ends (bounded in case it is not).
                    for _ in 0..64 {
                        if relay.is_none() {
                            break;
                        }
                        relay_once(&mut relay, &mut pending, &mut notifier);
                    }
                    return Ok(code);
                }
            }
            Err(e) => return Err(Error::os("waiting for the namespace's PID 1", e)),
        }
    }
}

/// One read from the relay pipe; send every complete (NUL-terminated) message. EOF closes it.
fn relay_once(relay: &mut Option<std::fs::File>, pending: &mut Vec<u8>, notifier: &mut Notifier) {
    let Some(r) = relay.as_mut() else {
        return;
    };
    let mut buf = [0u8; 4096];
    match r.read(&mut buf) {
        Ok(0) => *relay = None,
        Ok(n) => pending.extend_from_slice(&buf[..n]),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
        Err(_) => *relay = None,
    }
    while let Some(end) = pending.iter().position(|b| *b == 0) {
        let msg: Vec<u8> = pending.drain(..=end).collect();
        notifier.send(&String::from_utf8_lossy(&msg[..end]));
    }
}
