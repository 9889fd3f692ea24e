//! PID 1 and supervision, end to end with the real binary and real processes (run as root).
//!
//! Each behaviour runs in up to three modes: an ordinary process (`pid_namespace = "never"`),
//! stockade's own PID namespace (`"auto"` as root), and PID 1 under
//! `unshare --pid --fork --mount-proc`. Every wait is bounded; every process ended here is one
//! this test started, by pid.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_stockade");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// An ordinary process, no PID namespace.
    Plain,
    /// stockade creates its own PID namespace (root, `auto`).
    Ns,
    /// PID 1 of a namespace made by `unshare --pid --fork --mount-proc`.
    Pid1,
}

const ALL: [Mode; 3] = [Mode::Plain, Mode::Ns, Mode::Pid1];

impl Mode {
    fn pid_namespace(self) -> &'static str {
        match self {
            Mode::Plain => "never",
            Mode::Ns | Mode::Pid1 => "auto",
        }
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

/// A world-traversable (0755) directory for scripts and profiles, with a world-writable
/// scratch directory the confined server (nobody) may write.
struct Fx {
    dir: tempfile::TempDir,
    scratch: PathBuf,
    n: AtomicU32,
}

impl Fx {
    fn new() -> Fx {
        let dir = tempfile::Builder::new()
            .prefix("stockade-sup-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let scratch = dir.path().join("scratch");
        std::fs::create_dir(&scratch).unwrap();
        std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o777)).unwrap();
        Fx {
            dir,
            scratch,
            n: AtomicU32::new(0),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn s(&self, name: &str) -> String {
        self.scratch.join(name).display().to_string()
    }

    fn file(&self, name: &str, body: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// A profile like `minimal`, with this directory readable/executable, the scratch directory
    /// writable, and `supervise` lines appended to its `[supervise]` table.
    fn profile(&self, mode: Mode, supervise: &str) -> PathBuf {
        let d = self.dir.path().display();
        let s = self.scratch.display();
        let body = format!(
            r#"version = 1
[identity]
user = "nobody"
group = "nogroup"
[landlock]
read_exec = ["/usr", "/bin", "/sbin", "/lib", {{ path = "/lib64", optional = true }}, "{d}"]
read_only = ["/etc", "/proc", "/dev/urandom"]
read_write = ["{s}", "/dev/null"]
scopes = ["signal", "abstract_unix_socket"]
{seccomp}[rlimits]
core = 0
[env]
set = {{ PATH = "/usr/bin:/bin" }}
[supervise]
pid_namespace = "{}"
{supervise}
"#,
            mode.pid_namespace(),
            seccomp = common::TEST_SECCOMP,
        );
        let n = self.n.fetch_add(1, Ordering::SeqCst);
        let p = self.path(&format!("profile-{n}.toml"));
        std::fs::write(&p, body).unwrap();
        p
    }
}

/// A running stockade (possibly under unshare).
struct Run {
    child: Child,
    mode: Mode,
    started: Instant,
    stderr: PathBuf,
}

fn launch(fx: &Fx, mode: Mode, profile: &Path, argv: &[&str], env: &[(&str, &str)]) -> Run {
    launch_with(fx, mode, profile, argv, env, &[])
}

/// `prefix` runs before stockade (e.g. a shell that opens extra fds and execs the rest).
fn launch_with(
    fx: &Fx,
    mode: Mode,
    profile: &Path,
    argv: &[&str],
    env: &[(&str, &str)],
    prefix: &[&str],
) -> Run {
    let n = fx.n.fetch_add(1, Ordering::SeqCst);
    let stderr = fx.path(&format!("stderr-{n}.log"));
    let mut words: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
    if mode == Mode::Pid1 {
        words.extend(["unshare", "--pid", "--fork", "--mount-proc"].map(String::from));
    }
    words.push(BIN.into());
    words.push("--profile".into());
    words.push(profile.display().to_string());
    words.push("--".into());
    words.extend(argv.iter().map(|s| s.to_string()));
    let mut cmd = Command::new(&words[0]);
    cmd.args(&words[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .env("STOCKADE_LOG", "info")
        .env_remove("NOTIFY_SOCKET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run {
        child: cmd.spawn().unwrap(),
        mode,
        started: Instant::now(),
        stderr,
    }
}

impl Run {
    /// The pid of the stockade process (under unshare: unshare's child).
    fn stockade_pid(&self) -> i32 {
        let me = self.child.id() as i32;
        if self.mode != Mode::Pid1 {
            return me;
        }
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let kids = children(me);
            if let Some(k) = kids.first() {
                if comm(*k).as_deref() == Some("stockade") {
                    return *k;
                }
            }
            assert!(Instant::now() < end, "unshare never started stockade");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The process that is the server's parent.
    fn supervisor_pid(&self) -> i32 {
        let outer = self.stockade_pid();
        if self.mode != Mode::Ns {
            return outer;
        }
        wait_until(Duration::from_secs(5), || children(outer).first().copied())
            .expect("no inner supervisor")
    }

    fn signal(&self, sig: i32) {
        send(self.stockade_pid(), sig);
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Wait (bounded) and return the shell-style exit code.
    fn wait(&mut self, limit: Duration) -> i32 {
        let end = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return shell_code(s);
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "stockade ({:?}) still running after {limit:?}; stderr:\n{}",
                    self.mode,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // A failed assertion must not leave our own child running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// kill(2); nix's `Signal` has no real-time signals, so those go through kill(1).
fn send(pid: i32, sig: i32) {
    match nix::sys::signal::Signal::try_from(sig) {
        Ok(s) => nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), s).unwrap(),
        Err(_) => {
            let st = Command::new("kill")
                .args([format!("-{sig}"), pid.to_string()])
                .status()
                .unwrap();
            assert!(st.success(), "kill -{sig} {pid} failed");
        }
    }
}

fn shell_code(s: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
}

fn wait_until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wait_file(path: &str, limit: Duration) -> String {
    wait_until(limit, || {
        std::fs::read_to_string(path)
            .ok()
            .filter(|s| s.ends_with('\n'))
    })
    .unwrap_or_else(|| panic!("{path} did not appear within {limit:?}"))
}

fn children(pid: i32) -> Vec<i32> {
    let mut v = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let p = t.path().join("children");
            if let Ok(s) = std::fs::read_to_string(p) {
                v.extend(s.split_whitespace().filter_map(|x| x.parse::<i32>().ok()));
            }
        }
    }
    v
}

fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for c in children(p) {
            out.push(c);
            todo.push(c);
        }
    }
    out
}

/// (state, ppid, starttime) from /proc/PID/stat.
fn stat(pid: i32) -> Option<(char, i32, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((
        f[0].chars().next()?,
        f[1].parse().ok()?,
        f[19].parse().ok()?,
    ))
}

fn comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

fn status_field(pid: i32, key: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

fn sh(cmd: &str) -> Vec<&str> {
    vec!["/bin/sh", "-c", cmd]
}

#[test]
fn exit_codes_pass_through() {
    require_root!();
    let fx = Fx::new();
    for mode in ALL {
        let p = fx.profile(mode, "");
        for (cmd, want) in [
            ("exit 0", 0),
            ("exit 1", 1),
            ("exit 42", 42),
            ("exit 255", 255),
            ("kill -TERM $$", 143),
            ("kill -KILL $$", 137),
            ("kill -SEGV $$", 139),
        ] {
            let mut r = launch(&fx, mode, &p, &sh(cmd), &[]);
            let got = r.wait(Duration::from_secs(10));
            assert_eq!(got, want, "{mode:?} `{cmd}`; stderr:\n{}", r.stderr());
        }
    }
}

/// Perl, because a POSIX shell cannot trap SIGINT/SIGQUIT in a background job, and the group
/// test needs a second recorder in the server's group. Appends "ROLE SIGNUM" lines.
const RECORDER: &str = r#"use strict; use warnings; use Config;
my ($out, $role, @nums) = @ARGV;
my %num; @num{split ' ', $Config{sig_name}} = split ' ', $Config{sig_num};
my %name; for my $n (split ' ', $Config{sig_name}) { $name{$num{$n}} //= $n }
sub rec { open(my $f, '>>', $out) or die "$out: $!"; print $f "@_\n"; close $f }
my $done = 0;
for my $n (@nums) {
    $SIG{$name{$n}} = sub { rec("$role $num{$_[0]}"); $done = 1 if $_[0] eq 'TERM' };
}
if ($role eq 'leader') {
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) { exec $^X, $0, "$out.member", 'member', @nums; die "exec: $!" }
}
rec("$role ready");
my $t = time + 60;
until ($done || time > $t) { sleep 1 }
exit 0;
"#;

fn forward_signals(mode: Mode, target: &str) {
    use nix::libc::*;
    let fx = Fx::new();
    let script = fx.file("recorder.pl", RECORDER);
    let p = fx.profile(
        mode,
        &format!("signal_target = \"{target}\"\nstop_grace_secs = 30"),
    );
    let plain = [
        SIGHUP,
        SIGUSR1,
        SIGUSR2,
        SIGALRM,
        SIGSTKFLT,
        SIGCONT,
        SIGTSTP,
        SIGTTIN,
        SIGTTOU,
        SIGURG,
        SIGXCPU,
        SIGXFSZ,
        SIGVTALRM,
        SIGPROF,
        SIGWINCH,
        SIGIO,
        SIGPWR,
        SIGRTMIN(),
        SIGRTMAX(),
    ];
    // Stop signals last: INT and QUIT start the stop, TERM ends the recorders.
    let all: Vec<i32> = plain.iter().copied().chain([SIGINT, SIGQUIT]).collect();
    let out = fx.s("rec");
    let member = format!("{out}.member");
    let mut argv = vec!["/usr/bin/perl".to_string(), script.display().to_string()];
    argv.push(out.clone());
    argv.push("leader".into());
    argv.extend(all.iter().chain([&SIGTERM]).map(|n| n.to_string()));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let mut r = launch(&fx, mode, &p, &argv, &[]);
    wait_file(&out, Duration::from_secs(10));
    wait_file(&member, Duration::from_secs(10));
    for sig in &all {
        r.signal(*sig);
        let line = format!("leader {sig}\n");
        wait_until(Duration::from_secs(5), || {
            std::fs::read_to_string(&out)
                .ok()
                .filter(|s| s.contains(&line))
        })
        .unwrap_or_else(|| {
            panic!(
                "{mode:?}/{target}: signal {sig} not recorded; stderr:\n{}",
                r.stderr()
            )
        });
        if target == "group" {
            // The member too, before the next signal: a stop signal generated while its
            // SIGCONT is still pending discards that SIGCONT (signal(7)), so sending on after
            // the leader alone would lose it.
            let line = format!("member {sig}\n");
            wait_until(Duration::from_secs(5), || {
                std::fs::read_to_string(&member)
                    .ok()
                    .filter(|s| s.contains(&line))
            })
            .unwrap_or_else(|| panic!("{mode:?}: group member missed signal {sig}"));
        }
    }
    if target != "group" {
        // Give a wrongly group-wide forward time to land, then check the member got nothing.
        std::thread::sleep(Duration::from_millis(100));
        let m = std::fs::read_to_string(&member).unwrap();
        assert_eq!(m, "member ready\n", "{mode:?}: the member got signals");
    }
    r.signal(SIGTERM);
    assert_eq!(r.wait(Duration::from_secs(10)), 0, "{}", r.stderr());
    let leader = std::fs::read_to_string(&out).unwrap();
    assert!(leader.contains(&format!("leader {SIGTERM}\n")), "{leader}");
}

#[test]
fn signals_reach_the_server_only() {
    require_root!();
    for mode in ALL {
        forward_signals(mode, "server");
    }
}

#[test]
fn signals_reach_the_whole_group() {
    require_root!();
    for mode in ALL {
        forward_signals(mode, "group");
    }
}

/// A signal that arrives after stockade blocked signals but before its handlers exist is held,
/// not lost: SIGUSR1 then kills the server (`sleep`), so stockade exits 138 well before 20 s.
#[test]
fn signal_during_start_up_is_not_lost() {
    require_root!();
    let fx = Fx::new();
    for mode in ALL {
        let p = fx.profile(mode, "");
        let mut r = launch(&fx, mode, &p, &["/bin/sleep", "20"], &[]);
        let pid = r.stockade_pid();
        let usr1 = 1u64 << (nix::libc::SIGUSR1 - 1);
        wait_until(Duration::from_secs(5), || {
            let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let mask = |key: &str| {
                s.lines()
                    .find_map(|l| l.strip_prefix(key))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                    .unwrap_or(0)
            };
            // Blocked (handlers not there yet) or caught (handlers there): either way it must
            // end up at the server. Before either, the kernel default would kill stockade.
            ((mask("SigBlk:") | mask("SigCgt:")) & usr1 != 0).then_some(())
        })
        .expect("stockade never blocked nor caught SIGUSR1");
        r.signal(nix::libc::SIGUSR1);
        assert_eq!(
            r.wait(Duration::from_secs(10)),
            138,
            "{mode:?}: {}",
            r.stderr()
        );
        assert!(r.started.elapsed() < Duration::from_secs(10));
    }
}

fn zombies_below(pids: &[i32]) -> Vec<i32> {
    let mut z = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Some((state, ppid, _)) = stat(pid) {
            if state == 'Z' && pids.contains(&ppid) {
                z.push(pid);
            }
        }
    }
    z
}

#[test]
fn reaps_2000_double_forked_orphans() {
    require_root!();
    let fx = Fx::new();
    for mode in [Mode::Plain, Mode::Pid1] {
        let done = fx.s(&format!("orphans-{mode:?}"));
        let p = fx.profile(mode, "");
        let cmd = format!(
            "i=0; while [ $i -lt 2000 ]; do ( : & ); i=$((i+1)); done; echo done > {done}; exec sleep 30"
        );
        let t0 = Instant::now();
        let mut r = launch(&fx, mode, &p, &sh(&cmd), &[]);
        wait_file(&done, Duration::from_secs(60));
        let sup = r.supervisor_pid();
        let server = children(sup);
        let mut below = vec![sup];
        below.extend(&server);
        let left = wait_until(Duration::from_secs(5), || {
            let z = zombies_below(&below);
            z.is_empty().then_some(())
        });
        assert!(
            left.is_some(),
            "{mode:?}: zombies left below stockade: {:?}",
            zombies_below(&below)
        );
        r.signal(nix::libc::SIGTERM);
        assert_eq!(r.wait(Duration::from_secs(10)), 143);
        let log = r.stderr();
        let reaped: u64 = log
            .lines()
            .filter(|l| l.contains("server exited"))
            .find_map(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix("orphans_reaped="))
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or_else(|| panic!("no orphan count in:\n{log}"));
        assert!(reaped >= 2000, "{mode:?}: reaped only {reaped}");
        eprintln!(
            "{mode:?}: 2000 orphans made and reaped in {:?}",
            t0.elapsed()
        );
    }
}

/// A server that ignores SIGTERM is SIGKILLed at the end of the grace period, not before.
#[test]
fn grace_period_then_sigkill() {
    require_root!();
    let fx = Fx::new();
    for mode in ALL {
        let ready = fx.s(&format!("grace-{mode:?}"));
        let p = fx.profile(mode, "stop_grace_secs = 2");
        let cmd = format!("trap '' TERM; echo > {ready}; while :; do sleep 0.05; done");
        let mut r = launch(&fx, mode, &p, &sh(&cmd), &[]);
        wait_file(&ready, Duration::from_secs(10));
        let t0 = Instant::now();
        r.signal(nix::libc::SIGTERM);
        assert_eq!(r.wait(Duration::from_secs(10)), 137, "{}", r.stderr());
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_secs(2),
            "{mode:?}: grace cut short: {took:?}"
        );
        assert!(
            took < Duration::from_secs(4),
            "{mode:?}: grace overran: {took:?}"
        );
    }
}

/// The pre-stop delay holds the TERM back, then the server drains and exits.
#[test]
fn pre_stop_delay_delays_the_term() {
    require_root!();
    let fx = Fx::new();
    for mode in [Mode::Plain, Mode::Pid1] {
        let ready = fx.s(&format!("pre-{mode:?}"));
        let p = fx.profile(mode, "pre_stop_delay_secs = 1\nstop_grace_secs = 5");
        let cmd = format!("trap 'exit 3' TERM; echo > {ready}; while :; do sleep 0.05; done");
        let mut r = launch(&fx, mode, &p, &sh(&cmd), &[]);
        wait_file(&ready, Duration::from_secs(10));
        let t0 = Instant::now();
        r.signal(nix::libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            r.is_running(),
            "{mode:?}: TERM forwarded during the pre-stop delay"
        );
        assert_eq!(r.wait(Duration::from_secs(10)), 3);
        assert!(t0.elapsed() >= Duration::from_secs(1));
    }
}

/// SIGKILL to stockade: nothing of the server's tree survives, including a double-forked
/// orphan and a process that left the server's group.
#[test]
fn sigkill_to_stockade_leaves_nothing_alive() {
    require_root!();
    let fx = Fx::new();
    for mode in [Mode::Ns, Mode::Pid1] {
        let ready = fx.s(&format!("tree-{mode:?}"));
        let p = fx.profile(mode, "");
        let cmd = format!(
            "sleep 1000 & (sleep 1001 &); perl -e 'setpgrp(0, 0); sleep 1002' & \
             sleep 0.2; echo > {ready}; wait"
        );
        let mut r = launch(&fx, mode, &p, &sh(&cmd), &[]);
        wait_file(&ready, Duration::from_secs(10));
        let top = r.stockade_pid();
        let tree: Vec<(i32, u64)> = descendants(top)
            .into_iter()
            .filter_map(|p| stat(p).map(|s| (p, s.2)))
            .collect();
        let names: Vec<String> = tree.iter().filter_map(|(p, _)| comm(*p)).collect();
        assert!(
            names.iter().filter(|n| *n == "sleep").count() >= 2 && names.contains(&"perl".into()),
            "{mode:?}: unexpected tree {names:?}"
        );
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(top),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let gone = wait_until(Duration::from_secs(5), || {
            tree.iter()
                .all(|(p, start)| match stat(*p) {
                    None => true,
                    Some((state, _, s)) => state == 'Z' || s != *start,
                })
                .then_some(())
        });
        let alive: Vec<_> = tree
            .iter()
            .filter(|(p, start)| stat(*p).is_some_and(|(st, _, s)| st != 'Z' && s == *start))
            .map(|(p, _)| (*p, comm(*p)))
            .collect();
        assert!(
            gone.is_some(),
            "{mode:?}: survivors after SIGKILL: {alive:?}"
        );
        let code = r.wait(Duration::from_secs(5));
        // util-linux 2.38's unshare reports its killed child as exit 1.
        if mode == Mode::Ns {
            assert_eq!(code, 137);
        }
    }
}

/// Without a PID namespace the server itself still dies with stockade (PDEATHSIG).
#[test]
fn without_a_namespace_the_server_dies_with_stockade() {
    require_root!();
    let fx = Fx::new();
    let p = fx.profile(Mode::Plain, "");
    let mut r = launch(&fx, Mode::Plain, &p, &["/bin/sleep", "1000"], &[]);
    let server = wait_until(Duration::from_secs(5), || {
        children(r.stockade_pid())
            .into_iter()
            .find(|c| comm(*c).as_deref() == Some("sleep"))
    })
    .expect("server did not start");
    let start = stat(server).unwrap().2;
    r.signal(nix::libc::SIGKILL);
    assert_eq!(r.wait(Duration::from_secs(5)), 137);
    let gone = wait_until(Duration::from_secs(5), || {
        stat(server)
            .is_none_or(|(st, _, s)| st == 'Z' || s != start)
            .then_some(())
    });
    assert!(gone.is_some(), "the server outlived stockade");
}

const FD_LISTER: &str = r#"my $out = shift;
opendir(my $d, "/proc/self/fd") or die;
my @fds = sort { $a <=> $b } grep { /^\d+$/ && $_ != fileno($d) } readdir $d;
closedir $d;
open(my $f, '>', $out) or die;
print $f "@fds\n";
"#;

#[test]
fn only_standard_fds_reach_the_server() {
    require_root!();
    let fx = Fx::new();
    let script = fx.file("fds.pl", FD_LISTER);
    let script = script.display().to_string();
    // stockade inherits fds 5 and 7 from this shell.
    let prefix = [
        "/bin/sh",
        "-c",
        "exec 5</dev/null 7</dev/null; exec \"$@\"",
        "sh",
    ];
    for mode in [Mode::Plain, Mode::Pid1] {
        for (extra, want) in [("", "0 1 2"), ("pass_fds = [5]", "0 1 2 5")] {
            let out = fx.s(&format!("fds-{mode:?}-{}", extra.len()));
            let p = fx.profile(mode, extra);
            let argv = ["/usr/bin/perl", script.as_str(), out.as_str()];
            let mut r = launch_with(&fx, mode, &p, &argv, &[], &prefix);
            assert_eq!(r.wait(Duration::from_secs(10)), 0, "{}", r.stderr());
            let got = std::fs::read_to_string(&out).unwrap();
            assert_eq!(got.trim(), want, "{mode:?} with '{extra}'");
        }
    }
}

#[test]
fn restarts_with_growing_backoff_then_runs() {
    require_root!();
    let fx = Fx::new();
    for mode in ALL {
        let count = fx.s(&format!("count-{mode:?}"));
        let times = fx.s(&format!("times-{mode:?}"));
        let p = fx.profile(
            mode,
            "[supervise.restart]\nmode = \"on-failure\"\nmax_restarts = 3\nbackoff_initial_ms = 200",
        );
        let cmd = format!(
            "n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}; \
             date +%s%N >> {times}; [ $n -ge 3 ] && exit 0; exit 1"
        );
        let mut r = launch(&fx, mode, &p, &sh(&cmd), &[]);
        assert_eq!(r.wait(Duration::from_secs(10)), 0, "{}", r.stderr());
        let t: Vec<u64> = std::fs::read_to_string(&times)
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        assert_eq!(t.len(), 3, "{mode:?}: starts {t:?}");
        let (d1, d2) = ((t[1] - t[0]) / 1_000_000, (t[2] - t[1]) / 1_000_000);
        assert!(
            d1 >= 200 && d2 >= 400 && d2 > d1,
            "{mode:?}: delays {d1} ms, {d2} ms"
        );
        let log = r.stderr();
        assert!(
            log.contains("delay_ms=200") && log.contains("delay_ms=400"),
            "{log}"
        );
    }
}

#[test]
fn restarts_stop_after_the_maximum() {
    require_root!();
    let fx = Fx::new();
    for mode in [Mode::Plain, Mode::Pid1] {
        let count = fx.s(&format!("fail-{mode:?}"));
        let p = fx.profile(
            mode,
            "[supervise.restart]\nmode = \"on-failure\"\nmax_restarts = 2\nbackoff_initial_ms = 50",
        );
        let cmd = format!("echo x >> {count}; exit 3");
        let mut r = launch(&fx, mode, &p, &sh(&cmd), &[]);
        assert_eq!(r.wait(Duration::from_secs(10)), 3);
        assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 3);
        assert!(r.stderr().contains("giving up"), "{}", r.stderr());
    }
}

/// max_restarts limits consecutive failures: an instance that ran longer than the longest backoff
/// was healthy and resets the count.
#[test]
fn a_healthy_run_resets_the_restart_count() {
    require_root!();
    let fx = Fx::new();
    let count = fx.s("healthy-count");
    let p = fx.profile(
        Mode::Plain,
        "[supervise.restart]\nmode = \"on-failure\"\nmax_restarts = 1\nbackoff_initial_ms = 50\nbackoff_max_ms = 200",
    );
    // Every run lasts 0.4 s (longer than backoff_max_ms) and fails, until the fourth succeeds.
    let cmd = format!(
        "n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}; sleep 0.4; \
         [ $n -ge 4 ] && exit 0; exit 1"
    );
    let mut r = launch(&fx, Mode::Plain, &p, &sh(&cmd), &[]);
    assert_eq!(r.wait(Duration::from_secs(15)), 0, "{}", r.stderr());
    assert_eq!(std::fs::read_to_string(&count).unwrap().trim(), "4");
    assert!(r.stderr().contains("restart count reset"), "{}", r.stderr());
}

/// The supervisor keeps only CAP_KILL (plus what a restart needs), in every set, with
/// no_new_privs; the server cannot signal it.
#[test]
fn supervisor_drops_its_capabilities() {
    require_root!();
    let fx = Fx::new();
    for mode in [Mode::Plain, Mode::Ns] {
        // Each instance gets a private mount namespace (its writable paths re-mounted noexec,
        // mounts.writable_noexec; with its own PID namespace also a fresh /proc), so restarting
        // one needs CAP_SYS_ADMIN too.
        let restart_caps = (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 21);
        for (extra, want) in [
            ("", 0x20u64),
            ("[supervise.restart]\nmode = \"on-failure\"", restart_caps),
        ] {
            let ready = fx.s(&format!("caps-{mode:?}-{}", extra.len()));
            let p = fx.profile(mode, extra);
            let cmd = format!(
                "kill -USR1 $PPID 2>/dev/null; echo $? > {ready}; trap 'exit 0' TERM; \
                 while :; do sleep 0.05; done"
            );
            let mut r = launch(&fx, mode, &p, &sh(&cmd), &[]);
            let rc = wait_file(&ready, Duration::from_secs(10));
            assert_ne!(rc.trim(), "0", "the server could signal its supervisor");
            let sup = r.supervisor_pid();
            // Read as soon as the server runs: the child execs only after the supervisor has
            // dropped its capabilities (the start pipe), so no wait is needed, on any load.
            for key in ["CapEff", "CapPrm", "CapBnd"] {
                let v = u64::from_str_radix(&status_field(sup, key), 16).unwrap();
                assert_eq!(v, want, "{mode:?} '{extra}': supervisor {key} = {v:#x}");
            }
            assert_eq!(status_field(sup, "CapInh"), "0000000000000000");
            assert_eq!(status_field(sup, "CapAmb"), "0000000000000000");
            assert_eq!(status_field(sup, "NoNewPrivs"), "1");
            if mode == Mode::Ns {
                let outer = r.stockade_pid();
                assert_eq!(status_field(outer, "CapEff"), "0000000000000000");
                assert_eq!(status_field(outer, "CapBnd"), "0000000000000000");
            }
            r.signal(nix::libc::SIGTERM);
            assert_eq!(r.wait(Duration::from_secs(10)), 0, "{}", r.stderr());
        }
    }
}

/// A tiny HTTP server: 503 until `after`, then 200. Records when it first answered 200.
fn health_server(after: Duration) -> (u16, Arc<Mutex<Option<Instant>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let first_ok = Arc::new(Mutex::new(None));
    let mark = first_ok.clone();
    let start = Instant::now();
    std::thread::spawn(move || {
        for c in l.incoming().take(2000) {
            let Ok(mut c) = c else { continue };
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            let ok = start.elapsed() >= after;
            if ok {
                mark.lock().unwrap().get_or_insert_with(Instant::now);
            }
            let answer: &[u8] = if ok {
                b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"
            } else {
                b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
            };
            let _ = c.write_all(answer);
        }
    });
    (port, first_ok)
}

/// Receive one datagram (bounded) and the sender's pid (SCM_CREDENTIALS, as systemd checks).
fn recv_notify(sock: &UnixDatagram, limit: Duration) -> Option<(String, i32, Instant)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, UnixCredentials, recvmsg};
    use std::os::fd::AsRawFd;
    sock.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 512];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!(UnixCredentials);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(cmsg.as_mut_slice()),
        MsgFlags::empty(),
    )
    .ok()?;
    let at = Instant::now();
    let mut pid = 0;
    for c in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmCredentials(cred) = c {
            pid = cred.pid();
        }
    }
    let n = msg.bytes;
    Some((String::from_utf8_lossy(&buf[..n]).into_owned(), pid, at))
}

