//! The parent after fork: start the confined server, forward signals, reap, stop gracefully,
//! restart on failure if the profile says so, probe readiness, and leave nothing behind.
//!
//! Signals are blocked from the first line of `main`, so none is lost before the handlers exist:
//! a signal that arrives earlier stays pending and is delivered when the loop unblocks it. One
//! thread, one poll on the self-pipe: no busy loop, and `fork` for a restart stays safe.
//! docs/SUPERVISION.md has the design.
//!
//! The folder: `pidns` (PID 1 of its own PID namespace, the outer relay), `ready` (the loopback
//! HTTP readiness probe), `notify` (sd_notify).

pub mod notify;
pub mod pidns;
pub mod ready;

use std::os::fd::AsRawFd;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use caps::{CapSet, Capability, CapsHashSet};
use nix::errno::Errno;
use nix::poll::PollTimeout;
use nix::sys::signal::{SigSet, SigmaskHow};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::{SignalOnly, WithRawSiginfo};
use tracing::{debug, error, info, warn};

use crate::error::{Error, Result};
use crate::identity::Mode;
use crate::plan::Plan;
use crate::profile::{RestartMode, SignalTarget};
use notify::Notifier;
use ready::HttpGet;

/// How long a server must have run before the supervisor gives back its start-up pages: a
/// short-lived one (a launch) exits first and pays nothing for it.
pub const RELEASE_AFTER: Duration = Duration::from_secs(1);

/// Signals that start a graceful stop (and its grace period).
const STOP_SIGNALS: &[i32] = &[nix::libc::SIGTERM, nix::libc::SIGINT, nix::libc::SIGQUIT];

/// Everything catchable except SIGCHLD (ours) and the synchronous faults (SIGSEGV, SIGBUS,
/// SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT: they are about stockade's own code). SIGPIPE only
/// when another process sent it: the kernel's SIGPIPE for our own write to a closed pipe (a
/// closed stderr) is dropped, and the write sees EPIPE (`Signals::pending`).
pub fn forwarded() -> Vec<i32> {
    use nix::libc::*;
    let mut v = vec![
        SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGTERM, SIGSTKFLT, SIGCONT, SIGTSTP,
        SIGTTIN, SIGTTOU, SIGURG, SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGWINCH, SIGIO, SIGPWR,
        SIGPIPE,
    ];
    v.extend(crate::sys::rt_signals());
    v
}

/// Fork and confine one server instance. Returns once the child has exec'd (or failed).
fn spawn(plan: &mut Plan, original_mask: &SigSet) -> Result<Pid> {
    spawn_with(plan, original_mask, false, &mut || Ok(()))?.wait_exec()
}

/// A child that is taking its confinement steps: its exec is not waited for yet, so the parent
/// can do its own set-up meanwhile (the two run on different CPUs).
pub struct Started {
    pub pid: Pid,
    report: OwnedFd,
}

impl Started {
    /// Wait until the child has exec'd the server; on a failed step, reap it and say which.
    pub fn wait_exec(self) -> Result<Pid> {
        let child = self.pid;
        match crate::report::receive(self.report) {
            Ok(None) => Ok(child),
            Ok(Some((step, errno))) => {
                let _ = nix::sys::wait::waitpid(child, Some(WaitPidFlag::__WALL));
                Err(Error::Confine { step, errno })
            }
            Err(e) => {
                let _ = nix::sys::wait::waitpid(child, Some(WaitPidFlag::__WALL));
                Err(Error::os("reading the child's report", e))
            }
        }
    }

    /// For a tracer: the report's read end, to read once the child has exec'd or died.
    pub fn into_traced(self) -> (Pid, OwnedFd) {
        (self.pid, self.report)
    }

    /// The start byte could not be written (`e`): the child failed a step and is exiting. Its
    /// report names the step. The child closes the start pipe before it writes the report, so
    /// the report is read before the child is killed and reaped (killed first, the report could
    /// be lost). Closing `go` first means a child still waiting for the byte reads EOF and
    /// reports ParentDeath, for which `e` stands.
    fn failed_early(self, go: OwnedFd, e: Error) -> Error {
        drop(go);
        let Started { pid, report } = self;
        let step = crate::report::receive(report);
        // A traced child stops at its exit until the tracer lets it go: SIGKILL ends the stop.
        kill_and_reap(pid);
        match step {
            Ok(Some((step, errno))) if step != crate::report::Step::ParentDeath => {
                Error::Confine { step, errno }
            }
            _ => e,
        }
    }

    /// The parent's own set-up failed: the server must not start (killed and reaped).
    pub fn abandon(self) {
        kill_and_reap(self.pid);
    }
}

fn kill_and_reap(pid: Pid) {
    let _ = crate::sys::kill_raw(pid.as_raw(), nix::libc::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, Some(WaitPidFlag::__WALL));
}

