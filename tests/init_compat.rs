//! What tini and dumb-init users expect from an init, end to end with the real binary (issue 12):
//! the server starts in stockade's working directory, signals the parent left ignored stay
//! ignored, a SIGPIPE sent with kill(2) is forwarded while stockade's own broken pipes are not,
//! and systemd socket activation reaches the server.
//!
//! Each behaviour runs as an ordinary process (`pid_namespace = "never"`), in stockade's own PID
//! namespace (`"auto"` as root) and as PID 1 under `unshare --pid --fork --mount-proc`. The
//! kernel's view is read from `/proc/<pid>/status` of the confined server, from outside. Every
//! wait is bounded; every process ended here is one this test started, by pid.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_stockade");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Ns,
    Pid1,
}

const ALL: [Mode; 3] = [Mode::Plain, Mode::Ns, Mode::Pid1];

/// A 0755 directory in /tmp: `bin/probe`, `work/` and `other/` (0755, where servers start),
/// `closed/` (0700 root: the server's uid cannot enter it), `scratch/` (0777), profiles.
struct Fx {
    dir: tempfile::TempDir,
    n: AtomicU32,
}

impl Fx {
    fn new() -> Fx {
        common::require_root();
        let dir = tempfile::Builder::new()
            .prefix("stockade-init-")
            .tempdir_in("/tmp")
            .unwrap();
        let fx = Fx {
            dir,
            n: AtomicU32::new(0),
        };
        for (d, mode) in [
            ("", 0o755),
            ("bin", 0o755),
            ("work", 0o755),
            ("other", 0o755),
            ("closed", 0o700),
            ("scratch", 0o777),
        ] {
            let p = fx.path(d);
            if !d.is_empty() {
                std::fs::create_dir(&p).unwrap();
            }
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::fs::copy(common::probe_built(), fx.path("bin/probe")).unwrap();
        fx
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn probe(&self) -> String {
        self.path("bin/probe").display().to_string()
    }

    /// The minimal profile's shape over this directory; `server` and `env` lines go into those
    /// tables.
    fn profile(&self, mode: Mode, server: &str, env: &str) -> PathBuf {
        let body = format!(
            r#"version = 1
[server]
{server}
[identity]
user = "nobody"
group = "nogroup"
[landlock]
read_exec = ["/usr", "/bin", "/lib", {{ path = "/lib64", optional = true }}, "{bin}"]
read_only = ["/etc", "/proc", "/dev/urandom", "{work}", "{other}"]
read_write = ["{scratch}", "/dev/null"]
bind_tcp = []
connect_tcp = []
{seccomp}[env]
set = {{ PATH = "/usr/bin:/bin" }}
{env}
[supervise]
pid_namespace = "{ns}"
stop_grace_secs = 5
"#,
            bin = self.path("bin").display(),
            work = self.path("work").display(),
            other = self.path("other").display(),
            scratch = self.path("scratch").display(),
            seccomp = common::TEST_SECCOMP,
            ns = if mode == Mode::Plain { "never" } else { "auto" },
        );
        let p = self.path(&format!(
            "profile-{}.toml",
            self.n.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&p, body).unwrap();
        p
    }
}

/// `[unshare --pid --fork --mount-proc] [wrapper...] stockade --profile P -- argv`: the wrapper
/// runs where stockade will (its `$$` is stockade's pid, also as PID 1), then execs it.
fn command(mode: Mode, profile: &str, argv: &[&str], wrapper: &[&str]) -> Command {
    let mut words: Vec<String> = Vec::new();
    if mode == Mode::Pid1 {
        words.extend(["unshare", "--pid", "--fork", "--mount-proc"].map(String::from));
    }
    words.extend(wrapper.iter().map(|s| s.to_string()));
    words.extend([
        BIN.to_string(),
        "--profile".into(),
        profile.into(),
        "--".into(),
    ]);
    words.extend(argv.iter().map(|s| s.to_string()));
    let mut c = Command::new(&words[0]);
    c.args(&words[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("STOCKADE_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_FDNAMES");
    c
}

/// A running stockade that is killed (by its pid) if a test fails before it ends.
struct Run {
    child: Child,
    mode: Mode,
}

impl Run {
    fn start(mut cmd: Command, mode: Mode) -> Run {
        Run {
            child: cmd.spawn().unwrap(),
            mode,
        }
    }

    /// stockade's pid (under unshare: the descendant named stockade).
    fn stockade_pid(&self) -> i32 {
        let me = self.child.id();
        if self.mode != Mode::Pid1 {
            return me as i32;
        }
        wait_until(Duration::from_secs(5), || {
            common::descendants(me).into_iter().find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "stockade")
            })
        })
        .expect("unshare never started stockade") as i32
    }

    /// The confined server (the probe), host pid.
    fn server(&self, probe: &str) -> u32 {
        common::wait_child_exe(self.child.id(), Path::new(probe), Duration::from_secs(10))
    }

    fn signal(&self, sig: i32) {
        let pid = nix::unistd::Pid::from_raw(self.stockade_pid());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::try_from(sig).unwrap()).unwrap();
    }

    /// Wait (bounded) for the end; stdout and stderr as text.
    fn finish(mut self, limit: Duration) -> (ExitStatus, String, String) {
        let end = Instant::now() + limit;
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() >= end {
                common::kill_and_reap(&mut self.child);
                panic!("{:?}: stockade still running after {limit:?}", self.mode);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (self.child.wait().unwrap(), out, err)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            common::kill_and_reap(&mut self.child);
        }
    }
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

fn run(cmd: Command, mode: Mode) -> (ExitStatus, String, String) {
    Run::start(cmd, mode).finish(Duration::from_secs(20))
}

/// A `SigIgn:`-style mask field of `/proc/<pid>/status`, without glibc's two reserved signals
/// (32 and 33): glibc's posix_spawn, which std's Command uses, leaves them ignored in the
/// processes it starts, and glibc's sigaction refuses to touch them, in stockade as anywhere.
fn mask(pid: u32, key: &str) -> u64 {
    u64::from_str_radix(&common::status(pid)[key], 16).unwrap() & !(bit(32) | bit(33))
}

fn bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

// --- 1. working directory ---------------------------------------------------------------------

#[test]
fn server_starts_in_the_directory_stockade_was_started_in() {
    let fx = Fx::new();
    let work = fx.path("work");
    let other = fx.path("other");
    for mode in ALL {
        // No server.cwd: stockade's own working directory, as under tini.
        let p = fx.profile(mode, "", "");
        let mut c = command(mode, p.to_str().unwrap(), &[&fx.probe(), "cwd"], &[]);
        c.current_dir(&work);
        let (st, out, err) = run(c, mode);
        assert_eq!(st.code(), Some(0), "{mode:?}: {err}");
        assert_eq!(
            out.trim(),
            format!("cwd={}\nok", work.display()),
            "{mode:?}"
        );
        // The profile's server.cwd still wins.
        let cwd = format!("cwd = \"{}\"", other.display());
        let p = fx.profile(mode, &cwd, "");
        let mut c = command(mode, p.to_str().unwrap(), &[&fx.probe(), "cwd"], &[]);
        c.current_dir(&work);
        let (st, out, err) = run(c, mode);
        assert_eq!(st.code(), Some(0), "{mode:?}: {err}");
        assert_eq!(
            out.trim(),
            format!("cwd={}\nok", other.display()),
            "{mode:?}"
        );
    }
}

/// The built-in profiles no longer pin `/`: `stockade --profile minimal -- /bin/pwd` prints the
/// WORKDIR.
#[test]
fn builtin_profile_honours_the_workdir() {
    let fx = Fx::new();
    let work = fx.path("work");
    for mode in [Mode::Ns, Mode::Pid1] {
        let mut c = command(mode, "minimal", &["/bin/pwd"], &[]);
        c.current_dir(&work);
        let (st, out, err) = run(c, mode);
        assert_eq!(st.code(), Some(0), "{mode:?}: {err}");
        assert_eq!(out.trim(), work.display().to_string(), "{mode:?}");
    }
}

/// stockade's own directory that the server's uid cannot enter (an operator's 0700 home) is not
/// a reason to refuse: the server starts in `/`, and stockade says so.
#[test]
fn an_inherited_directory_the_server_cannot_enter_falls_back_to_root() {
    let fx = Fx::new();
    let closed = fx.path("closed");
    for mode in ALL {
        let p = fx.profile(mode, "", "");
        let mut c = command(mode, p.to_str().unwrap(), &[&fx.probe(), "cwd"], &[]);
        c.current_dir(&closed);
        let (st, out, err) = run(c, mode);
        assert_eq!(st.code(), Some(0), "{mode:?}: {out} {err}");
        assert_eq!(out.trim(), "cwd=/\nok", "{mode:?}: {err}");
        let want = format!(
            "the server (uid 65534) cannot enter {}, the directory stockade was started in: it \
             starts in /",
            closed.display()
        );
        assert!(err.contains(&want), "{mode:?}: {err}");
    }
}

/// A profile's `server.cwd` the server's uid cannot enter fails at the chdir step, naming it,
/// with stockade's code 71, before the server runs.
#[test]
fn a_profile_directory_the_server_cannot_enter_fails_loudly() {
    let fx = Fx::new();
    let closed = fx.path("closed");
    let marker = fx.path("scratch/ran");
    for mode in ALL {
        let cwd = format!("cwd = \"{}\"", closed.display());
        let p = fx.profile(mode, &cwd, "");
        let argv = [fx.probe(), "create".into(), marker.display().to_string()];
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let c = command(mode, p.to_str().unwrap(), &argv, &[]);
        let (st, out, err) = run(c, mode);
        assert_eq!(st.code(), Some(71), "{mode:?}: {out} {err}");
        let want = format!(
            "stockade: confinement step 'chdir': the server (uid 65534) cannot enter {}",
            closed.display()
        );
        assert!(err.contains(&want), "{mode:?}: {err}");
        assert!(!marker.exists(), "{mode:?}: the server ran");
    }
}

// --- 2. dispositions --------------------------------------------------------------------------

/// A server written in C that leaves its dispositions as exec left them (a Rust server would
/// ignore SIGPIPE itself).
fn sleep_exe() -> String {
    std::fs::canonicalize("/bin/sleep")
        .unwrap()
        .display()
        .to_string()
}

/// The server's SigIgn/SigCgt/SigBlk, read from outside while it sleeps; then TERM ends it.
fn server_masks(fx: &Fx, mode: Mode, wrapper: &[&str]) -> (u64, u64, u64) {
    let p = fx.profile(mode, "", "");
    let sleep = sleep_exe();
    let run = Run::start(
        command(mode, p.to_str().unwrap(), &[&sleep, "30"], wrapper),
        mode,
    );
    let server = run.server(&sleep);
    // Past exec: the probe's comm, and its dispositions are the ones exec left.
    let masks = (
        mask(server, "SigIgn"),
        mask(server, "SigCgt"),
        mask(server, "SigBlk"),
    );
    run.signal(nix::libc::SIGTERM);
    let (st, _, err) = run.finish(Duration::from_secs(10));
    assert_eq!(st.code(), Some(143), "{mode:?}: {err}");
    masks
}

#[test]
fn signals_ignored_by_the_parent_stay_ignored() {
    use nix::libc::{SIGHUP, SIGPIPE, SIGUSR2};
    let fx = Fx::new();
    let trap = [
        "/bin/sh",
        "-c",
        "trap '' HUP PIPE USR2 40; exec \"$@\"",
        "sh",
    ];
    let want = bit(SIGHUP) | bit(SIGPIPE) | bit(SIGUSR2) | bit(40);
    for mode in ALL {
        let (ign, cgt, blk) = server_masks(&fx, mode, &trap);
        assert_eq!(ign, want, "{mode:?}: SigIgn {ign:#x}");
        assert_eq!(
            (cgt, blk),
            (0, 0),
            "{mode:?}: stockade's handlers or mask leaked"
        );
        // Nothing ignored by the parent (std resets SIGPIPE for the processes it spawns):
        // nothing ignored in the server, SIGPIPE included although Rust's runtime ignores it in
        // stockade before main.
        let (ign, cgt, blk) = server_masks(&fx, mode, &[]);
        assert_eq!((ign, cgt, blk), (0, 0, 0), "{mode:?}: SigIgn {ign:#x}");
    }
}

/// An ignored SIGCHLD would let the kernel reap the server behind stockade's back: stockade
/// and the server get the default, and the server's exit code still comes through.
#[test]
fn an_ignored_sigchld_is_not_inherited() {
    let fx = Fx::new();
    let ign_chld = [
        "/usr/bin/perl",
        "-e",
        "$SIG{CHLD} = 'IGNORE'; exec @ARGV or die",
    ];
    for mode in ALL {
        let (ign, _, _) = server_masks(&fx, mode, &ign_chld);
        assert_eq!(ign, 0, "{mode:?}: SigIgn {ign:#x}");
        let p = fx.profile(mode, "", "");
        let c = command(
            mode,
            p.to_str().unwrap(),
            &["/bin/sh", "-c", "exit 3"],
            &ign_chld,
        );
        let (st, _, err) = run(c, mode);
        assert_eq!(st.code(), Some(3), "{mode:?}: {err}");
    }
}

// --- 3. SIGPIPE -------------------------------------------------------------------------------

/// kill -PIPE stockade: the server (default disposition) dies of it and stockade, alive, exits
/// 128+13.
#[test]
fn sigpipe_sent_with_kill_reaches_the_server() {
    let fx = Fx::new();
    for mode in ALL {
        let p = fx.profile(mode, "", "");
        let sleep = sleep_exe();
        let run = Run::start(
            command(mode, p.to_str().unwrap(), &[&sleep, "30"], &[]),
            mode,
        );
        run.server(&sleep);
        run.signal(nix::libc::SIGPIPE);
        let (st, _, err) = run.finish(Duration::from_secs(10));
        assert_eq!(
            (st.code(), st.signal()),
            (Some(141), None),
            "{mode:?}: {err}"
        );
        assert!(err.contains("server exited"), "{mode:?}: {err}");
    }
}

/// stockade's own writes to a broken stderr raise SIGPIPE in stockade: it neither dies of it
/// nor passes it on. The server survives a forwarded WINCH (logged at debug level into the
/// broken pipe) and ends only by the TERM that follows.
#[test]
fn stockades_own_broken_pipe_is_not_forwarded() {
    let fx = Fx::new();
    for mode in ALL {
        let p = fx.profile(mode, "", "");
        let sleep = sleep_exe();
        let (r, w) = nix::unistd::pipe().unwrap();
        drop(r);
        let mut c = command(mode, p.to_str().unwrap(), &[&sleep, "30"], &[]);
        c.stderr(Stdio::from(w)).env("STOCKADE_LOG", "debug");
        let run = Run::start(c, mode);
        let server = run.server(&sleep);
        run.signal(nix::libc::SIGWINCH);
        std::thread::sleep(Duration::from_millis(300));
        let state = common::status(server)["State"].clone();
        assert!(state.starts_with('S'), "{mode:?}: server state {state}");
        run.signal(nix::libc::SIGTERM);
        let (st, _, _) = run.finish(Duration::from_secs(10));
        assert_eq!((st.code(), st.signal()), (Some(143), None), "{mode:?}");
    }
}

/// Output to a reader that went away (`stockade --dry-run | head -1`) ends quietly: no panic,
/// no death by SIGPIPE.
#[test]
fn output_to_a_closed_pipe_is_not_a_crash() {
    let fx = Fx::new();
    for args in [
        vec!["--print-profile", "minimal"],
        vec!["--list-profiles"],
        vec!["--profile", "minimal", "--dry-run", "--", "/bin/true"],
        vec![
            "--profile",
            "minimal",
            "--dry-run",
            "--format",
            "json",
            "--",
            "/bin/true",
        ],
    ] {
        let (r, w) = nix::unistd::pipe().unwrap();
        drop(r);
        let st = Command::new(BIN)
            .args(&args)
            .current_dir(fx.path("work"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(w))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&st.stderr);
        assert!(
            st.status.code().is_some_and(|c| c == 0 || c == 69),
            "{args:?}: {:?} {err}",
            st.status
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

// --- 4. systemd socket activation -------------------------------------------------------------

/// The wrapper moves the listener from stdin to fd 3 and sets LISTEN_PID to its own pid, which
/// is stockade's after exec (`1` as PID 1), as systemd does.
const ACTIVATE: [&str; 4] = [
    "/bin/sh",
    "-c",
    "exec 3<&0 0</dev/null; export LISTEN_PID=$$; exec \"$@\"",
    "sh",
];

fn socket_inode(fd: &impl std::os::fd::AsFd) -> u64 {
    let f = std::fs::File::from(fd.as_fd().try_clone_to_owned().unwrap());
    f.metadata().unwrap().ino()
}

#[test]
fn socket_activation_reaches_the_server() {
    let fx = Fx::new();
    for mode in ALL {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let ino = socket_inode(&listener);
        let p = fx.profile(mode, "", "");
        let probe = fx.probe();
        let mut c = command(
            mode,
            p.to_str().unwrap(),
            &[&probe, "listen-fds"],
            &ACTIVATE,
        );
        c.stdin(Stdio::from(OwnedFd::from(listener)))
            .env("LISTEN_FDS", "1")
            .env("LISTEN_FDNAMES", "web");
        let run = Run::start(c, mode);
        let server = run.server(&probe);
        // From outside: the server's fd 3 is our listening socket; its own pid (in its PID
        // namespace) is the last NSpid field.
        let fd3 = wait_until(Duration::from_secs(5), || {
            std::fs::read_link(format!("/proc/{server}/fd/3")).ok()
        })
        .unwrap();
        assert_eq!(fd3, PathBuf::from(format!("socket:[{ino}]")), "{mode:?}");
        let ns_pid: String = common::status(server)["NSpid"]
            .split_whitespace()
            .last()
            .unwrap()
            .to_string();
        // The server accepts on fd 3, under Landlock with no bind rule for this port.
        let conn = std::net::TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut line = String::new();
        BufReader::new(conn).read_line(&mut line).unwrap();
        assert_eq!(
            line.trim(),
            format!("pid={ns_pid} listen_pid={ns_pid}"),
            "{mode:?}"
        );
        let (st, out, err) = run.finish(Duration::from_secs(10));
        assert_eq!(st.code(), Some(0), "{mode:?}: {err}");
        assert_eq!(
            out.lines().next().unwrap_or(""),
            format!("pid={ns_pid} LISTEN_PID={ns_pid} LISTEN_FDS=1 LISTEN_FDNAMES=web"),
            "{mode:?}"
        );
    }
}

/// LISTEN_PID naming another process (the variables were left for someone else), or a profile
/// whose env.deny_prefixes covers LISTEN_: nothing reaches the server, fd 3 is closed.
#[test]
fn socket_activation_for_someone_else_is_ignored() {
    let fx = Fx::new();
    let other_pid = [
        "/bin/sh",
        "-c",
        "exec 3<&0 0</dev/null; export LISTEN_PID=$(($$ + 1)); exec \"$@\"",
        "sh",
    ];
    for mode in ALL {
        for (wrapper, env) in [
            (&other_pid[..], ""),
            (&ACTIVATE[..], "deny_prefixes = [\"LISTEN_\"]"),
        ] {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let p = fx.profile(mode, "", env);
            let mut c = command(
                mode,
                p.to_str().unwrap(),
                &[&fx.probe(), "listen-fds"],
                wrapper,
            );
            c.stdin(Stdio::from(OwnedFd::from(listener)))
                .env("LISTEN_FDS", "1");
            let (st, out, err) = run(c, mode);
            assert_eq!(st.code(), Some(0), "{mode:?} {env}: {err}");
            let out: Vec<&str> = out.lines().collect();
            assert!(
                out[0].ends_with("LISTEN_PID=- LISTEN_FDS=- LISTEN_FDNAMES=-"),
                "{mode:?} {env}: {out:?}"
            );
            assert_eq!(out[1], "errno=EBADF", "{mode:?} {env}");
        }
    }
}

/// LISTEN_FDS names an fd that is not open: refused before anything starts, naming the fd.
#[test]
fn socket_activation_with_a_missing_fd_is_refused() {
    let fx = Fx::new();
    for mode in ALL {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = fx.profile(mode, "", "");
        let mut c = command(
            mode,
            p.to_str().unwrap(),
            &[&fx.probe(), "listen-fds"],
            &ACTIVATE,
        );
        c.stdin(Stdio::from(OwnedFd::from(listener)))
            .env("LISTEN_FDS", "2");
        let (st, out, err) = run(c, mode);
        assert_eq!(st.code(), Some(64), "{mode:?}: {err}");
        assert!(
            err.contains("stockade: usage: socket activation: LISTEN_FDS=2 but fd 4 is not open"),
            "{mode:?}: {err}"
        );
        assert_eq!(out, "", "{mode:?}: the server ran");
    }
}