fn notify_socket(fx: &Fx, name: &str) -> (UnixDatagram, String) {
    let path = fx.path(name);
    let sock = UnixDatagram::bind(&path).unwrap();
    nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::PassCred, &true).unwrap();
    (sock, path.display().to_string())
}

#[test]
fn ready_is_notified_only_after_the_probe_passes() {
    require_root!();
    let fx = Fx::new();
    for mode in ALL {
        let (port, first_ok) = health_server(Duration::from_millis(1500));
        let (sock, path) = notify_socket(&fx, &format!("notify-{mode:?}"));
        let p = fx.profile(
            mode,
            &format!(
                "[supervise.ready]\nhttp_get = \"http://127.0.0.1:{port}/v2/health/ready\"\n\
                 interval_ms = 100\ntimeout_secs = 20"
            ),
        );
        let cmd = "trap 'exit 0' TERM; while :; do sleep 0.05; done";
        let mut r = launch(&fx, mode, &p, &sh(cmd), &[("NOTIFY_SOCKET", &path)]);
        let (msg, pid, at) = recv_notify(&sock, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{mode:?}: no notification; {}", r.stderr()));
        assert!(
            msg.starts_with("READY=1"),
            "{mode:?}: first message {msg:?}"
        );
        let ok = first_ok.lock().unwrap().expect("the probe never got a 200");
        assert!(at >= ok, "{mode:?}: READY=1 before the probe passed");
        assert!(r.started.elapsed() >= Duration::from_millis(1500));
        // systemd's NotifyAccess=main: the message must come from the pid it started (with
        // stockade's own namespace, the outer process, not the supervisor inside).
        assert_eq!(
            pid,
            r.stockade_pid(),
            "{mode:?}: READY=1 not from stockade's pid"
        );
        r.signal(nix::libc::SIGTERM);
        let (msg, _, _) = recv_notify(&sock, Duration::from_secs(10)).expect("no STOPPING=1");
        assert_eq!(msg, "STOPPING=1");
        assert_eq!(r.wait(Duration::from_secs(10)), 0, "{}", r.stderr());
        let log = r.stderr();
        assert!(
            log.contains("readiness probe: not ready") && log.contains("HTTP 503"),
            "{log}"
        );
        assert!(log.contains("readiness probe passed"), "{log}");
    }
}

#[test]
fn not_ready_in_time_fails_the_start() {
    require_root!();
    let fx = Fx::new();
    // A port nobody listens on: bind, note, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for mode in [Mode::Plain, Mode::Ns] {
        let p = fx.profile(
            mode,
            &format!(
                "[supervise.ready]\nhttp_get = \"http://127.0.0.1:{port}/\"\ninterval_ms = 100\n\
                 timeout_secs = 1"
            ),
        );
        let (sock, path) = notify_socket(&fx, &format!("nr-{mode:?}"));
        let mut r = launch(
            &fx,
            mode,
            &p,
            &["/bin/sleep", "30"],
            &[("NOTIFY_SOCKET", &path)],
        );
        assert_eq!(r.wait(Duration::from_secs(10)), 75, "{}", r.stderr());
        let took = r.started.elapsed();
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(5),
            "{took:?}"
        );
        let log = r.stderr();
        assert!(log.contains("did not become ready within 1s"), "{log}");
        let first = recv_notify(&sock, Duration::from_millis(500)).map(|m| m.0);
        assert!(
            !first.as_deref().unwrap_or("").contains("READY=1"),
            "READY=1 sent: {first:?}"
        );
    }
}