/// Fork a child that confines itself and execs the server; returns without waiting for the exec.
/// `privileged` runs in the parent right after the fork, before it gives up its capabilities; an
/// error there stops the child.
///
/// The parent reduces its own capabilities right after the fork (the child already holds its
/// copy), in parallel with the child's steps, and then writes one byte to the `go` pipe: the
/// child reads it before its filter and exec, so the server never runs beside a supervisor that
/// still holds capabilities. The parent is done long before the child's steps are, so the read
/// does not wait in practice (two syscalls).
///
/// With `traced` (`stockade learn`) the parent seizes the child before it takes its first step,
/// so every process and thread the server makes is traced from its first syscall, and the child
/// waits on a gate until then. The exec itself may then stop for the tracer, so only the tracer
/// can read the report (`Started::into_traced`).
pub fn spawn_with(
    plan: &mut Plan,
    original_mask: &SigSet,
    traced: bool,
    privileged: &mut dyn FnMut() -> Result<()>,
) -> Result<Started> {
    let threads = crate::sys::thread_count().map_err(|e| Error::os("/proc/self/task", e))?;
    if threads != 1 {
        return Err(Error::Internal(format!(
            "{threads} threads before fork; confinement needs a single-threaded launcher"
        )));
    }
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::os("report pipe", e))?;
    // Above every passed fd: the server must never inherit the write end (it could forge a
    // report, and stockade would wait on it with every signal blocked).
    let min = first_internal_fd(plan);
    let r = crate::sys::fd_at_least(r, min).map_err(|e| Error::os("report pipe", e))?;
    let w = crate::sys::fd_at_least(w, min).map_err(|e| Error::os("report pipe", e))?;
    let (go_r, go_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::os("start pipe", e))?;
    let go_r = crate::sys::fd_at_least(go_r, min).map_err(|e| Error::os("start pipe", e))?;
    let go_w = crate::sys::fd_at_least(go_w, min).map_err(|e| Error::os("start pipe", e))?;
    let gate = if traced {
        let (gr, gw) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| Error::os("trace gate pipe", e))?;
        let gr = crate::sys::fd_at_least(gr, min).map_err(|e| Error::os("trace gate", e))?;
        let gw = crate::sys::fd_at_least(gw, min).map_err(|e| Error::os("trace gate", e))?;
        // The report is written after the filter is in place (a failed exec): that write is
        // stockade's own, neither to be recorded nor refused (bpf::with_report_write).
        use std::os::fd::AsRawFd;
        let fd = u32::try_from(w.as_raw_fd()).unwrap_or(0);
        plan.seccomp.program = crate::seccomp_policy::with_report_write(&plan.seccomp.program, fd)?;
        Some((gr, gw))
    } else {
        None
    };
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
            drop(go_w);
            if let Some((gr, gw)) = gate {
                drop(gw);
                // Wait until the parent has seized us; EOF without the byte means it failed.
                if !crate::sys::wait_byte(&gr) {
                    crate::sys::exit_now(71);
                }
            }
            crate::confine::enter(plan, w, go_r, parent, original_mask)
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(w);
            drop(go_r);
            let started = Started {
                pid: child,
                report: r,
            };
            if let Some((gr, gw)) = gate {
                drop(gr);
                use nix::sys::ptrace::Options;
                let opts = Options::PTRACE_O_TRACESYSGOOD
                    | Options::PTRACE_O_TRACESECCOMP
                    | Options::PTRACE_O_TRACECLONE
                    | Options::PTRACE_O_TRACEFORK
                    | Options::PTRACE_O_TRACEVFORK
                    | Options::PTRACE_O_TRACEEXEC
                    | Options::PTRACE_O_TRACEEXIT
                    | Options::PTRACE_O_EXITKILL;
                let seized = nix::sys::ptrace::seize(child, opts)
                    .and_then(|()| nix::unistd::write(&gw, &[1u8]).map(drop));
                if let Err(e) = seized {
                    started.abandon();
                    return Err(Error::os("ptrace seize of the server", e));
                }
            }
            let dropped =
                privileged().and_then(|()| drop_own_capabilities(&supervisor_keeps(plan)));
            if let Err(e) = dropped {
                started.abandon();
                return Err(e);
            }
            if let Err(e) = nix::unistd::write(&go_w, &[1u8]) {
                // EPIPE: the child failed a step before it read the byte; its report says which.
                return Err(started.failed_early(go_w, Error::os("start pipe", e)));
            }
            drop(go_w);
            let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&during), None);
            Ok(started)
        }
    }
}

