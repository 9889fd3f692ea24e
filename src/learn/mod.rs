//! `stockade learn`: run a server once through the normal pipeline (identity, capabilities,
//! environment, mounts, supervisor) but record instead of deny, write a profile in stockade's
//! own format, and replay it enforced to list what it still denies.
//!
//! Mechanism: ptrace with a seccomp filter that sends every syscall to the tracer
//! (SECCOMP_RET_TRACE). It sees calls before the kernel acts (so the base's refusals are seen
//! and kept, not hidden), follows threads, forks and execs from the first syscall, reads the
//! results (only what succeeded is granted), and needs no privilege beyond tracing one's own
//! child: a rootless learner records the same things. Landlock is not applied while learning
//! (it has no permissive mode); the mounts other than the fresh root are.
//!
//! Module map: `record` (what was seen), `trace` (the ptrace loop), `emit` (record → profile).

pub mod audit;
pub mod emit;
pub mod record;
pub mod trace;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use nix::sys::signal::{SigSet, SigmaskHow};
use nix::unistd::Pid;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::plan::LearnMode;
use crate::profile::{PidNamespace, RestartMode, SignalTarget};

const LEARN_AFTER_HELP: &str = "\
Exit codes: 0 written (and, with --verify, replayed without a denial), whatever the server's own
status (it is in the profile's header); 79 the replay denied something, seccomp killed the
server, or it ended otherwise than while learning (listed); 80 the client command failed (the
profile is written); otherwise stockade's own codes (stockade --help).

The learning run is not confined by Landlock or a fresh root: learn with trusted models and
inputs. See docs/LEARN.md.";

/// Record what a server needs and write a profile for it (`stockade learn`).
#[derive(Debug, Parser)]
#[command(name = "stockade learn", version, after_help = LEARN_AFTER_HELP)]
#[command(
    override_usage = "stockade learn --profile <BASE> --output <OUT.toml> [--client <CMD>] [--verify] -- <SERVER> [ARGS]...\n       stockade learn --replay <PROFILE> [--client <CMD>] -- <SERVER> [ARGS]..."
)]
pub struct LearnCli {
    /// The base profile (built-in name or path): its identity, environment, mounts and
    /// refusals are kept; what it does not mention is learned.
    #[arg(
        short,
        long,
        value_name = "NAME|PATH",
        required_unless_present = "replay"
    )]
    pub profile: Option<String>,

    /// Where to write the learned profile.
    #[arg(
        short,
        long,
        value_name = "OUT.toml",
        required_unless_present = "replay"
    )]
    pub output: Option<PathBuf>,

    /// A command (run with `sh -c`, unconfined, as the caller) that exercises the server once
    /// it is ready; when it exits the server is stopped and the profile written. Without it,
    /// stop the server (or stockade) with a signal when done.
    #[arg(long, value_name = "CMD")]
    pub client: Option<String>,

    /// After writing, replay the learned profile enforced (with the same client) and report
    /// every denial; exit 79 if there is one.
    #[arg(long, conflicts_with = "replay")]
    pub verify: bool,

    /// Replay this profile enforced and report every denial, without learning.
    #[arg(long, value_name = "PROFILE", conflicts_with_all = ["profile", "output"])]
    pub replay: Option<String>,

    /// Also add what the base does not mention (a syscall only its default refuses, a path
    /// outside its rules, a port it does not list), each reported. Without it the base is the
    /// ceiling: learning only narrows it. The base's explicit refusals are never widened.
    #[arg(long, conflicts_with = "replay")]
    pub widen: bool,

    /// Stop the server after this many seconds (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub max_secs: u64,

    /// The server command line, after `--`.
    #[arg(last = true, value_name = "SERVER")]
    pub command: Vec<OsString>,
}

/// Exit code: the replay saw denials (or its client failed where the learning run's did not).
pub const DENIED: u8 = 79;
/// Exit code: the client command failed; the profile was written but may miss what the client
/// did not reach.
pub const CLIENT_FAILED: u8 = 80;

