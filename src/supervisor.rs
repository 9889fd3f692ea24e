//! The parent after fork: start the confined server, forward signals, reap, stop gracefully,
//! restart on failure if the profile says so, and leave nothing behind.
//!
//! Signals are blocked from the first line of `main`, so none is lost before the handlers exist:
//! a signal that arrives earlier stays pending and is delivered when the loop unblocks it.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::SignalOnly;
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::profile::{RestartMode, SignalTarget};

/// Signals that start a graceful stop (and its grace period).
const STOP_SIGNALS: &[i32] = &[nix::libc::SIGTERM, nix::libc::SIGINT, nix::libc::SIGQUIT];

/// Everything catchable except SIGCHLD (ours), SIGPIPE (our own writes) and the synchronous
/// faults (they are about stockade's own code).
fn forwarded() -> Vec<i32> {
    use nix::libc::*;
    let mut v = vec![
        SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGTERM, SIGSTKFLT, SIGCONT, SIGTSTP,
        SIGTTIN, SIGTTOU, SIGURG, SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGWINCH, SIGIO, SIGPWR,
    ];
    v.extend(crate::sys::rt_signals());
    v
}

/// Fork and confine one server instance. Returns once the child has exec'd (or failed).
fn spawn(plan: &mut Plan, original_mask: &SigSet) -> Result<Pid> {
    let threads = crate::sys::thread_count();
    if threads != 1 {
        return Err(Error::Internal(format!(
            "{threads} threads before fork; confinement needs a single-threaded launcher"
        )));
    }
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::os("report pipe", e))?;
    // Block everything across fork so no handler of ours runs in the child.
    let mut during = SigSet::empty();
    nix::sys::signal::sigprocmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut during),
    )
    .map_err(|e| Error::os("sigprocmask", e))?;
    let parent = nix::unistd::getpid();
    let forked = crate::sys::fork().map_err(|e| Error::os("fork", e))?;
    match forked {
        nix::unistd::ForkResult::Child => {
            drop(r);
            crate::confine::enter(plan, w, parent, original_mask)
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(w);
            let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&during), None);
            match crate::report::receive(r) {
                Ok(None) => Ok(child),
                Ok(Some((step, errno))) => {
                    let _ = nix::sys::wait::waitpid(child, None);
                    Err(Error::Confine { step, errno })
                }
                Err(e) => {
                    let _ = nix::sys::wait::waitpid(child, None);
                    Err(Error::os("reading the child's report", e))
                }
            }
        }
    }
}

struct Signals {
    delivery: SignalDelivery<UnixStream, SignalOnly>,
}

impl Signals {
    fn install() -> Result<Signals> {
        let (read, write) = UnixStream::pair().map_err(|e| Error::os("signal pipe", e))?;
        read.set_nonblocking(true)
            .and_then(|_| write.set_nonblocking(true))
            .map_err(|e| Error::os("signal pipe", e))?;
        let mut sigs = forwarded();
        sigs.push(nix::libc::SIGCHLD);
        let delivery = SignalDelivery::with_pipe(read, write, SignalOnly, sigs)
            .map_err(|e| Error::os("installing signal handlers", e))?;
        Ok(Signals { delivery })
    }

    /// Wait up to `timeout` (None: forever) and return the signals that arrived.
    fn wait(&mut self, timeout: Option<Duration>) -> Vec<i32> {
        let fd = self.delivery.get_read().as_raw_fd();
        let borrowed = crate::sys::borrow_fd(fd);
        let mut fds = [PollFd::new(borrowed, PollFlags::POLLIN)];
        let t = match timeout {
            None => PollTimeout::NONE,
            Some(d) => PollTimeout::try_from(d.as_millis().min(i32::MAX as u128) as i32)
                .unwrap_or(PollTimeout::MAX),
        };
        let _ = nix::poll::poll(&mut fds, t);
        self.delivery.pending().collect()
    }
}

/// Supervision state for the current server instance.
struct Instance {
    pid: Pid,
    status: Option<WaitStatus>,
}

pub struct Supervisor<'a> {
    plan: &'a mut Plan,
    original_mask: SigSet,
    signals: Signals,
    pid1: bool,
    stop_signal: Option<i32>,
    forward_at: Option<Instant>,
    kill_at: Option<Instant>,
    killed: bool,
}