/// The lowest fd number stockade may use for its own fds: above 2 and every `pass_fds` entry.
pub fn first_internal_fd(plan: &Plan) -> i32 {
    plan.supervise
        .pass_fds
        .iter()
        .copied()
        .max()
        .map_or(3, |m| m.saturating_add(1).max(3))
}

/// signal-hook's self-pipe: handlers only write a byte, the loop polls the read end.
pub struct Signals {
    delivery: SignalDelivery<UnixStream, SignalOnly>,
    /// SIGPIPE alone, with its siginfo (the sender), over the same pipe.
    pipe: SignalDelivery<UnixStream, WithRawSiginfo>,
}

impl Signals {
    /// Handlers for every forwarded signal and SIGCHLD. Call with all signals blocked; unblock
    /// afterwards.
    pub fn install(min_fd: i32) -> Result<Signals> {
        let (read, write) = UnixStream::pair().map_err(|e| Error::os("signal pipe", e))?;
        let above = |s: UnixStream| {
            crate::sys::fd_at_least(s.into(), min_fd)
                .map(UnixStream::from)
                .map_err(|e| Error::os("signal pipe", e))
        };
        let (read, write) = (above(read)?, above(write)?);
        read.set_nonblocking(true)
            .and_then(|_| write.set_nonblocking(true))
            .map_err(|e| Error::os("signal pipe", e))?;
        let pipe_ends = read
            .try_clone()
            .and_then(|r| Ok((r, write.try_clone()?)))
            .map_err(|e| Error::os("signal pipe", e))?;
        let mut sigs = forwarded();
        sigs.retain(|s| *s != nix::libc::SIGPIPE);
        sigs.push(nix::libc::SIGCHLD);
        let delivery = SignalDelivery::with_pipe(read, write, SignalOnly, sigs)
            .map_err(|e| Error::os("installing signal handlers", e))?;
        let pipe = SignalDelivery::with_pipe(
            pipe_ends.0,
            pipe_ends.1,
            WithRawSiginfo,
            [nix::libc::SIGPIPE],
        )
        .map_err(|e| Error::os("installing signal handlers", e))?;
        Ok(Signals { delivery, pipe })
    }

    pub fn fd(&self) -> i32 {
        self.delivery.get_read().as_raw_fd()
    }

    /// Wait up to `timeout` (None: forever) and return the signals that arrived.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Vec<i32> {
        self.wait_releasing(timeout, false)
    }

    /// `wait`, giving back start-up's pages first when `release`: right before the poll, with
    /// its arguments ready, so that while the loop sleeps only the poll's own code is back in.
    pub fn wait_releasing(&mut self, timeout: Option<Duration>, release: bool) -> Vec<i32> {
        let mut fds = [raw_pollfd(self.fd())];
        crate::sys::poll_releasing(&mut fds, poll_timeout(timeout).into(), release);
        self.pending()
    }

    /// The signals that arrived. Both deliveries drain the pipe before either is read, so a
    /// wake-up byte is never consumed for a signal that is then not reported.
    pub fn pending(&mut self) -> Vec<i32> {
        let others = self.delivery.pending();
        let pipe = self.pipe.pending();
        // A SIGPIPE "sent" by ourselves is the kernel's answer to our own write to a broken
        // pipe (the write returns EPIPE, which every writer here handles): not for the server.
        let sent = pipe
            .filter(|i| crate::sys::signal_sender(i) != nix::unistd::getpid().as_raw())
            .map(|i| i.si_signo);
        others.chain(sent).collect()
    }
}

/// A `pollfd` waiting for input on `fd`, for `sys::poll_releasing`.
pub fn raw_pollfd(fd: i32) -> nix::libc::pollfd {
    nix::libc::pollfd {
        fd,
        events: nix::libc::POLLIN,
        revents: 0,
    }
}

pub fn poll_timeout(timeout: Option<Duration>) -> PollTimeout {
    match timeout {
        None => PollTimeout::NONE,
        // Round up: waking a millisecond early would spin once more for nothing.
        Some(d) => PollTimeout::try_from(d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX),
    }
}

pub fn unblock_all() -> Result<()> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| Error::os("sigprocmask", e))
}

/// A stop in progress.
struct Stop {
    sig: i32,
    /// When the stop signal goes to the server; `None` once it went.
    forward_at: Option<Instant>,
    /// Held until the readiness probe passes (`defer_stop_until_ready`).
    defer: bool,
    kill_at: Instant,
    killed: bool,
}

impl Stop {
    /// Is the stop signal waiting for readiness?
    fn held(&self, ready: bool) -> bool {
        self.defer && !ready
    }
}

/// The readiness probe of one instance, while it has not passed yet.
struct Probe {
    get: HttpGet,
    interval: Duration,
    timeout_secs: u64,
    deadline: Instant,
    next_at: Instant,
    attempts: u32,
    last: String,
}