#[test]
fn non_loopback_probe_url_is_a_profile_error() {
    let fx = Fx::new();
    let p = fx.profile(
        Mode::Plain,
        "[supervise.ready]\nhttp_get = \"http://10.1.2.3:8000/v2/health/ready\"",
    );
    let out = Command::new(BIN)
        .args(["--profile", p.to_str().unwrap(), "--", "/bin/true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(p.to_str().unwrap()) && err.contains("not a loopback address"),
        "{err}"
    );
}

/// `defer_stop_until_ready`: a TERM during start-up is held until the probe passes, then
/// forwarded; if readiness never comes, the group is SIGKILLed at the grace deadline.
#[test]
fn stop_is_held_until_ready() {
    require_root!();
    let fx = Fx::new();
    for mode in [Mode::Plain, Mode::Ns] {
        let (port, first_ok) = health_server(Duration::from_millis(1500));
        let term = fx.s(&format!("held-{mode:?}"));
        let started = fx.s(&format!("held-started-{mode:?}"));
        let p = fx.profile(
            mode,
            &format!(
                "defer_stop_until_ready = true\nstop_grace_secs = 10\n[supervise.ready]\n\
                 http_get = \"http://127.0.0.1:{port}/\"\ninterval_ms = 100\ntimeout_secs = 20"
            ),
        );
        let cmd = format!(
            "trap 'echo term > {term}; exit 0' TERM; echo > {started}; while :; do sleep 0.05; done"
        );
        let mut r = launch(&fx, mode, &p, &sh(&cmd), &[]);
        wait_file(&started, Duration::from_secs(10));
        r.signal(nix::libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            r.is_running() && !Path::new(&term).exists(),
            "{mode:?}: TERM not held"
        );
        assert_eq!(r.wait(Duration::from_secs(10)), 0, "{}", r.stderr());
        assert!(Path::new(&term).exists());
        assert!(first_ok.lock().unwrap().is_some());
        assert!(r.started.elapsed() >= Duration::from_millis(1500));
    }
    // Never ready: SIGKILL at the deadline, the TERM never delivered.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let term = fx.s("never");
    let started = fx.s("never-started");
    let p = fx.profile(
        Mode::Plain,
        &format!(
            "defer_stop_until_ready = true\nstop_grace_secs = 1\n[supervise.ready]\n\
             http_get = \"http://127.0.0.1:{port}/\"\ninterval_ms = 100\ntimeout_secs = 30"
        ),
    );
    let cmd = format!(
        "trap 'echo term > {term}; exit 0' TERM; echo > {started}; while :; do sleep 0.05; done"
    );
    let mut r = launch(&fx, Mode::Plain, &p, &sh(&cmd), &[]);
    wait_file(&started, Duration::from_secs(10));
    let t0 = Instant::now();
    r.signal(nix::libc::SIGTERM);
    assert_eq!(r.wait(Duration::from_secs(10)), 137, "{}", r.stderr());
    assert!(t0.elapsed() >= Duration::from_secs(1));
    assert!(!Path::new(&term).exists(), "the held TERM was delivered");
}

/// Interactive use: the server is the terminal's foreground process group, so Ctrl-C reaches
/// it directly, as under tini.
#[test]
fn ctrl_c_in_a_terminal_reaches_the_server() {
    require_root!();
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no script(1)");
        return;
    }
    let fx = Fx::new();
    for mode in [Mode::Plain, Mode::Ns] {
        let started = fx.s(&format!("tty-{mode:?}"));
        let got = fx.s(&format!("tty-int-{mode:?}"));
        let p = fx.profile(mode, "");
        let inner = format!(
            "{BIN} --profile {} -- /bin/sh -c \"trap 'echo int > {got}; exit 7' INT; echo > {started}; while :; do sleep 0.05; done\"",
            p.display()
        );
        let mut child = Command::new("script")
            .args(["-qfec", &inner, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_file(&started, Duration::from_secs(10));
        // The server's pgrp is the terminal's foreground group (stat fields 5 and 8).
        let sh_pid = descendants(child.id() as i32)
            .into_iter()
            .rev()
            .find(|p| comm(*p).as_deref() == Some("sh"))
            .expect("no server shell");
        let s = std::fs::read_to_string(format!("/proc/{sh_pid}/stat")).unwrap();
        let f: Vec<&str> = s[s.rfind(')').unwrap() + 2..].split_whitespace().collect();
        assert_eq!(
            f[2], f[5],
            "{mode:?}: pgrp {} is not the foreground {}",
            f[2], f[5]
        );
        child.stdin.as_mut().unwrap().write_all(b"\x03").unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() >= end {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{mode:?}: Ctrl-C did not stop the server");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(shell_code(status), 7, "{mode:?}");
        assert!(Path::new(&got).exists());
    }
}

/// Rss (KiB) of the mappings of `pid`'s own binary that the supervisor may release: not
/// writable, no anonymous page (its own smaps, read from outside).
fn releasable_rss(pid: i32) -> u64 {
    try_releasable_rss(pid).unwrap()
}

/// `releasable_rss`, or an error while the process is between two images (an exec).
fn try_releasable_rss(pid: i32) -> std::io::Result<u64> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))?;
    let exe = exe.to_string_lossy().into_owned();
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let (mut total, mut ours, mut rss) = (0, false, 0);
    for line in smaps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.first().is_some_and(|w| w.contains('-')) && f.len() >= 2 {
            ours = f.get(5) == Some(&exe.as_str()) && f[1].as_bytes()[1] == b'-';
        } else if ours && f.first() == Some(&"Rss:") {
            rss = f[1].parse().unwrap();
        } else if ours && f.first() == Some(&"Anonymous:") && f[1] == "0" {
            total += rss;
        }
    }
    Ok(total)
}