/// Start the server and supervise it until it is gone. Returns stockade's exit code.
pub fn run(plan: &mut Plan, original_mask: SigSet) -> Result<u8> {
    let pid1 = nix::unistd::getpid().as_raw() == 1;
    if !pid1 {
        // Orphans below us are reparented to us, not to init, so we can reap and kill them.
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| Error::os("PR_SET_CHILD_SUBREAPER", e))?;
    }
    let first = spawn(plan, &original_mask)?;
    info!(pid = first.as_raw(), argv = ?plan.display_argv, "server started");
    let signals = Signals::install()?;
    // Our handlers exist now: let pending and future signals in.
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| Error::os("sigprocmask", e))?;
    let mut sup = Supervisor {
        plan,
        original_mask,
        signals,
        pid1,
        stop_signal: None,
        forward_at: None,
        kill_at: None,
        killed: false,
    };
    sup.supervise(first)
}

impl Supervisor<'_> {
    fn supervise(&mut self, first: Pid) -> Result<u8> {
        let mut instance = Instance {
            pid: first,
            status: None,
        };
        let mut restarts = 0u32;
        loop {
            let status = self.until_exit(&mut instance);
            self.cleanup_leftovers(instance.pid);
            let code = crate::error::status_code(status).unwrap_or(crate::error::code::CONFINE);
            let failed = code != 0;
            let r = &self.plan.supervise.restart;
            if !(failed
                && r.mode == RestartMode::OnFailure
                && self.stop_signal.is_none()
                && restarts < r.max_restarts)
            {
                if failed && r.mode == RestartMode::OnFailure && self.stop_signal.is_none() {
                    warn!(restarts, code, "server keeps failing: giving up");
                }
                return Ok(code);
            }
            let shift = restarts.min(20);
            let delay = r
                .backoff_initial_ms
                .saturating_mul(1u64 << shift)
                .min(r.backoff_max_ms);
            restarts += 1;
            warn!(
                code,
                restart = restarts,
                delay_ms = delay,
                "server failed: restarting"
            );
            if !self.sleep_interruptible(Duration::from_millis(delay)) {
                return Ok(code);
            }
            let pid = spawn(self.plan, &self.original_mask)?;
            info!(pid = pid.as_raw(), restart = restarts, "server restarted");
            instance = Instance { pid, status: None };
        }
    }

    /// Sleep, but return false as soon as a stop signal arrives.
    fn sleep_interruptible(&mut self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            let now = Instant::now();
            if now >= end {
                return true;
            }
            for sig in self.signals.wait(Some(end - now)) {
                if STOP_SIGNALS.contains(&sig) {
                    self.stop_signal = Some(sig);
                    return false;
                }
                if sig == nix::libc::SIGCHLD {
                    let _ = self.reap(None);
                }
            }
        }
    }

    fn target(&self, pid: Pid) -> i32 {
        match self.plan.supervise.signal_target {
            SignalTarget::Group => -pid.as_raw(),
            SignalTarget::Server => pid.as_raw(),
        }
    }

    fn forward(&self, pid: Pid, sig: i32) {
        match crate::sys::kill_raw(self.target(pid), sig) {
            Ok(()) => debug!(sig, pid = pid.as_raw(), "forwarded"),
            Err(Errno::ESRCH) => debug!(sig, "server already gone"),
            Err(e) => warn!(sig, error = %e, "forwarding failed"),
        }
    }

    fn until_exit(&mut self, inst: &mut Instance) -> WaitStatus {
        loop {
            if let Some(s) = inst.status {
                return s;
            }
            let now = Instant::now();
            if let Some(at) = self.forward_at.filter(|at| *at <= now) {
                let _ = at;
                self.forward_at = None;
                if let Some(sig) = self.stop_signal {
                    self.forward(inst.pid, sig);
                }
            }
            if self.kill_at.is_some_and(|at| at <= now) && !self.killed {
                warn!(
                    grace_secs = self.plan.supervise.stop_grace_secs,
                    "grace period over: SIGKILL to the server's process group"
                );
                let _ = crate::sys::kill_raw(-inst.pid.as_raw(), nix::libc::SIGKILL);
                let _ = crate::sys::kill_raw(inst.pid.as_raw(), nix::libc::SIGKILL);
                self.killed = true;
            }
            let next = [self.forward_at, self.kill_at.filter(|_| !self.killed)]
                .into_iter()
                .flatten()
                .min();
            let timeout = next.map(|t| t.saturating_duration_since(Instant::now()));
            for sig in self.signals.wait(timeout) {
                if sig == nix::libc::SIGCHLD {
                    continue;
                }
                self.on_signal(inst.pid, sig);
            }
            // Reap on every wake-up: SIGCHLD coalesces, and waitpid is cheap.
            if let Some(s) = self.reap(Some(inst.pid)) {
                inst.status = Some(s);
            }
        }
    }

    fn on_signal(&mut self, pid: Pid, sig: i32) {
        let stop = STOP_SIGNALS.contains(&sig);
        if stop && self.stop_signal.is_none() {
            let now = Instant::now();
            let s = &self.plan.supervise;
            let delay = Duration::from_secs(s.pre_stop_delay_secs);
            self.stop_signal = Some(sig);
            self.kill_at = Some(now + delay + Duration::from_secs(s.stop_grace_secs));
            info!(
                sig,
                pre_stop_delay_secs = s.pre_stop_delay_secs,
                grace_secs = s.stop_grace_secs,
                "stopping"
            );
            if delay.is_zero() {
                self.forward(pid, sig);
            } else {
                self.forward_at = Some(now + delay);
            }
            return;
        }
        if stop && self.forward_at.is_some() {
            // Still in the pre-stop delay: the stop is already scheduled.
            return;
        }
        self.forward(pid, sig);
    }

    /// Reap every child that has exited; return the status of `server` if it was among them.
    fn reap(&mut self, server: Option<Pid>) -> Option<WaitStatus> {
        let mut found = None;
        for _ in 0..100_000 {
            match nix::sys::wait::waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(s) => {
                    if s.pid().is_some() && s.pid() == server {
                        found = Some(s);
                    } else {
                        debug!(status = ?s, "reaped");
                    }
                }
                Err(Errno::EINTR) => {}
                Err(_) => break,
            }
        }
        found
    }

    /// Our remaining children (orphans reparented to us, or the server's leftovers).
    fn children(&self) -> Vec<i32> {
        let me = nix::unistd::getpid();
        let path = format!("/proc/{me}/task/{me}/children");
        std::fs::read_to_string(path)
            .map(|s| {
                s.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn signal_leftovers(&self, server: Pid, sig: i32) {
        let _ = crate::sys::kill_raw(-server.as_raw(), sig);
        if self.pid1 {
            // PID 1 of a namespace: -1 reaches every process in it but us.
            let _ = crate::sys::kill_raw(-1, sig);
        } else {
            for c in self.children() {
                let _ = crate::sys::kill_raw(c, sig);
            }
        }
    }

    fn has_children(&self) -> bool {
        !matches!(
            nix::sys::wait::waitid(
                nix::sys::wait::Id::All,
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT
            ),
            Err(Errno::ECHILD)
        )
    }

    /// After the server exits: TERM to whatever is left in its group or below us, then KILL
    /// after `leftover_grace_ms`, reaping until nothing is left (bounded).
    fn cleanup_leftovers(&mut self, server: Pid) {
        let _ = self.reap(None);
        if !self.has_children()
            && nix::sys::signal::kill(Pid::from_raw(-server.as_raw()), None).is_err()
        {
            return;
        }
        debug!("terminating leftovers");
        self.signal_leftovers(server, nix::libc::SIGTERM);
        let term_end =
            Instant::now() + Duration::from_millis(self.plan.supervise.leftover_grace_ms);
        while Instant::now() < term_end && self.has_children() {
            let _ = self.signals.wait(Some(Duration::from_millis(20)));
            let _ = self.reap(None);
        }
        let kill_end = Instant::now() + Duration::from_secs(5);
        loop {
            let _ = self.reap(None);
            let group_alive = nix::sys::signal::kill(Pid::from_raw(-server.as_raw()), None).is_ok();
            if !self.has_children() && !group_alive {
                return;
            }
            if Instant::now() >= kill_end {
                warn!("leftover processes survived SIGKILL");
                return;
            }
            self.signal_leftovers(server, nix::libc::SIGKILL);
            let _ = self.signals.wait(Some(Duration::from_millis(10)));
        }
    }
}