/// Supervision state for the current server instance.
struct Instance {
    pid: Pid,
    started: Instant,
    /// When the server was reaped: its run time ends here, not after the leftover cleanup.
    exited: Option<Instant>,
    status: Option<WaitStatus>,
    probe: Option<Probe>,
    ready: bool,
    /// The probe did not pass in time: the start failed.
    not_ready: Option<Error>,
}

pub struct Supervisor<'a> {
    plan: &'a mut Plan,
    original_mask: SigSet,
    signals: Signals,
    notifier: Notifier,
    pid1: bool,
    ready_sent: bool,
    stop: Option<Stop>,
    /// A stop signal arrived after the server exited (during the leftover cleanup): no restart.
    stop_after_exit: Option<i32>,
    /// When to give back the start-up pages (`sys::poll_releasing`), once.
    release_at: Option<Instant>,
    orphans_reaped: u64,
    /// The kernel's seccomp records, to name the syscall when the server dies of SIGSYS.
    kill_log: Option<crate::seccomp_policy::KillLog>,
}

/// Start the server and supervise it until it is gone. Returns stockade's exit code.
pub fn run(plan: &mut Plan, original_mask: SigSet) -> Result<u8> {
    let foreground = terminal_foreground();
    let code = run_supervised(plan, original_mask, foreground.is_some());
    hand_back_terminal(foreground);
    code
}

/// Our pid and process group, if the group holds the terminal's foreground (the server takes it
/// over).
fn terminal_foreground() -> Option<(Pid, Pid)> {
    let ours = nix::unistd::getpgrp();
    (nix::unistd::tcgetpgrp(std::io::stdin()).ok() == Some(ours))
        .then_some((nix::unistd::getpid(), ours))
}

/// Give the terminal's foreground back to our group once the server is gone: otherwise it stays
/// with the server's dead group and the next reader of the terminal (the shell) gets EIO. Only
/// the process that noted it: the inner half of a PID namespace returns through here too, but
/// cannot name the group (the outer half hands back after it).
pub(crate) fn hand_back_terminal(noted: Option<(Pid, Pid)>) {
    let Some((pid, group)) = noted else { return };
    if pid != nix::unistd::getpid() {
        return;
    }
    let stdin = std::io::stdin();
    if nix::unistd::tcgetpgrp(&stdin).ok() == Some(group) {
        return;
    }
    // From the background tcsetpgrp raises SIGTTOU, which would stop us: block it for the call.
    let ttou = SigSet::from(nix::sys::signal::Signal::SIGTTOU);
    let mut old = SigSet::empty();
    if nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut old)).is_ok() {
        if let Err(e) = nix::unistd::tcsetpgrp(&stdin, group) {
            warn!(%e, "could not hand the terminal back to stockade's process group");
        }
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
}

fn run_supervised(plan: &mut Plan, original_mask: SigSet, foreground: bool) -> Result<u8> {
    let mut notifier = Notifier::from_env();
    let mut outer_dropped = None;
    if plan.pid_namespace {
        match pidns::enter(plan, notifier, foreground)? {
            pidns::Entered::Outer(code) => return Ok(code),
            pidns::Entered::Inner(n, dropped) => {
                notifier = n;
                outer_dropped = Some(dropped);
            }
            pidns::Entered::Skipped(n) => notifier = n,
        }
    }
    let pid1 = nix::unistd::getpid().as_raw() == 1;
    if !pid1 {
        // Orphans below us are reparented to us, not to init, so we can reap and kill them.
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| Error::os("PR_SET_CHILD_SUBREAPER", e))?;
    }
    // While the child takes its steps: the kernel log, opened before the parent drops its
    // capabilities (reading it needs CAP_SYSLOG), and the signal handlers. Neither is then on
    // the launch's critical path. The log never on a number a later server is to inherit.
    let mut kill_log = None;
    let pass_fds = plan.supervise.pass_fds.clone();
    let started = spawn_with(plan, &original_mask, false, &mut || {
        kill_log = crate::seccomp_policy::KillLog::open().filter(|l| !pass_fds.contains(&l.fd()));
        // The server's start waits for the outer relay's capability drop too.
        outer_dropped.take().map_or(Ok(()), pidns::outer_dropped)
    })?;
    let signals = match Signals::install(first_internal_fd(plan)) {
        Ok(s) => s,
        Err(e) => {
            started.abandon();
            return Err(e);
        }
    };
    let first = started.wait_exec()?;
    info!(pid = first.as_raw(), argv = ?plan.display_argv, pid1, "server started");
    let mut sup = Supervisor {
        plan,
        original_mask,
        signals,
        notifier,
        pid1,
        ready_sent: false,
        stop: None,
        stop_after_exit: None,
        orphans_reaped: 0,
        kill_log,
        release_at: Some(Instant::now() + RELEASE_AFTER),
    };
    // Our handlers exist now: let pending and future signals in.
    unblock_all()?;
    let code = sup.supervise(first);
    // stockade ends right after this: unregistering each handler (signal-hook copies its whole
    // registry per signal) cost 0.2 ms of every launch, for a process about to exit.
    std::mem::forget(sup.signals);
    code
}