/// One second after the server started, every stockade process (the PID-namespace relay too)
/// gives back its start-up pages; the supervisor still restarts the server afterwards (the
/// confinement code faults back in unchanged).
#[test]
fn start_up_pages_are_released_and_a_restart_still_works() {
    require_root!();
    let fx = Fx::new();
    for mode in ALL {
        let p = fx.profile(
            mode,
            "[supervise.restart]\nmode = \"on-failure\"\nmax_restarts = 1\nbackoff_initial_ms = 10",
        );
        // Up to three tries for a reading before the release (a loaded machine can be late).
        let mut done = false;
        for attempt in 0..3 {
            let ready = fx.s(&format!("rel-{mode:?}-{attempt}"));
            let second = fx.s(&format!("rel2-{mode:?}-{attempt}"));
            let cmd = format!(
                "if [ -e {ready} ]; then echo > {second}; exit 0; fi; echo > {ready}; sleep 3; exit 1"
            );
            let mut r = launch(&fx, mode, &p, &sh(&cmd), &[]);
            wait_file(&ready, Duration::from_secs(10));
            let mut procs = vec![r.stockade_pid()];
            if mode == Mode::Ns {
                procs.push(r.supervisor_pid());
            }
            // The most each holds before the release (1 s after the server started).
            let mut before = vec![0u64; procs.len()];
            while r.started.elapsed() < Duration::from_millis(700) {
                for (b, p) in before.iter_mut().zip(&procs) {
                    *b = (*b).max(try_releasable_rss(*p).unwrap_or(0));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let early = r.started.elapsed() < Duration::from_millis(800);
            // After the release, before the server exits (3 s). The relay execs a fresh image
            // of stockade at 1 s instead, which releases its own start-up pages a second later.
            std::thread::sleep(Duration::from_millis(2500).saturating_sub(r.started.elapsed()));
            let after: Vec<u64> = procs.iter().map(|p| releasable_rss(*p)).collect();
            assert_eq!(r.wait(Duration::from_secs(10)), 0, "{}", r.stderr());
            assert!(
                std::path::Path::new(&second).exists(),
                "{mode:?}: no restart after the release"
            );
            if !early {
                continue;
            }
            // Each process gives back at least a third of them (the loop touches some again).
            for (b, a) in before.iter().zip(&after) {
                assert!(
                    *a * 3 <= *b * 2,
                    "{mode:?}: start-up pages not released: {before:?} KiB -> {after:?} KiB \
                     ({procs:?})"
                );
            }
            eprintln!("{mode:?}: releasable Rss {before:?} KiB -> {after:?} KiB");
            done = true;
            break;
        }
        assert!(
            done,
            "{mode:?}: no reading before the release in three tries"
        );
    }
}

/// A second in, the PID-namespace relay execs a fresh image of stockade (no start-up memory):
/// same pid and command line, still no capabilities, and it still relays signals in and the
/// exit code out.
#[test]
fn the_relay_in_its_fresh_image_still_relays() {
    require_root!();
    let fx = Fx::new();
    let p = fx.profile(Mode::Ns, "");
    let ready = fx.s("fresh-ready");
    let got = fx.s("fresh-usr1");
    let cmd = format!(
        "trap 'echo > {got}' USR1; trap 'exit 3' TERM; echo > {ready}; \
         while :; do sleep 0.05; done"
    );
    let mut r = launch(&fx, Mode::Ns, &p, &sh(&cmd), &[]);
    wait_file(&ready, Duration::from_secs(10));
    let relay = r.stockade_pid();
    let cmdline = std::fs::read(format!("/proc/{relay}/cmdline")).unwrap();
    let fresh = wait_until(Duration::from_secs(5), || {
        std::fs::read(format!("/proc/{relay}/environ"))
            .ok()
            .filter(|e| {
                e.split(|b| *b == 0)
                    .any(|v| v.starts_with(b"STOCKADE_INTERNAL_RELAY="))
            })
    });
    assert!(fresh.is_some(), "no fresh image; {}", r.stderr());
    assert_eq!(
        std::fs::read(format!("/proc/{relay}/cmdline")).unwrap(),
        cmdline
    );
    assert_eq!(status_field(relay, "CapEff"), "0000000000000000");
    assert_eq!(status_field(relay, "CapBnd"), "0000000000000000");
    r.signal(nix::libc::SIGUSR1);
    wait_file(&got, Duration::from_secs(10));
    r.signal(nix::libc::SIGTERM);
    assert_eq!(r.wait(Duration::from_secs(10)), 3, "{}", r.stderr());
}