pub fn run(cli: &LearnCli, original_mask: SigSet) -> Result<u8> {
    if !cfg!(target_arch = "x86_64") {
        return Err(Error::Usage(
            "stockade learn is implemented for x86_64 only".into(),
        ));
    }
    if let Some(replay) = &cli.replay {
        let outcome = run_once(replay, cli, original_mask, LearnMode::Replay, None)?;
        return Ok(report_denials(&outcome, replay, None));
    }
    let (Some(base), Some(output)) = (&cli.profile, &cli.output) else {
        return Err(Error::Usage("--profile and --output are required".into()));
    };
    let dir = output
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if !dir.is_dir() {
        return Err(Error::Missing {
            what: "--output's directory".into(),
            path: dir.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    if cli.verify {
        // The recording run drops this process's capabilities once the server runs; the replay
        // needs them again, so the recording happens in a child of ours, which sends back what
        // it saw used (to tell the learned profile's gaps from the base's refusals).
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::os("pipe", e))?;
        let (code, learned) = match crate::sys::fork().map_err(|e| Error::os("fork", e))? {
            nix::unistd::ForkResult::Child => {
                drop(r);
                let code = match record(cli, base, output, original_mask) {
                    Ok((code, used, status)) => {
                        use std::io::Write;
                        use std::os::unix::ffi::OsStrExt;
                        // NUL-separated: a path may hold any other byte.
                        let mut buf = format!("S{status}\0").into_bytes();
                        for (p, need) in used {
                            buf.push(b'P');
                            buf.push(b'0' + need as u8);
                            buf.extend_from_slice(p.as_os_str().as_bytes());
                            buf.push(0);
                        }
                        let _ = std::fs::File::from(w).write_all(&buf);
                        code
                    }
                    Err(e) => {
                        eprintln!("stockade: {e}");
                        e.exit_code()
                    }
                };
                crate::sys::exit_now(i32::from(code))
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(w);
                let mut text = Vec::new();
                let _ = std::io::Read::read_to_end(&mut std::fs::File::from(r), &mut text);
                let code = match nix::sys::wait::waitpid(child, None) {
                    Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => c,
                    _ => i32::from(crate::error::code::SOFTWARE),
                };
                (code, parse_used(&text))
            }
        };
        if code != 0 {
            return Ok(u8::try_from(code).unwrap_or(crate::error::code::SOFTWARE));
        }
        let spec = output.display().to_string();
        let (learned, status) = learned;
        let replay = run_once(&spec, cli, original_mask, LearnMode::Replay, Some(learned))?;
        return Ok(report_denials(&replay, &spec, status.as_deref()));
    }
    record(cli, base, output, original_mask).map(|(code, ..)| code)
}

/// The recording child's report: its server's status, and what it saw used.
fn parse_used(
    data: &[u8],
) -> (
    std::collections::BTreeMap<PathBuf, record::Need>,
    Option<String>,
) {
    use std::os::unix::ffi::OsStrExt;
    let mut used = std::collections::BTreeMap::new();
    let mut status = None;
    for rec in data.split(|b| *b == 0) {
        match rec {
            [b'S', rest @ ..] => status = Some(String::from_utf8_lossy(rest).into_owned()),
            [b'P', n, path @ ..] => {
                let need = match n {
                    b'0' => record::Need::Seen,
                    b'1' => record::Need::Read,
                    b'2' => record::Need::Exec,
                    _ => record::Need::Write,
                };
                used.insert(PathBuf::from(std::ffi::OsStr::from_bytes(path)), need);
            }
            _ => {}
        }
    }
    (used, status)
}

/// A recording's exit code, what it saw used (for the replay's verdict), its server's status.
type Recorded = (u8, Vec<(PathBuf, record::Need)>, String);

/// The learning run; returns the exit code and what it saw used.
fn record(
    cli: &LearnCli,
    base: &str,
    output: &std::path::Path,
    original_mask: SigSet,
) -> Result<Recorded> {
    let outcome = run_once(base, cli, original_mask, LearnMode::Record, None)?;
    let rec = &outcome.tracer.rec;
    for (p, u) in &rec.paths {
        tracing::debug!(path = %p.display(), ?u, "recorded");
    }
    let base_loaded = crate::profile::load(base)?;
    let meta = emit::Meta {
        base: base_loaded.origin.clone(),
        command: outcome.display_argv.clone(),
        kernel: crate::sys::kernel_release(),
        landlock_abi: crate::sys::landlock_abi(),
        libc: crate::sys::libc_version(),
        seconds: outcome.seconds,
        server_status: outcome.status.clone(),
        widen: cli.widen,
    };
    let emitted = emit::profile(rec, &base_loaded, &outcome.plan, &meta)?;
    write_atomically(output, &emitted.text)?;
    // It must also start like any profile: every path it names absolute and there (a plan
    // cannot be built here: this process has given up the privileges a start needs).
    let loaded = crate::profile::load(&output.display().to_string())?;
    let l = &loaded.profile.landlock;
    for e in l
        .read_only
        .iter()
        .chain(&l.read_exec)
        .chain(&l.read_write)
        .chain(&l.make_dirs)
        .chain(&l.connect_unix)
    {
        let v = e.get_ref();
        let p = std::path::Path::new(v.path());
        if !p.is_absolute() || (!v.optional() && std::fs::symlink_metadata(p).is_err()) {
            return Err(Error::Internal(format!(
                "the learned profile {} names {}, which is not an absolute path that exists",
                output.display(),
                p.display()
            )));
        }
    }
    let allowed = rec.native_syscalls().count();
    eprintln!(
        "stockade learn: wrote {} ({} syscalls seen, {} paths, {} stops); server {}",
        output.display(),
        allowed,
        rec.paths.len(),
        rec.stops,
        outcome.status
    );
    for l in &emitted.report {
        eprintln!("stockade learn: {l}");
    }
    if let Some(c) = outcome.client_status.filter(|c| *c != 0) {
        warn!(
            code = c,
            "the client command failed: the profile may miss what it did not reach"
        );
    }
    // What the profile withholds on purpose (or the base refuses) is no gap of it.
    let used = rec
        .paths
        .iter()
        .filter(|(p, _)| !emitted.withheld.iter().any(|w| p.starts_with(w)))
        .map(|(p, u)| (p.clone(), u.need))
        .chain(
            emitted
                .granted_ports
                .iter()
                .map(|(bind, port)| (trace::port_key(*bind, *port), record::Need::Write)),
        )
        .collect();
    let code = match outcome.client_status {
        Some(c) if c != 0 => CLIENT_FAILED,
        _ => 0,
    };
    Ok((code, used, outcome.status.clone()))
}

/// The replay's verdict: every denial listed; 79 if the profile has a gap, the server was killed
/// by seccomp, ended otherwise than while learning, or the client failed.
fn report_denials(o: &Outcome, spec: &str, learned_status: Option<&str>) -> u8 {
    let mut failed = false;
    if o.status == "killed by SIGSYS" {
        eprintln!(
            "stockade learn: replay of {spec}: seccomp killed the server ({})",
            if o.kills.is_empty() {
                "the kernel's record was not readable".to_string()
            } else {
                o.kills.join(", ")
            }
        );
        failed = true;
    }
    if let Some(l) = learned_status.filter(|l| *l != o.status) {
        eprintln!(
            "stockade learn: replay of {spec}: the server {} (while learning it {l})",
            o.status
        );
        failed = true;
    }
    if o.audit_read {
        for (line, n) in &o.audit {
            eprintln!("stockade learn: replay of {spec}: kernel audit: {line} ×{n}");
        }
    } else {
        eprintln!(
            "stockade learn: replay of {spec}: the kernel's audit records are not readable \
             (not root, or no /dev/kmsg): denials below are the errnos seen"
        );
    }
    for (d, n) in &o.expected {
        eprintln!(
            "stockade learn: replay of {spec}: refused as while learning: {} ({}) ×{n}",
            d.what,
            nix::errno::Errno::from_raw(d.errno).desc()
        );
    }
    if let Some(c) = o.client_status.filter(|c| *c != 0) {
        eprintln!("stockade learn: replay of {spec}: the client failed (exit {c})");
        failed = true;
    }
    if failed && o.denials.is_empty() {
        return DENIED;
    }
    if o.denials.is_empty() {
        eprintln!(
            "stockade learn: replay of {spec}: no denial; server {}",
            o.status
        );
        return 0;
    }
    for (d, n) in &o.denials {
        eprintln!(
            "stockade learn: replay of {spec}: denied {} ({}) ×{n}",
            d.what,
            nix::errno::Errno::from_raw(d.errno).desc()
        );
    }
    DENIED
}

struct Outcome {
    tracer: trace::Tracer,
    denials: std::collections::BTreeMap<trace::Denial, u64>,
    expected: std::collections::BTreeMap<trace::Denial, u64>,
    /// The kernel's audit records of the replay (as root), or nothing.
    audit: std::collections::BTreeMap<String, u64>,
    /// The kernel's seccomp kill records of the replay: "syscall (arch)".
    kills: Vec<String>,
    audit_read: bool,
    plan: crate::plan::Plan,
    display_argv: Vec<String>,
    seconds: f64,
    status: String,
    client_status: Option<i32>,
}

fn run_once(
    spec: &str,
    cli: &LearnCli,
    original_mask: SigSet,
    mode: LearnMode,
    learned: Option<std::collections::BTreeMap<PathBuf, record::Need>>,
) -> Result<Outcome> {
    let mut loaded = crate::profile::load(spec)?;
    // The tracer must be the server's parent: no PID namespace relay, one run, no restart.
    loaded.profile.supervise.pid_namespace = PidNamespace::Never;
    loaded.profile.supervise.restart.mode = RestartMode::Never;
    if mode == LearnMode::Record {
        // A fresh root shows only the listed paths: what is not listed yet could not be seen.
        loaded.profile.mounts.fresh_root = false;
    }
    let mut plan = crate::plan::build(&loaded, &cli.command, false)?;
    plan.learn = Some(mode);
    // Record: the base's own decisions. Replay after learning: the base's too, to tell its
    // refusals from the learned profile's gaps.
    let marker = match (&learned, &cli.profile) {
        (Some(_), Some(base)) => {
            let b = crate::profile::load(base)?;
            crate::seccomp_policy::compile_for(
                &b,
                &b.profile.seccomp,
                &crate::seccomp_policy::FilterMode::Marker,
            )?
        }
        _ => crate::seccomp_policy::compile_for(
            &loaded,
            &loaded.profile.seccomp,
            &crate::seccomp_policy::FilterMode::Marker,
        )?,
    };
    if mode == LearnMode::Record {
        plan.seccomp.program = crate::seccomp_policy::learn_program();
    }
    if mode == LearnMode::Replay {
        let watch = watched();
        let verify = crate::seccomp_policy::compile_for(
            &loaded,
            &loaded.profile.seccomp,
            &crate::seccomp_policy::FilterMode::Verify { watch },
        )?;
        plan.seccomp.program = verify.program;
    }
    for w in &plan.warnings {
        warn!("{w}");
    }
    let conditional = loaded
        .profile
        .seccomp
        .allow_if
        .iter()
        .map(|r| r.syscall.get_ref())
        .chain(
            loaded
                .profile
                .seccomp
                .rules
                .iter()
                .map(|r| r.syscall.get_ref()),
        )
        .filter_map(|n| crate::seccomp_policy::syscall_number(n))
        .map(|n| n as u64)
        .collect();
    let default_errno =
        crate::seccomp_policy::default_errno(&plan.seccomp).map_or(nix::libc::ENOSYS, |e| e as i32);

    // As root the kernel's audit records name each denial of the replay (CAP_SYSLOG, before
    // the supervisor drops it).
    let mut kmsg = (mode == LearnMode::Replay)
        .then(crate::seccomp_policy::KillLog::open)
        .flatten();
    let audit_on = kmsg.as_ref().and_then(|_| audit::AuditOn::enable());
    if kmsg.is_some() && audit_on.is_none() {
        warn!("could not switch kernel auditing on: the replay reports the errnos it sees");
    }
    let started = Instant::now();
    let (server, report) =
        crate::supervise::spawn_with(&mut plan, &original_mask, true, &mut || Ok(()))?
            .into_traced();
    info!(
        pid = server.as_raw(),
        ?mode,
        "server started under the learner"
    );
    let mut tracer = trace::Tracer::new(mode, marker.program, conditional, default_errno, server);
    tracer.learned = learned;
    let gone = Arc::new(AtomicBool::new(false));
    let driver = Driver {
        server,
        group: plan.supervise.signal_target == SignalTarget::Group,
        probe: plan.supervise.ready.as_ref().map(|r| {
            (
                r.http_get.get_ref().clone(),
                Duration::from_millis(r.interval_ms.max(10)),
                Duration::from_secs(r.timeout_secs),
            )
        }),
        client: cli.client.clone(),
        grace: Duration::from_secs(plan.supervise.stop_grace_secs),
        max: (cli.max_secs > 0).then(|| Duration::from_secs(cli.max_secs)),
        gone: gone.clone(),
        server_gone: tracer.server_gone.clone(),
        live: tracer.live.clone(),
    };
    let handle = std::thread::Builder::new()
        .name("learn-driver".into())
        .spawn(move || driver.run())
        .map_err(|e| Error::os("learn driver thread", e))?;
    tracer.run();
    gone.store(true, Ordering::SeqCst);
    // Recording: the exec was not waited for. A child that never exec'd left its report.
    if !tracer.server_execd {
        let _ = handle.join();
        return Err(match crate::report::receive(report) {
            Ok(Some((step, errno))) => Error::Confine { step, errno },
            Ok(None) => Error::Internal("the server ended before its exec".into()),
            Err(e) => Error::os("reading the child's report", e),
        });
    }
    let client_status = handle.join().unwrap_or(None);
    let status = match tracer.server_status {
        Some(nix::sys::wait::WaitStatus::Exited(_, c)) => format!("exited {c}"),
        Some(nix::sys::wait::WaitStatus::Signaled(_, s, _)) => format!("killed by {s:?}"),
        _ => "status unknown".into(),
    };
    let recs = kmsg
        .as_mut()
        .map(|k| k.drain(Duration::from_millis(300)))
        .unwrap_or_default();
    let audit = audit::landlock_denials(&recs, &BTreeSet::from([server.as_raw()]));
    let mut kills = audit::seccomp_kills(&recs, plan.identity.uid);
    if kills.is_empty() {
        kills = tracer
            .kills
            .iter()
            .map(|k| format!("{k}, seen by the tracer"))
            .collect();
    }
    let audit_ok = audit_on.is_some();
    drop(audit_on);
    let denials = std::mem::take(&mut tracer.denials);
    let expected = std::mem::take(&mut tracer.expected);
    Ok(Outcome {
        display_argv: plan.display_argv.clone(),
        tracer,
        denials,
        expected,
        audit,
        kills,
        audit_read: kmsg.is_some() && audit_ok,
        plan,
        seconds: started.elapsed().as_secs_f64(),
        status,
        client_status,
    })
}

/// The syscalls a replay follows to their exit: the ones Landlock and the mounts decide.
fn watched() -> std::collections::BTreeSet<u32> {
    [
        "open",
        "openat",
        "openat2",
        "creat",
        "mkdir",
        "mkdirat",
        "mknod",
        "mknodat",
        "unlink",
        "unlinkat",
        "rmdir",
        "rename",
        "renameat",
        "renameat2",
        "link",
        "linkat",
        "symlink",
        "symlinkat",
        "truncate",
        "bind",
        "connect",
        "execveat",
        "ioctl",
        "stat",
        "lstat",
        "newfstatat",
        "statx",
        "access",
        "faccessat",
        "faccessat2",
        "readlink",
        "readlinkat",
        "chdir",
        "mmap",
    ]
    .iter()
    .filter_map(|n| crate::seccomp_policy::syscall_number(n))
    .filter_map(|n| u32::try_from(n).ok())
    .collect()
}

/// Signals, readiness, the client command and the stop: everything with a clock, in its own
/// thread, so the tracer only ever waits for stops.
struct Driver {
    server: Pid,
    group: bool,
    probe: Option<(crate::supervise::ready::HttpGet, Duration, Duration)>,
    client: Option<String>,
    grace: Duration,
    max: Option<Duration>,
    gone: Arc<AtomicBool>,
    /// The server itself has exited (set by the tracer).
    server_gone: Arc<AtomicBool>,
    live: Arc<Mutex<std::collections::BTreeSet<i32>>>,
}

impl Driver {
    fn run(self) -> Option<i32> {
        let stops = [
            nix::libc::SIGINT,
            nix::libc::SIGTERM,
            nix::libc::SIGHUP,
            nix::libc::SIGQUIT,
        ];
        let mut signals = signal_hook::iterator::Signals::new(stops).ok();
        let mut unblock = SigSet::empty();
        for s in stops {
            if let Ok(sig) = nix::sys::signal::Signal::try_from(s) {
                unblock.add(sig);
            }
        }
        let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&unblock), None);
        let start = Instant::now();
        let mut ready = self.probe.is_none();
        let mut next_probe = start;
        let mut client: Option<std::process::Child> = None;
        let mut client_status = None;
        let mut stop_at: Option<Instant> = None;
        let mut killed = false;
        // Bounded: every branch below ends the loop once the server is gone; a server that
        // never goes is killed at the stop's grace, and its leftovers two seconds later.
        while !self.gone.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
            let now = Instant::now();
            if let Some(s) = signals.as_mut() {
                for sig in s.pending() {
                    info!(sig, "stop signal: stopping the server");
                    self.signal(sig);
                    stop_at.get_or_insert(now);
                }
            }
            if !ready && now >= next_probe {
                if let Some((get, interval, timeout)) = &self.probe {
                    ready = get
                        .probe(Duration::from_secs(1))
                        .is_ok_and(crate::supervise::ready::passes);
                    next_probe = now + *interval;
                    if !ready && now.duration_since(start) > *timeout && stop_at.is_none() {
                        warn!("the server did not become ready: stopping it");
                        self.signal(nix::libc::SIGTERM);
                        stop_at = Some(now);
                    }
                }
            }
            if ready && client.is_none() && client_status.is_none() && stop_at.is_none() {
                if let Some(cmd) = &self.client {
                    info!(cmd, "server ready: running the client");
                    use std::os::unix::process::CommandExt;
                    // Its own process group: whatever it starts is stopped with it.
                    match std::process::Command::new("/bin/sh")
                        .arg("-c")
                        .arg(cmd)
                        .process_group(0)
                        .spawn()
                    {
                        Ok(c) => client = Some(c),
                        Err(e) => {
                            warn!(%e, "could not run the client");
                            client_status = Some(127);
                        }
                    }
                }
            }
            if let Some(c) = client.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    let _ = crate::sys::kill_raw(-(c.id() as i32), nix::libc::SIGKILL);
                    client_status = Some(st.code().unwrap_or(128));
                    client = None;
                    info!(status = ?client_status, "client done: stopping the server");
                    if stop_at.is_none() {
                        self.signal(nix::libc::SIGTERM);
                        stop_at = Some(now);
                    }
                }
            }
            // The server is gone but something it started is still traced (a daemon that left
            // its group): it gets the stop signal now, SIGKILL at the grace, as leftovers do
            // under the supervisor.
            if stop_at.is_none() && self.server_gone.load(Ordering::SeqCst) {
                self.signal_every_task(nix::libc::SIGTERM);
                stop_at = Some(now);
            }
            if self
                .max
                .is_some_and(|m| now.duration_since(start) >= m && stop_at.is_none())
            {
                info!("--max-secs reached: stopping the server");
                self.signal(nix::libc::SIGTERM);
                stop_at = Some(now);
            }
            if let Some(t) = stop_at {
                if !killed && now.duration_since(t) >= self.grace {
                    warn!("the server outlived its stop grace: SIGKILL");
                    self.signal(nix::libc::SIGKILL);
                    killed = true;
                }
                if now.duration_since(t) >= self.grace + Duration::from_secs(2) {
                    // Leftovers outside the group (a daemon that left it): every task we trace.
                    self.signal_every_task(nix::libc::SIGKILL);
                }
            }
        }
        if let Some(mut c) = client {
            let _ = crate::sys::kill_raw(-(c.id() as i32), nix::libc::SIGKILL);
            client_status = c.wait().ok().and_then(|s| s.code());
        }
        client_status
    }

    /// Every task still traced, by pid: leftovers that left the server's process group.
    fn signal_every_task(&self, sig: i32) {
        let tasks: Vec<i32> = self
            .live
            .lock()
            .map(|l| l.iter().copied().collect())
            .unwrap_or_default();
        for t in tasks {
            let _ = crate::sys::kill_raw(t, sig);
        }
    }

    fn signal(&self, sig: i32) {
        let target = if self.group {
            -self.server.as_raw()
        } else {
            self.server.as_raw()
        };
        let _ = crate::sys::kill_raw(target, sig);
    }
}

/// Write `text` to `path` through `files::replace_at`: the output often lives in a shared
/// directory and the learner is root, so a planted link is neither followed nor written through.
fn write_atomically(path: &std::path::Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e| Error::os(format!("writing {}", path.display()), e);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Error::Usage(format!("--output {} names no file", path.display())))?;
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_CLOEXEC)
        .open(dir)
        .map_err(err)?;
    crate::files::replace_at(&dir, name, text.as_bytes(), 0o644).map_err(err)
}