impl Supervisor<'_> {
    fn new_instance(&self, pid: Pid) -> Instance {
        let probe = self.plan.supervise.ready.as_ref().map(|r| {
            let now = Instant::now();
            Probe {
                get: r.http_get.get_ref().clone(),
                interval: Duration::from_millis(r.interval_ms.max(10)),
                timeout_secs: r.timeout_secs,
                deadline: now + Duration::from_secs(r.timeout_secs),
                next_at: now,
                attempts: 0,
                last: "not probed yet".into(),
            }
        });
        Instance {
            pid,
            started: Instant::now(),
            exited: None,
            status: None,
            ready: probe.is_none(),
            probe,
            not_ready: None,
        }
    }

    fn supervise(&mut self, first: Pid) -> Result<u8> {
        let mut inst = self.new_instance(first);
        let mut restarts = 0u32;
        loop {
            let status = self.until_exit(&mut inst);
            if let WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGSYS, _) = status {
                self.explain_sigsys(inst.pid);
            }
            self.cleanup_leftovers(inst.pid);
            let code = crate::error::status_code(status).unwrap_or(crate::error::code::CONFINE);
            info!(
                status = ?status,
                code,
                orphans_reaped = self.orphans_reaped,
                "server exited"
            );
            if let Some(e) = inst.not_ready.take() {
                return Err(e);
            }
            let failed = code != 0;
            let r = self.plan.supervise.restart.clone();
            let restartable = failed
                && r.mode == RestartMode::OnFailure
                && self.stop.is_none()
                && self.stop_after_exit.is_none();
            if !restartable {
                if let Some(sig) = self.stop_after_exit.filter(|_| failed) {
                    info!(
                        sig,
                        "stop signal during the leftover cleanup: not restarting"
                    );
                }
                return Ok(code);
            }
            // The limit is on consecutive failures: an instance that passed its probe, or ran
            // longer than the longest backoff, was healthy, so a rare crash does not use it up.
            // Its run ends when it was reaped: a slow leftover cleanup is not a healthy run.
            let ran = inst
                .exited
                .unwrap_or_else(Instant::now)
                .saturating_duration_since(inst.started);
            if (inst.probe.is_some() && inst.ready)
                || ran >= Duration::from_millis(r.backoff_max_ms)
            {
                if restarts > 0 {
                    info!(
                        ran_ms = ran.as_millis() as u64,
                        "server had been healthy: restart count reset"
                    );
                }
                restarts = 0;
            }
            if restarts >= r.max_restarts {
                warn!(
                    restarts,
                    code, "server keeps failing: giving up after the maximum restarts"
                );
                return Ok(code);
            }
            let delay = r
                .backoff_initial_ms
                .saturating_mul(1u64 << restarts.min(30))
                .min(r.backoff_max_ms);
            restarts += 1;
            warn!(
                code,
                restart = restarts,
                max = r.max_restarts,
                delay_ms = delay,
                "server failed: restarting"
            );
            self.notifier.send(&format!(
                "STATUS=server failed ({code}): restart {restarts} in {delay} ms"
            ));
            if !self.sleep_interruptible(Duration::from_millis(delay)) {
                return Ok(code);
            }
            let pid = spawn(self.plan, &self.original_mask)?;
            info!(pid = pid.as_raw(), restart = restarts, "server restarted");
            inst = self.new_instance(pid);
        }
    }

    /// One line naming the syscall seccomp killed the server for, and what to change.
    fn explain_sigsys(&mut self, server: Pid) {
        // As PID 1 of our own namespace we see a local pid; the record holds the global one.
        let pid = (!self.pid1).then_some(server.as_raw());
        let have_log = self.kill_log.is_some();
        let killed = self.kill_log.as_mut().and_then(|l| {
            let wait = Duration::from_millis(if pid.is_some() { 500 } else { 300 });
            l.find(self.plan.identity.uid, pid, &self.plan.exe, wait)
        });
        eprintln!(
            "stockade: {}",
            crate::seccomp_policy::explain_kill(&self.plan.seccomp, killed, have_log)
        );
    }

    /// Sleep, but return false as soon as a stop signal arrives (there is no server to forward
    /// anything to).
    fn sleep_interruptible(&mut self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            let now = Instant::now();
            if now >= end {
                return true;
            }
            for sig in self.signals.wait(Some(end - now)) {
                if STOP_SIGNALS.contains(&sig) {
                    info!(sig, "stop signal while waiting to restart: not restarting");
                    return false;
                }
                debug!(sig, "no server to forward to");
            }
            let _ = self.reap(None);
        }
    }

    fn target(&self, pid: Pid) -> i32 {
        match self.plan.supervise.signal_target {
            SignalTarget::Group => -pid.as_raw(),
            SignalTarget::Server => pid.as_raw(),
        }
    }

    fn forward(&self, pid: Pid, sig: i32) {
        let target = self.target(pid);
        let r = match crate::sys::kill_raw(target, sig) {
            // The server left its own group: it alone, then.
            Err(Errno::ESRCH) if target < 0 => crate::sys::kill_raw(pid.as_raw(), sig),
            r => r,
        };
        match r {
            Ok(()) => debug!(sig, target, "forwarded"),
            Err(Errno::ESRCH) => debug!(sig, "server already gone"),
            Err(e) => warn!(sig, error = %e, "forwarding failed"),
        }
    }

    fn until_exit(&mut self, inst: &mut Instance) -> WaitStatus {
        if inst.ready {
            self.mark_ready();
        }
        loop {
            // Reap on every wake-up: SIGCHLD coalesces, and waitpid is cheap.
            if let Some(s) = self.reap(Some(inst.pid)) {
                inst.status = Some(s);
                inst.exited = Some(Instant::now());
            }
            if let Some(s) = inst.status {
                return s;
            }
            self.tick_probe(inst);
            self.tick_stop(inst);
            let release = self.release_at.is_some_and(|t| t <= Instant::now());
            if release {
                self.release_at = None;
            }
            let timeout = self
                .next_wakeup(inst)
                .map(|t| t.saturating_duration_since(Instant::now()));
            for sig in self.signals.wait_releasing(timeout, release) {
                if sig != nix::libc::SIGCHLD {
                    self.on_signal(inst, sig);
                }
            }
        }
    }

    fn next_wakeup(&self, inst: &Instance) -> Option<Instant> {
        let probe = inst
            .probe
            .as_ref()
            .filter(|_| self.probing(inst))
            .map(|p| p.next_at);
        let (forward, kill) = match &self.stop {
            Some(st) => (
                st.forward_at.filter(|_| !st.held(inst.ready)),
                Some(st.kill_at).filter(|_| !st.killed),
            ),
            None => (None, None),
        };
        [probe, forward, kill, self.release_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Probe while not ready, unless a stop is under way that does not wait for readiness.
    fn probing(&self, inst: &Instance) -> bool {
        !inst.ready
            && inst.not_ready.is_none()
            && self
                .stop
                .as_ref()
                .is_none_or(|st| st.defer && st.forward_at.is_some())
    }

    fn mark_ready(&mut self) {
        if !self.ready_sent {
            self.ready_sent = true;
            self.notifier.send("READY=1\nSTATUS=server ready");
        }
    }

    fn tick_probe(&mut self, inst: &mut Instance) {
        if !self.probing(inst) {
            return;
        }
        let Some(p) = inst.probe.as_mut() else {
            return;
        };
        let now = Instant::now();
        if now < p.next_at {
            return;
        }
        p.attempts += 1;
        // Bounded: signals wait in the self-pipe meanwhile, at most this long.
        let budget = p
            .interval
            .clamp(Duration::from_millis(200), Duration::from_secs(1));
        let result = p.get.probe(budget);
        let attempt = p.attempts;
        match result {
            Ok(code) if ready::passes(code) => {
                info!(url = %p.get, status = code, attempt, "readiness probe passed: server ready");
                inst.probe = None;
                inst.ready = true;
                self.mark_ready();
                return;
            }
            Ok(code) => {
                p.last = format!("HTTP {code}");
            }
            Err(e) => p.last = e,
        }
        info!(url = %p.get, result = %p.last, attempt, "readiness probe: not ready");
        p.next_at = Instant::now() + p.interval;
        if Instant::now() >= p.deadline {
            let e = Error::NotReady {
                url: p.get.url().to_string(),
                secs: p.timeout_secs,
                last: p.last.clone(),
            };
            error!("{e}");
            inst.not_ready = Some(e);
            // A failed start: stop now, without a pre-stop delay and without waiting for a
            // readiness that did not come.
            if self.stop.is_none() {
                self.begin_stop(inst, nix::libc::SIGTERM, false);
            } else if let Some(st) = self.stop.as_mut() {
                st.defer = false;
                st.forward_at = st.forward_at.map(|_| Instant::now());
            }
        }
    }

    fn tick_stop(&mut self, inst: &Instance) {
        let now = Instant::now();
        let Some(st) = self.stop.as_mut() else {
            return;
        };
        let mut forward = None;
        if st.forward_at.is_some_and(|at| now >= at) && !st.held(inst.ready) {
            st.forward_at = None;
            forward = Some(st.sig);
        }
        let kill = !st.killed && now >= st.kill_at;
        st.killed |= kill;
        let held = st.forward_at.is_some();
        if let Some(sig) = forward {
            self.forward(inst.pid, sig);
        }
        if kill {
            warn!(
                grace_secs = self.plan.supervise.stop_grace_secs,
                stop_signal_held = held,
                "grace period over: SIGKILL to the server's process group"
            );
            self.kill_now(inst.pid);
        }
    }

    fn kill_now(&self, pid: Pid) {
        let _ = crate::sys::kill_raw(-pid.as_raw(), nix::libc::SIGKILL);
        let _ = crate::sys::kill_raw(pid.as_raw(), nix::libc::SIGKILL);
    }

    fn begin_stop(&mut self, inst: &Instance, sig: i32, delay: bool) {
        let now = Instant::now();
        let s = &self.plan.supervise;
        let pre = if delay {
            Duration::from_secs(s.pre_stop_delay_secs)
        } else {
            Duration::ZERO
        };
        let defer = s.defer_stop_until_ready && inst.probe.is_some() && !inst.ready;
        info!(
            sig,
            pre_stop_delay_secs = pre.as_secs(),
            grace_secs = s.stop_grace_secs,
            held_until_ready = defer,
            "stopping"
        );
        self.stop = Some(Stop {
            sig,
            forward_at: Some(now + pre),
            defer,
            kill_at: now + pre + Duration::from_secs(s.stop_grace_secs),
            killed: false,
        });
        self.notifier.send("STOPPING=1");
        self.tick_stop(inst);
    }

    fn on_signal(&mut self, inst: &Instance, sig: i32) {
        if STOP_SIGNALS.contains(&sig) {
            match &self.stop {
                None => self.begin_stop(inst, sig, true),
                // Pre-stop delay or held until ready: the stop is already scheduled.
                Some(st) if st.forward_at.is_some() => debug!(sig, "stop already scheduled"),
                // A second stop signal while draining goes through (e.g. a second Ctrl-C).
                Some(_) => self.forward(inst.pid, sig),
            }
            return;
        }
        self.forward(inst.pid, sig);
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
                        self.orphans_reaped += 1;
                        debug!(status = ?s, "reaped");
                    }
                }
                Err(Errno::EINTR) => {}
                Err(_) => break,
            }
        }
        found
    }

    /// Our remaining children (orphans reparented to us, or the server's leftovers). Not used
    /// as PID 1: in a PID namespace without its own /proc these would be host pids.
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

    /// Is anything left in the server's process group? EPERM means yes (not ours to signal).
    fn group_alive(server: Pid) -> bool {
        !matches!(crate::sys::kill_raw(-server.as_raw(), 0), Err(Errno::ESRCH))
    }

    /// After the server exits: TERM to whatever is left in its group or below us, then KILL
    /// after `leftover_grace_ms`, reaping until nothing is left (bounded).
    fn cleanup_leftovers(&mut self, server: Pid) {
        let _ = self.reap(None);
        if !self.has_children() && !Self::group_alive(server) {
            return;
        }
        info!("terminating leftover processes");
        self.signal_leftovers(server, nix::libc::SIGTERM);
        let term_end =
            Instant::now() + Duration::from_millis(self.plan.supervise.leftover_grace_ms);
        while Instant::now() < term_end && (self.has_children() || Self::group_alive(server)) {
            let sigs = self.signals.wait(Some(Duration::from_millis(20)));
            self.note_stop_after_exit(&sigs);
            let _ = self.reap(None);
        }
        let kill_end = Instant::now() + Duration::from_secs(5);
        loop {
            let _ = self.reap(None);
            if !self.has_children() && !Self::group_alive(server) {
                return;
            }
            if Instant::now() >= kill_end {
                warn!("leftover processes survived SIGKILL");
                return;
            }
            self.signal_leftovers(server, nix::libc::SIGKILL);
            let sigs = self.signals.wait(Some(Duration::from_millis(10)));
            self.note_stop_after_exit(&sigs);
        }
    }

    /// Signals read while the server is gone: a stop signal must not be lost (it cancels a
    /// restart); the others have no server to go to.
    fn note_stop_after_exit(&mut self, sigs: &[i32]) {
        for &sig in sigs {
            if STOP_SIGNALS.contains(&sig) {
                self.stop_after_exit.get_or_insert(sig);
            } else if sig != nix::libc::SIGCHLD {
                debug!(sig, "no server to forward to");
            }
        }
    }
}

/// Capabilities the confinement child needs from its parent, for a restart.
fn child_needs(plan: &Plan) -> Vec<Capability> {
    let mut v = plan.keep_caps.clone();
    if plan.identity.mode == Mode::Root {
        v.extend([
            Capability::CAP_SETUID,
            Capability::CAP_SETGID,
            Capability::CAP_SETPCAP,
        ]);
    }
    if plan.mounts.is_some() {
        v.push(Capability::CAP_SYS_ADMIN);
    }
    // Only raising a hard limit needs CAP_SYS_RESOURCE.
    let raises = plan.rlimits.iter().any(|r| {
        let want = r.value.unwrap_or(nix::libc::RLIM_INFINITY);
        nix::sys::resource::getrlimit(r.resource).map_or(true, |(_, hard)| want > hard)
    });
    if raises {
        v.push(Capability::CAP_SYS_RESOURCE);
    }
    v
}

/// What the supervisor keeps once the server runs: CAP_KILL (the server runs as another uid),
/// plus what the child needs if a restart may fork another one.
pub fn supervisor_keeps(plan: &Plan) -> CapsHashSet {
    let mut keep: CapsHashSet = [Capability::CAP_KILL].into_iter().collect();
    if plan.learn.is_some() {
        // The learner reads the traced server's /proc/<pid>/fd links and socket fds, and a
        // replay switches kernel auditing back off when it is done.
        keep.insert(Capability::CAP_SYS_PTRACE);
        if plan.learn == Some(crate::plan::LearnMode::Replay) {
            keep.insert(Capability::CAP_AUDIT_CONTROL);
        }
    }
    if plan.supervise.restart.mode == RestartMode::OnFailure {
        keep.extend(child_needs(plan));
    }
    keep
}

/// Reduce our own capabilities to `keep` (bounding set included when we may) and set
/// no_new_privs; the server can then neither signal nor ptrace anything it could exploit.
pub fn drop_own_capabilities(keep: &CapsHashSet) -> Result<()> {
    let cap_err = |what: &str| {
        let what = what.to_string();
        move |e: caps::errors::CapsError| Error::Privilege(format!("supervisor {what}: {e}"))
    };
    let permitted = caps::read(None, CapSet::Permitted).map_err(cap_err("read capabilities"))?;
    let keep: CapsHashSet = keep.intersection(&permitted).copied().collect();
    if crate::capabilities::has_setpcap() {
        // By number up to cap_last_cap, including capabilities the caps crate does not know.
        let keep: Vec<Capability> = keep.iter().copied().collect();
        crate::capabilities::drop_bounding(&keep)
            .map_err(|e| Error::os("supervisor bounding set", e))?;
    }
    caps::clear(None, CapSet::Ambient).map_err(cap_err("ambient set"))?;
    caps::clear(None, CapSet::Inheritable).map_err(cap_err("inheritable set"))?;
    caps::set(None, CapSet::Effective, &keep).map_err(cap_err("effective set"))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(cap_err("permitted set"))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| Error::os("supervisor no_new_privs", e))?;
    let effective = caps::read(None, CapSet::Effective).map_err(cap_err("read capabilities"))?;
    if effective != keep {
        return Err(Error::Privilege(format!(
            "supervisor capabilities are {effective:?} after the drop, expected {keep:?}"
        )));
    }
    debug!(keep = ?keep, "supervisor capabilities reduced");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Step;
    use nix::errno::Errno;

    /// A child that is gone before the start byte (EPIPE on the start pipe), as `spawn_with`
    /// sees it: its report names the step; without one, the pipe's error stands.
    fn failed_early_after(report: Option<(Step, Errno)>) -> Error {
        let (r, w) = nix::unistd::pipe().unwrap();
        match crate::sys::fork().unwrap() {
            nix::unistd::ForkResult::Child => {
                if let Some((step, errno)) = report {
                    crate::report::send(&w, step, errno);
                }
                crate::sys::exit_now(71)
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(w);
                let started = Started {
                    pid: child,
                    report: r,
                };
                let (_go_r, go_w) = nix::unistd::pipe().unwrap();
                let e = started.failed_early(go_w, Error::os("start pipe", Errno::EPIPE));
                // Reaped: the pid is no longer ours to wait for.
                let reaped = nix::sys::wait::waitpid(child, Some(WaitPidFlag::WNOHANG));
                assert_eq!(reaped, Err(Errno::ECHILD));
                e
            }
        }
    }

    #[test]
    fn a_child_gone_before_the_start_byte_is_named_by_its_report() {
        let e = failed_early_after(Some((Step::Chdir, Errno::EACCES)));
        assert!(
            matches!(
                e,
                Error::Confine {
                    step: Step::Chdir,
                    errno: Errno::EACCES
                }
            ),
            "{e}"
        );
        let e = failed_early_after(None);
        assert!(e.to_string().contains("start pipe"), "{e}");
    }
}
