//! End-to-end tests against the REAL tritonserver (2.51, CPU, python backend) confined by the
//! REAL stockade binary with the built-in `--profile triton`.
//!
//! Requirements: root, Triton installed by `scripts/install-triton.sh` (default
//! /opt/stockade/triton, or `STOCKADE_TRITON_DIR`). A missing install is a failure, never a skip.
//!
//! Cost control (2 cores): three servers in total, one per test function that needs one; the
//! functions run in parallel on different ports and temp dirs. Server *start-up* (spawn until
//! ready) is serialized by a lock so that the artifacts of one instance (python_env dirs, the
//! admin secret file, which every start rewrites) can be attributed to it.
//!
//! Every wait is bounded; a `Drop` guard kills the stockade we started (and the recorded
//! processes of its tree, by pid + start time) when a test fails.
//!
//! Run: `cargo test --test triton_e2e -- --nocapture` (prints timings).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant};

mod common;
use common::procs::listening;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const STOCKADE: &str = env!("CARGO_BIN_EXE_stockade");
const NOBODY: u32 = 65534;
const SECRET_FILE: &str = "/run/stockade/triton-admin.secret";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Triton drains in ~2-3 s; the profile's grace is 60 s, exit-timeout-secs 30.
const STOP_TIMEOUT: Duration = Duration::from_secs(45);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
const EXPECTED_SUM: &str = "OK [11.0, 22.0, 33.0, 44.0]";

// ------------------------------------------------------------------------------- environment

struct Triton {
    server: PathBuf,
    backends: PathBuf,
    python: PathBuf,
    path: String,
}

fn triton() -> &'static Triton {
    static T: OnceLock<Triton> = OnceLock::new();
    T.get_or_init(|| {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the Triton end-to-end tests need root (stockade drops to uid 65534); run them as root"
        );
        let dir = PathBuf::from(
            std::env::var_os("STOCKADE_TRITON_DIR")
                .unwrap_or_else(|| "/opt/stockade/triton".into()),
        );
        let hint = format!(
            "Triton is not installed in {d}: run `scripts/install-triton.sh {d}` (as root) first, \
             or point STOCKADE_TRITON_DIR at an install",
            d = dir.display()
        );
        let env_sh = fs::read_to_string(dir.join("env.sh"))
            .unwrap_or_else(|e| panic!("{hint} (cannot read {}/env.sh: {e})", dir.display()));
        let vars: BTreeMap<String, String> = env_sh
            .lines()
            .filter_map(|l| l.trim().strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.trim_matches('\'').trim_matches('"').to_string(),
                )
            })
            .collect();
        let get = |k: &str| {
            vars.get(k)
                .cloned()
                .unwrap_or_else(|| panic!("{hint} ({}/env.sh has no {k})", dir.display()))
        };
        let t = Triton {
            server: PathBuf::from(get("TRITONSERVER")),
            backends: PathBuf::from(get("TRITON_BACKENDS")),
            python: PathBuf::from(get("TRITON_PYTHON")),
            path: get("TRITON_PATH"),
        };
        for (what, p) in [("tritonserver", &t.server), ("venv python", &t.python)] {
            let ok =
                fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
            assert!(
                ok,
                "{hint} ({what} {} is missing or not executable)",
                p.display()
            );
        }
        assert!(
            t.backends.join("python/libtriton_python.so").is_file(),
            "{hint} (no python backend in {})",
            t.backends.display()
        );
        t
    })
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/triton")
}

fn startup_lock() -> MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(|e| e.into_inner())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tempdir(prefix: &str, mode: u32) -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(mode)).unwrap();
    d
}

fn copy_tree(src: &Path, dst: &Path) {
    fs::create_dir(dst).unwrap();
    fs::set_permissions(dst, fs::Permissions::from_mode(0o755)).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == "__pycache__" {
            continue;
        }
        let to = dst.join(&name);
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to);
        } else {
            fs::copy(e.path(), &to).unwrap();
            fs::set_permissions(&to, fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}

/// A fresh model repository: `<0755 tmp>/models` (root-owned, go-w), plus
/// `models/probe/1/scratch/` owned by 65534 holding `victim` (65534, 0644): file permissions
/// would let the server write there, so only Landlock can refuse it.
struct Repo {
    _dir: tempfile::TempDir,
    models: PathBuf,
    scratch: PathBuf,
}

fn make_repo() -> Repo {
    let dir = tempdir("stockade-e2e-", 0o755);
    let models = dir.path().join("models");
    copy_tree(&fixtures().join("models"), &models);
    let scratch = models.join("probe/1/scratch");
    fs::create_dir(&scratch).unwrap();
    fs::write(scratch.join("victim"), "victim\n").unwrap();
    // Native code shipped inside a model: a real shared library the server could map.
    let lib = fs::canonicalize("/lib/x86_64-linux-gnu/libz.so.1").unwrap();
    fs::copy(lib, models.join("probe/1/libshipped.so")).unwrap();
    for p in [&scratch, &scratch.join("victim")] {
        std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    Repo {
        _dir: dir,
        models,
        scratch,
    }
}

// --------------------------------------------------------------------------------- processes

/// Output of a bounded run.
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` (stdout/stderr captured) and kills it after `timeout`. `poll` is called with the
/// child's pid while it runs.
fn run_bounded(mut cmd: Command, timeout: Duration, mut poll: impl FnMut(i32)) -> Out {
    let desc = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
    let pid = child.id() as i32;
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    let so = reader(Box::new(child.stdout.take().unwrap()));
    let se = reader(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        poll(pid);
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("timed out after {timeout:?}: {desc}");
        }
        sleep(Duration::from_millis(5));
    };
    Out {
        code: status.code(),
        stdout: so.join().unwrap(),
        stderr: se.join().unwrap(),
    }
}

/// `client.py ARGS` under the venv python; returns (exit code, stdout trimmed, stderr).
fn client(args: &[&str]) -> (i32, String, String) {
    let mut c = Command::new(&triton().python);
    c.arg(fixtures().join("client.py")).args(args);
    let o = run_bounded(c, CLIENT_TIMEOUT, |_| {});
    (o.code.unwrap_or(-1), o.stdout.trim().to_string(), o.stderr)
}

fn proc_status(pid: i32) -> BTreeMap<String, String> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Start time (clock ticks since boot) of `pid`, None if it does not exist.
fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Children of every thread of `pid`.
fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let f = t.path().join("children");
            if let Ok(s) = fs::read_to_string(f) {
                out.extend(s.split_whitespace().filter_map(|x| x.parse::<i32>().ok()));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = children(pid);
    while let Some(p) = todo.pop() {
        out.push(p);
        todo.extend(children(p));
    }
    out
}

fn exe(pid: i32) -> String {
    fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn cmdline(pid: i32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

fn environ_names(pid: i32) -> BTreeMap<String, String> {
    fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/environ: {e}"))
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let s = String::from_utf8_lossy(s);
            let (k, v) = s.split_once('=').unwrap_or((&s, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn ns(pid: i32, kind: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// `pid` as seen inside its own (innermost) PID namespace.
fn inner_pid(pid: i32) -> i32 {
    proc_status(pid)["NSpid"]
        .split_whitespace()
        .last()
        .unwrap()
        .parse()
        .unwrap()
}

/// Does a process whose innermost pid is `n` exist in the PID namespace `pidns`?
fn pid_in_ns(pidns: &str, n: i32) -> bool {
    let n = n.to_string();
    fs::read_dir("/proc").unwrap().flatten().any(|e| {
        let Some(p) = e.file_name().to_str().and_then(|x| x.parse::<i32>().ok()) else {
            return false;
        };
        ns(p, "pid") == pidns
            && fs::read_to_string(format!("/proc/{p}/status")).is_ok_and(|st| {
                st.lines()
                    .any(|l| l.starts_with("NSpid:") && l.split_whitespace().last() == Some(&n))
            })
    })
}

/// Mount options of the mount at exactly `path` in `pid`'s mount namespace (None: not a
/// mount point there).
fn mount_opts(pid: i32, path: &Path) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
    let want = path.display().to_string();
    text.lines()
        .rev()
        .find(|l| l.split_whitespace().nth(4) == Some(want.as_str()))
        .map(|l| l.split_whitespace().nth(5).unwrap_or("").to_string())
}

/// Is the /proc the server sees mounted for its own PID namespace? (Its pid 1 there is then
/// its namespace's init, not the host's.)
fn proc_is_private(s: &Server) -> bool {
    let init = format!("/proc/{}/root/proc/1/ns/pid", s.server_pid);
    fs::read_link(init).is_ok_and(|l| l.display().to_string() == ns(s.server_pid, "pid"))
}

fn ppid(pid: i32) -> i32 {
    proc_status(pid)["PPid"].parse().unwrap()
}

/// HTTP status of `GET path` on 127.0.0.1:port, None on transport error.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// Names of the python_env_* directories owned by 65534 in `dir`.
fn python_envs(dir: &str) -> BTreeSet<String> {
    fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.metadata().is_ok_and(|m| m.uid() == NOBODY))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("python_env_"))
                .collect()
        })
        .unwrap_or_default()
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// -------------------------------------------------------------------------------- the server

/// One stockade (`--profile triton`) + its tritonserver. Drop kills whatever is still running.
struct Server {
    child: Child,
    pid: i32,
    http: u16,
    grpc: u16,
    repo: Repo,
    logs: tempfile::TempDir,
    /// Every process below stockade when ready (an inner PID-1 stockade if stockade uses a PID
    /// namespace, tritonserver, the python stubs): (pid, start time).
    tree: Vec<(i32, u64)>,
    server_pid: i32,
    stub_pids: Vec<i32>,
    /// The server's parent: stockade, or its PID-1 half inside a new PID namespace.
    supervisor_pid: i32,
    /// Names of this instance's shm regions (/dev/shm) and python_env_* dirs (/tmp), as seen
    /// by the server (its /tmp and /dev/shm may be private to it).
    shm: Vec<String>,
    pyenv: Vec<String>,
    ready_after: Duration,
    /// The admin secret file's content/metadata read right after this server became ready
    /// (under the start-up lock, before any other instance could rewrite it).
    secret: String,
    secret_meta: Option<fs::Metadata>,
    /// `--dry-run` of the same command line, run under the lock: (stdout, stderr, exit code,
    /// secret file content afterwards).
    dry_run: Option<(String, String, Option<i32>, String)>,
    exited: Option<ExitStatus>,
}

struct Opts<'a> {
    extra_args: &'a [&'a str],
    extra_env: &'a [(&'a str, &'a str)],
    with_dry_run: bool,
}

const PLAIN: Opts<'static> = Opts {
    extra_args: &[],
    extra_env: &[],
    with_dry_run: false,
};

fn stockade_cmd(t: &Triton, args: &[String], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(STOCKADE);
    c.env_clear()
        .env("PATH", &t.path)
        .env("STOCKADE_LOG", "info")
        .envs(env.iter().copied())
        .current_dir("/")
        .args(["--profile", "triton"]);
    c.args(args);
    c
}

impl Server {
    fn start(o: &Opts) -> Server {
        let t = triton();
        let repo = make_repo();
        let logs = tempdir("stockade-e2e-logs-", 0o700);
        let (http, grpc) = (free_port(), free_port());
        let mut args: Vec<String> = vec![
            "--".into(),
            t.server.display().to_string(),
            format!("--model-repository={}", repo.models.display()),
            format!("--backend-directory={}", t.backends.display()),
            "--allow-grpc=true".into(),
            format!("--http-port={http}"),
            format!("--grpc-port={grpc}"),
        ];
        args.extend(o.extra_args.iter().map(|s| s.to_string()));

        let lock = startup_lock();
        // python_env_* names already in the host's /tmp: a shared /tmp may hold other servers'
        // directories (start-ups are serialized, so what appears now is this instance's).
        let pyenv_before = python_envs("/tmp");
        let mut cmd = stockade_cmd(t, &args, o.extra_env);
        cmd.stdin(Stdio::null())
            .stdout(fs::File::create(logs.path().join("stdout")).unwrap())
            .stderr(fs::File::create(logs.path().join("stderr")).unwrap());
        let t0 = Instant::now();
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {STOCKADE}: {e}"));
        let pid = child.id() as i32;
        let mut s = Server {
            child,
            pid,
            http,
            grpc,
            repo,
            logs,
            tree: Vec::new(),
            server_pid: 0,
            stub_pids: Vec::new(),
            supervisor_pid: 0,
            shm: Vec::new(),
            pyenv: Vec::new(),
            ready_after: Duration::ZERO,
            secret: String::new(),
            secret_meta: None,
            dry_run: None,
            exited: None,
        };
        // Ready = HTTP /v2/health/ready 200 (strict readiness: every model loaded), bounded,
        // while watching stockade: a refused start or a dying server must not wait 60 s.
        loop {
            if let Some(st) = s.child.try_wait().unwrap() {
                s.exited = Some(st);
                panic!(
                    "stockade exited ({st}) before Triton was ready; log tail:\n{}",
                    tail(&s.log(), 30)
                );
            }
            if http_status(http, "/v2/health/ready") == Some(200) {
                break;
            }
            assert!(
                t0.elapsed() < READY_TIMEOUT,
                "Triton not ready after {READY_TIMEOUT:?}; log tail:\n{}",
                tail(&s.log(), 30)
            );
            sleep(Duration::from_millis(20));
        }
        s.ready_after = t0.elapsed();

        // The tree: stockade [-> stockade (PID 1 of a new PID namespace)] -> tritonserver ->
        // stubs. Every process below stockade is recorded (pid + start time).
        let server_exe = fs::canonicalize(&t.server).unwrap().display().to_string();
        let stockade_exe = fs::canonicalize(STOCKADE).unwrap().display().to_string();
        let below = descendants(pid);
        let servers: Vec<i32> = below
            .iter()
            .copied()
            .filter(|p| exe(*p) == server_exe)
            .collect();
        assert_eq!(
            servers.len(),
            1,
            "expected one tritonserver below stockade {pid}: {below:?}"
        );
        s.server_pid = servers[0];
        s.supervisor_pid = ppid(s.server_pid);
        if s.supervisor_pid != pid {
            assert_eq!(
                ppid(s.supervisor_pid),
                pid,
                "tritonserver's parent is not below stockade"
            );
            assert_eq!(
                exe(s.supervisor_pid),
                stockade_exe,
                "tritonserver's parent is not stockade"
            );
            assert_eq!(
                inner_pid(s.supervisor_pid),
                1,
                "an inner stockade must be PID 1"
            );
        }
        for &p in &below {
            if let Some(st) = start_time(p) {
                s.tree.push((p, st));
            }
        }
        for p in descendants(s.server_pid) {
            let is_stub = exe(p).ends_with("/triton_python_backend_stub")
                || cmdline(p)
                    .first()
                    .is_some_and(|a| a.ends_with("triton_python_backend_stub"));
            if is_stub {
                s.stub_pids.push(p);
                // argv[2] is the stub's shm region name.
                for a in cmdline(p) {
                    if a.starts_with("triton_python_backend_shm_region") {
                        let inside = format!("/proc/{p}/root/dev/shm/{a}");
                        assert!(
                            Path::new(&inside).exists(),
                            "stub shm region {inside} missing"
                        );
                        s.shm.push(a);
                    }
                }
            }
        }
        assert_eq!(
            s.stub_pids.len(),
            2,
            "expected 2 python stubs (add, probe) under tritonserver"
        );
        assert_eq!(s.shm.len(), 2, "expected one shm region per stub");
        s.pyenv = python_envs(&format!("/proc/{}/root/tmp", s.server_pid))
            .difference(&pyenv_before)
            .cloned()
            .collect();

        // Admin secret: this start wrote it; nobody else can have rewritten it yet.
        s.secret = fs::read_to_string(SECRET_FILE)
            .unwrap_or_else(|e| panic!("stockade did not write {SECRET_FILE}: {e}"))
            .trim_end()
            .to_string();
        s.secret_meta = Some(fs::metadata(SECRET_FILE).unwrap());
        if o.with_dry_run {
            let mut dargs = vec!["--dry-run".to_string()];
            dargs.extend(args.iter().cloned());
            let out = run_bounded(stockade_cmd(t, &dargs, o.extra_env), CLIENT_TIMEOUT, |_| {});
            let after = fs::read_to_string(SECRET_FILE)
                .unwrap_or_default()
                .trim_end()
                .to_string();
            s.dry_run = Some((out.stdout, out.stderr, out.code, after));
        }
        drop(lock);
        s
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    fn grpc_addr(&self) -> String {
        format!("127.0.0.1:{}", self.grpc)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.logs.path().join("stderr")).unwrap_or_default()
    }

    fn stdout(&self) -> String {
        fs::read_to_string(self.logs.path().join("stdout")).unwrap_or_default()
    }

    fn probe(&self, op: &str, arg: &str) -> String {
        let (code, out, err) = client(&["http-probe", &self.url(), op, arg]);
        assert_eq!(code, 0, "probe {op} {arg}: client failed: {out} {err}");
        out
    }

    fn running(&mut self) -> bool {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().unwrap();
        }
        self.exited.is_none()
    }

    /// SIGTERM to stockade; waits (bounded) for it. Returns its status and the drain time.
    fn stop(&mut self) -> (ExitStatus, Duration) {
        assert!(self.running(), "stockade already exited: {:?}", self.exited);
        let t0 = Instant::now();
        kill(Pid::from_raw(self.pid), Signal::SIGTERM).unwrap();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                self.exited = Some(st);
                return (st, t0.elapsed());
            }
            assert!(
                t0.elapsed() < STOP_TIMEOUT,
                "stockade still running {STOP_TIMEOUT:?} after SIGTERM; log tail:\n{}",
                tail(&self.log(), 30)
            );
            sleep(Duration::from_millis(20));
        }
    }

    /// Processes of the recorded tree that still exist (same pid AND start time).
    fn survivors(&self) -> Vec<i32> {
        self.tree
            .iter()
            .filter(|(p, st)| start_time(*p) == Some(*st))
            .map(|(p, _)| *p)
            .collect()
    }

    /// Host paths of this instance's shm regions and python_env dirs.
    fn leftovers(&self) -> Vec<PathBuf> {
        let shm = self.shm.iter().map(|n| Path::new("/dev/shm").join(n));
        let tmp = self.pyenv.iter().map(|n| Path::new("/tmp").join(n));
        shm.chain(tmp).collect()
    }

    /// After stop(): nothing of this instance is left (bounded wait for reaping).
    fn assert_nothing_left(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.survivors().is_empty() && Instant::now() < deadline {
            sleep(Duration::from_millis(50));
        }
        assert_eq!(
            self.survivors(),
            Vec::<i32>::new(),
            "processes of the tree survived"
        );
        for p in self.leftovers() {
            assert!(!p.exists(), "{} left behind", p.display());
        }
    }

    /// `path` (absolute) in the server's mount namespace, for checks from outside.
    fn in_server(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{path}", self.server_pid))
    }

    fn stop_cleanly(&mut self) -> Duration {
        let (st, took) = self.stop();
        assert_eq!(
            st.code(),
            Some(0),
            "stockade should exit 0 after SIGTERM (Triton drained), got {st}; log tail:\n{}",
            tail(&self.log(), 30)
        );
        self.assert_nothing_left();
        took
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let keep = format!(
                "/tmp/stockade-e2e-failed-{}-{}.log",
                std::process::id(),
                self.http
            );
            if fs::copy(self.logs.path().join("stderr"), &keep).is_ok() {
                eprintln!("stockade's full stderr kept in {keep}");
            }
        }
        if self.running() {
            // Failure path: kill only what this test started (pid + start time match).
            for p in self.survivors() {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
            let _ = self.child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while !self.survivors().is_empty() && Instant::now() < deadline {
            for p in self.survivors() {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            sleep(Duration::from_millis(20));
        }
        for p in self.leftovers() {
            let _ = fs::remove_file(&p);
            let _ = fs::remove_dir_all(&p);
        }
        let _ = &self.repo;
    }
}

// ------------------------------------------------------------------------------- assertions

fn assert_confined(pid: i32, what: &str) {
    let st = proc_status(pid);
    let get = |k: &str| {
        st.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("{what}: no {k} in status"))
    };
    let ids = |k: &str| {
        get(k)
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids("Uid"), vec!["65534"; 4], "{what} ({pid}) Uid");
    assert_eq!(ids("Gid"), vec!["65534"; 4], "{what} ({pid}) Gid");
    assert_eq!(get("Groups"), "", "{what} ({pid}) Groups");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(get(cap), "0000000000000000", "{what} ({pid}) {cap}");
    }
    assert_eq!(get("NoNewPrivs"), "1", "{what} ({pid}) NoNewPrivs");
    assert_eq!(get("Seccomp"), "2", "{what} ({pid}) Seccomp");
}

fn assert_infer(s: &Server) {
    let (c, out, err) = client(&["http-infer", &s.url(), "add"]);
    assert_eq!((c, out.as_str()), (0, EXPECTED_SUM), "HTTP infer: {err}");
    let (c, out, err) = client(&["grpc-infer", &s.grpc_addr(), "add"]);
    assert_eq!((c, out.as_str()), (0, EXPECTED_SUM), "gRPC infer: {err}");
}

// ------------------------------------------------------------------------------------ tests

/// Serves over HTTP and gRPC; server and stubs confined; environment scrubbed; only the two
/// requested loopback listeners; SIGTERM drains and leaves nothing behind.
/// One real server at a time: every start rewrites the shared admin secret file, and on 2 cores
/// parallel servers only make timing noise (and free-port races).
fn serial() -> MutexGuard<'static, ()> {
    static S: Mutex<()> = Mutex::new(());
    S.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn serves_confined_with_scrubbed_env_and_stops_cleanly() {
    let _serial = serial();
    let hostile_env = [
        ("AIP_MODE", "PREDICTION"),
        ("AIP_STORAGE_URI", "/somewhere"),
        ("TRITON_SERVER_CPU_ONLY", "1"),
        ("LD_PRELOAD", "/nonexistent.so"),
    ];
    let mut s = Server::start(&Opts {
        extra_env: &hostile_env,
        ..PLAIN
    });
    println!(
        "[serves] time-to-ready {:.3} s",
        s.ready_after.as_secs_f64()
    );

    // AIP_MODE=PREDICTION would have turned HTTP and gRPC off: both answer.
    assert_infer(&s);

    // Confinement, read from outside.
    let via = if s.supervisor_pid == s.pid {
        String::new()
    } else {
        format!(
            "stockade (PID 1 of a new PID namespace) {} -> ",
            s.supervisor_pid
        )
    };
    println!(
        "[serves] stockade {} -> {via}tritonserver {} -> stubs {:?}; shm {:?}; python_env {:?}",
        s.pid, s.server_pid, s.stub_pids, s.shm, s.pyenv
    );
    for &p in &s.stub_pids {
        assert_eq!(
            ppid(p),
            s.server_pid,
            "stub {p} is not tritonserver's child"
        );
    }
    assert_confined(s.server_pid, "tritonserver");
    for &p in &s.stub_pids {
        assert_confined(p, "python stub");
    }
    // ... and from inside (gRPC transport for the probe this time).
    let (c, out, err) = client(&["grpc-probe", &s.grpc_addr(), "uid", ""]);
    assert_eq!(c, 0, "{err}");
    assert!(
        out.starts_with("uid=65534 gid=65534 groups= nnp=1 seccomp=2 capeff=0000000000000000"),
        "probe uid: {out}"
    );

    // Environment: nothing hostile reaches the server or the stubs.
    let forbidden = |k: &str| {
        [
            "AIP_", "TRITON", "LD_", "PYTHON", "OTEL_", "AWS_", "GOOGLE_", "AZURE_",
        ]
        .iter()
        .any(|p| k.starts_with(p))
    };
    let env = environ_names(s.server_pid);
    let names: BTreeSet<&str> = env.keys().map(String::as_str).collect();
    assert!(
        names.is_subset(&BTreeSet::from(["PATH", "HOME", "LANG", "LC_ALL", "TZ"])),
        "server environment has unexpected names: {names:?}"
    );
    assert_eq!(env.get("HOME").map(String::as_str), Some("/nonexistent"));
    assert_eq!(env.get("PATH"), Some(&triton().path));
    for &p in &s.stub_pids {
        let bad: Vec<String> = environ_names(p)
            .into_keys()
            .filter(|k| forbidden(k))
            .collect();
        assert!(bad.is_empty(), "stub {p} environment has {bad:?}");
    }
    for src in ["os", "proc"] {
        let names = s.probe("environ", src);
        assert!(
            !names.starts_with("error") && names.contains("PATH"),
            "environ {src}: {names}"
        );
        let bad: Vec<&str> = names.split(',').filter(|k| forbidden(k)).collect();
        assert!(
            bad.is_empty(),
            "stub environment ({src}) has {bad:?}: {names}"
        );
    }
    let log = s.log();
    let scrub_line = log
        .lines()
        .find(|l| l.contains("do not reach the server"))
        .unwrap_or_else(|| {
            panic!(
                "no scrubbed-environment line in the log:\n{}",
                tail(&log, 40)
            )
        });
    for (k, _) in hostile_env {
        assert!(
            scrub_line.contains(k),
            "{k} not reported as scrubbed: {scrub_line}"
        );
    }

    // Listeners: exactly the HTTP and gRPC ports on loopback (no Vertex AI on 8080, no
    // SageMaker, no metrics); the stubs listen on nothing.
    let expected = BTreeSet::from([
        format!("127.0.0.1:{}", s.http),
        format!("127.0.0.1:{}", s.grpc),
    ]);
    assert_eq!(listening(s.server_pid), expected, "tritonserver listeners");
    for &p in &s.stub_pids {
        assert_eq!(listening(p), BTreeSet::new(), "stub {p} listeners");
    }
    for svc in ["Vertex", "Sagemaker", "SageMaker", "Metrics Service"] {
        assert!(
            !log.contains(&format!("Started {svc}")),
            "Triton started {svc}"
        );
    }
    assert!(
        log.contains(&format!("Started HTTPService at 127.0.0.1:{}", s.http)),
        "HTTP start line"
    );
    assert!(log.contains(&format!(
        "Started GRPCInferenceService at 127.0.0.1:{}",
        s.grpc
    )));

    // SIGTERM: Triton drains, stockade exits 0, nothing left.
    let took = s.stop_cleanly();
    println!("[serves] SIGTERM -> exit 0 in {:.3} s", took.as_secs_f64());
    assert!(
        took < Duration::from_secs(60),
        "exceeded the profile's 60 s grace"
    );
    assert!(
        s.log().contains("Found 0 live models"),
        "Triton did not report a drain"
    );
}

/// The `probe` model plays a compromised server: every escape is refused, the allowed
/// operations still work, and stockade survives the attempts.
#[test]
fn compromised_model_is_contained() {
    let _serial = serial();
    let mut s = Server::start(&PLAIN);
    println!("[probe] time-to-ready {:.3} s", s.ready_after.as_secs_f64());
    let t = triton();
    let models = s.repo.models.clone();
    let m = |p: &str| models.join(p).display().to_string();
    let scratch = s.repo.scratch.clone();
    let sc = |p: &str| scratch.join(p).display().to_string();
    let backends = t.backends.display().to_string();
    // Unique names in the server's /tmp and /dev/shm (private to it, or the host's).
    let tag = format!("stockade-e2e-{}-{}", std::process::id(), s.http);
    let tp = |p: &str| format!("/tmp/{tag}-{p}");

    // The repository is read-only through Landlock (EACCES), or through a read-only bind mount
    // in a private mount namespace (EROFS: the VFS refuses before Landlock is asked).
    let repo_ro_mount =
        mount_opts(s.server_pid, &models).is_some_and(|o| o.split(',').any(|x| x == "ro"));
    let repo_err = if repo_ro_mount {
        "errno=EROFS"
    } else {
        "errno=EACCES"
    };
    println!("[probe] repository read-only mount in the server's namespace: {repo_ro_mount}");
    // Started as root, the triton profile mounts the repository ro,noexec,nosuid,nodev and gives
    // the server fresh noexec tmpfs /tmp and /dev/shm: Landlock governs execve, not mmap, so the
    // noexec mount is what stops a model's own library from being mapped executable.
    let opts = |p: &str| mount_opts(s.server_pid, Path::new(p)).unwrap_or_default();
    for flag in ["ro", "noexec", "nosuid", "nodev"] {
        assert!(
            opts(&models.display().to_string())
                .split(',')
                .any(|x| x == flag),
            "repository mount lacks {flag}: {}",
            opts(&models.display().to_string())
        );
    }
    for p in ["/tmp", "/dev/shm"] {
        assert!(
            opts(p).split(',').any(|x| x == "noexec"),
            "{p}: {}",
            opts(p)
        );
    }
    assert_eq!(
        s.probe("dlopen", &m("probe/1/libshipped.so")),
        "error=failed to map segment"
    );
    // The same library from the read-only, executable system directory maps fine.
    assert_eq!(s.probe("dlopen", "/lib/x86_64-linux-gnu/libz.so.1"), "ok");
    // With mounts.fresh_root the server's / is a read-only tmpfs holding only the listed paths:
    // the install prefix is a read-only bind (EROFS before Landlock), and the host's /run with
    // the admin secret is not there at all (ENOENT).
    let fresh_root = opts("/").split(',').any(|x| x == "ro");
    println!("[probe] fresh root: {fresh_root}");
    // Started as root, the triton profile builds one (mounts.fresh_root): no /run in the view.
    assert!(
        fresh_root,
        "the server's root is not the fresh read-only root: {}",
        opts("/")
    );
    let info = fs::read_to_string(format!("/proc/{}/mountinfo", s.server_pid)).unwrap();
    assert!(
        !info.lines().any(|l| l
            .split_whitespace()
            .nth(4)
            .is_some_and(|p| p == "/run" || p.starts_with("/run/"))),
        "{info}"
    );
    let (install_err, unlisted_err) = if fresh_root {
        ("errno=EROFS", "errno=ENOENT")
    } else {
        ("errno=EACCES", "errno=EACCES")
    };
    // A seccomp allow-list without rename(2) refuses every rename first (ENOSYS): also a
    // refusal, but it breaks the allowed rename in /tmp below, which is asserted.
    let repo_rename = format!("{repo_err}|errno=ENOSYS");

    // The probe's view of the tree: stub -> tritonserver -> launcher, in its PID namespace.
    // In a new PID namespace the probe reads the launcher from /proc/<server's pid there>/status,
    // which is only right if /proc was mounted for that namespace: then also check `launcher`.
    let server_ns = ns(s.server_pid, "pid");
    let own_proc = server_ns == ns(std::process::id() as i32, "pid") || proc_is_private(&s);
    let view = s.probe("ppid", "");
    let mut want = format!("server={}", inner_pid(s.server_pid));
    if own_proc {
        want = format!("{want} launcher={}", inner_pid(s.supervisor_pid));
    } else {
        println!("[probe] NOTE: the server's /proc shows another PID namespace: {view}");
    }
    let ok = s.stub_pids.iter().any(|p| {
        let head = format!("stub={} {want}", inner_pid(*p));
        view == head || (!own_proc && view.starts_with(&format!("{head} ")))
    });
    assert!(
        ok,
        "probe's view of the process tree: {view}, want stub=<stub> {want}"
    );

    let mut cases: Vec<(&str, String, &str)> = vec![
        // Model repository (root-owned part: file permissions refuse too).
        ("write", m("evil.txt"), repo_err),
        ("mkdir", m("evil_model"), repo_err),
        ("unlink", m("add/config.pbtxt"), repo_err),
        (
            "rename",
            format!("{}:{}", m("add/config.pbtxt"), m("add/x")),
            &repo_rename,
        ),
        ("write", m("add/1/model.py"), repo_err),
        // The scratch dir is owned by 65534: file permissions would allow all of this.
        ("write", sc("evil.txt"), repo_err),
        ("write", sc("victim"), repo_err),
        ("mkdir", sc("d"), repo_err),
        ("unlink", sc("victim"), repo_err),
        (
            "rename",
            format!("{}:{}", sc("victim"), sc("moved")),
            &repo_rename,
        ),
        // Backend directory.
        ("write", format!("{backends}/evil.so"), install_err),
        ("write", format!("{backends}/python/model.py"), install_err),
        ("mkdir", format!("{backends}/evil"), install_err),
        // Writable temp space is not executable: the copy works, the exec is refused.
        (
            "copy_exec",
            format!("/bin/true:{}", tp("true")),
            "errno=EACCES",
        ),
        (
            "copy_exec",
            format!("/bin/true:/dev/shm/{tag}-true"),
            "errno=EACCES",
        ),
        // Network: no other listener.
        ("bind", "0".into(), "errno=EACCES"),
        ("bind", free_port().to_string(), "errno=EACCES"),
        // Signals to the launcher (its pid as the server sees it), and to PID 1.
        ("kill", "1:0".into(), "errno=EPERM"),
        ("kill", "1:TERM".into(), "errno=EPERM"),
        // Secrets of the host.
        ("read", "/etc/shadow".into(), "errno=EACCES"),
        ("read", SECRET_FILE.into(), unlisted_err),
        // Allowed: read the repository, write temp space, run the system's binaries.
        ("read", m("add/config.pbtxt"), "ok"),
        ("read", sc("victim"), "ok"),
        ("write", tp("allowed.txt"), "ok"),
        ("mkdir", tp("allowed_dir"), "ok"),
        (
            "rename",
            format!("{}:{}", tp("allowed.txt"), tp("renamed.txt")),
            "ok",
        ),
        ("exec", "/bin/true".into(), "ok"),
    ];
    // The server's parent (stockade, or its PID-1 half) through /proc, as an attacker would.
    if own_proc {
        cases.push(("killppid", "0".into(), "errno=EPERM"));
        cases.push(("killppid", "TERM".into(), "errno=EPERM"));
    }
    // stockade itself, by the pid it has in the server's PID namespace. If stockade put the
    // server in a new PID namespace it has no pid there: its host pid names nothing (ESRCH) --
    // unless some process of that namespace happens to have that number; then skip it.
    if ns(s.pid, "pid") == server_ns {
        cases.push(("kill", format!("{}:0", s.pid), "errno=EPERM"));
        cases.push(("kill", format!("{}:TERM", s.pid), "errno=EPERM"));
    } else if !pid_in_ns(&server_ns, s.pid) {
        cases.push(("kill", format!("{}:0", s.pid), "errno=ESRCH"));
        cases.push(("kill", format!("{}:TERM", s.pid), "errno=ESRCH"));
    } else {
        println!(
            "[probe] stockade's host pid {} exists inside the namespace: skipped",
            s.pid
        );
    }
    if s.supervisor_pid != s.pid {
        let inner = inner_pid(s.supervisor_pid);
        cases.push(("kill", format!("{inner}:0"), "errno=EPERM"));
        cases.push(("kill", format!("{inner}:TERM"), "errno=EPERM"));
    }
    // Outbound: the test listens; the probe's connect is refused and never arrives.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let lport = listener.local_addr().unwrap().port();
    cases.push(("connect", format!("127.0.0.1:{lport}"), "errno=EACCES"));
    cases.push(("connect", format!("127.0.0.1:{}", s.http), "errno=EACCES"));

    let mut failures = Vec::new();
    for (op, arg, want) in &cases {
        let got = s.probe(op, arg);
        println!("[probe] {op} {arg} -> {got}");
        if !want.split('|').any(|w| w == got) {
            failures.push(format!("{op} {arg}: got {got}, want {want}"));
        }
    }
    // Information leak: the server must not read the command line of an unrelated host process
    // (where, e.g., another Triton keeps its admin secret). stockade gives the server its own
    // PID namespace and a fresh /proc (hidepid=invisible) when it starts as root.
    let mut other = Command::new("sleep").arg("30").spawn().unwrap();
    let leak = s.probe("read", &format!("/proc/{}/cmdline", other.id()));
    let _ = other.kill();
    let _ = other.wait();
    println!("[probe] read /proc/<unrelated host process>/cmdline -> {leak}");
    if own_proc && server_ns != ns(std::process::id() as i32, "pid") && leak == "ok" {
        failures.push("the server can read a host process's command line".to_string());
    }
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => failures.push(format!("the test's listener saw a connection: {other:?}")),
    }

    // Side effects, checked from outside.
    if fs::read_to_string(sc("victim")).ok().as_deref() != Some("victim\n") {
        failures.push("scratch/victim was modified or removed".into());
    }
    if fs::read_dir(&scratch).unwrap().count() != 1 {
        failures.push("scratch dir gained entries".into());
    }
    for p in [m("evil.txt"), m("evil_model"), m("add/x")] {
        if Path::new(&p).exists() {
            failures.push(format!("{p} was created"));
        }
    }
    for p in [tp("true"), tp("allowed_dir"), tp("renamed.txt")] {
        let inside = s.in_server(&p);
        if !fs::metadata(&inside).is_ok_and(|md| md.uid() == NOBODY) {
            failures.push(format!(
                "{} missing (allowed operation had no effect)",
                inside.display()
            ));
        }
    }
    let _ = fs::remove_file(s.in_server(&tp("true")));
    let _ = fs::remove_file(s.in_server(&tp("renamed.txt")));
    let _ = fs::remove_dir(s.in_server(&tp("allowed_dir")));
    let _ = fs::remove_file(s.in_server(&format!("/dev/shm/{tag}-true")));
    assert!(
        failures.is_empty(),
        "containment failures:\n{}",
        failures.join("\n")
    );

    // stockade survived the signals and still serves.
    assert!(
        s.running(),
        "stockade died after the kill attempts: {:?}",
        s.exited
    );
    // Right after the attack burst Triton has been seen to answer one health request with 404
    // (also at b33bc58, never twice in a row): ask up to 10 times, 200 ms apart, and print what
    // came back first.
    let mut seen = Vec::new();
    for _ in 0..10 {
        let st = http_status(s.http, "/v2/health/ready");
        seen.push(st);
        if st == Some(200) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("[probe] health after the attacks: {seen:?}");
    assert_eq!(
        seen.last(),
        Some(&Some(200)),
        "health after the attacks: {seen:?}"
    );
    let (c, out, _) = client(&["http-infer", &s.url(), "add"]);
    assert_eq!((c, out.as_str()), (0, EXPECTED_SUM));

    let took = s.stop_cleanly();
    println!("[probe] SIGTERM -> exit 0 in {:.3} s", took.as_secs_f64());
}

/// Admin APIs are refused without the generated secret over HTTP and gRPC; the allowed ones
/// work with it; model load/unload stay impossible (mode none, even with `--id` eating a
/// `--model-control-mode=poll`); the secret is in a root 0600 file and nowhere in the logs.
#[test]
fn admin_apis_locked_behind_secret() {
    let _serial = serial();
    // `--id` takes the next element as its value (getopt): stockade accepts this command line
    // and keeps --model-control-mode=none; the load/unload checks below prove it on the server.
    let mut s = Server::start(&Opts {
        extra_args: &["--id", "--model-control-mode=poll"],
        with_dry_run: true,
        ..PLAIN
    });
    println!("[admin] time-to-ready {:.3} s", s.ready_after.as_secs_f64());
    let secret = s.secret.clone();

    // The secret file: root, 0600, in a root 0700 directory; 64 hex characters.
    let meta = s.secret_meta.clone().unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600, "secret file mode");
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "secret file owner");
    let dir = fs::metadata("/run/stockade").unwrap();
    assert_eq!(
        (dir.uid(), dir.mode() & 0o022),
        (0, 0),
        "/run/stockade owner/mode"
    );
    assert!(
        secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit()),
        "secret format"
    );
    // It is the secret this server runs with.
    let argv = cmdline(s.server_pid);
    let want = format!(":x-stockade-admin={secret}");
    for flag in ["--http-restricted-api=", "--grpc-restricted-protocol="] {
        let a = argv
            .iter()
            .find(|a| a.starts_with(flag))
            .unwrap_or_else(|| panic!("no {flag}"));
        assert!(
            a.ends_with(&want),
            "{flag} does not carry the file's secret"
        );
    }
    assert!(
        argv.iter().any(|a| a == "--model-control-mode=none"),
        "argv: {argv:?}"
    );
    assert!(
        argv.iter().any(|a| a == "--id=--model-control-mode=poll"),
        "argv: {argv:?}"
    );
    assert!(
        !argv
            .iter()
            .any(|a| a.contains("model-control-mode=poll") && !a.starts_with("--id="))
    );

    // Inference and health are not restricted.
    let (c, out, _) = client(&["http-infer", &s.url(), "add"]);
    assert_eq!((c, out.as_str()), (0, EXPECTED_SUM));

    // ---- HTTP
    let shm_body = r#"{"key":"/stockade_e2e","offset":0,"byte_size":64}"#;
    let calls: &[(&str, &str, Option<&str>)] = &[
        ("POST", "/v2/repository/models/add/load", None),
        ("POST", "/v2/repository/models/add/unload", None),
        ("POST", "/v2/repository/index", None),
        ("GET", "/v2/logging", None),
        ("POST", "/v2/logging", Some(r#"{"log_verbose_level":2}"#)),
        ("GET", "/v2/trace/setting", None),
        ("POST", "/v2/trace/setting", Some(r#"{"trace_rate":"5"}"#)),
        (
            "POST",
            "/v2/systemsharedmemory/region/e2e/register",
            Some(shm_body),
        ),
        ("GET", "/v2/systemsharedmemory/status", None),
        ("GET", "/v2/models/stats", None),
        ("GET", "/v2/models/add/stats", None),
        ("GET", "/v2/models/add/config", None),
    ];
    let http = |method: &str, path: &str, body: Option<&str>, header: Option<String>| {
        let mut a = vec!["http".to_string(), s.url(), method.into(), path.into()];
        if let Some(h) = header {
            a.extend(["--header".into(), h]);
        }
        if let Some(b) = body {
            a.extend(["--body".into(), b.into()]);
        }
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let (c, out, err) = client(&a);
        assert_eq!(c, 0, "client http {method} {path}: {err}");
        let (status, body) = out.split_once(' ').unwrap_or((&out, ""));
        (status.parse::<u16>().unwrap(), body.to_string())
    };
    let wrong = "x-stockade-admin=0000000000000000000000000000000000000000000000000000000000000000";
    for (method, path, body) in calls {
        for header in [
            None,
            Some(wrong.to_string()),
            Some(format!("x-stockade-admin-x={secret}")),
        ] {
            let (st, text) = http(method, path, *body, header.clone());
            assert_eq!(
                st, 403,
                "HTTP {method} {path} (header {header:?}) not refused: {text}"
            );
            assert!(text.contains("restricted"), "{method} {path}: {text}");
        }
    }
    let admin = Some(format!("x-stockade-admin={secret}"));
    let (st, text) = http("POST", "/v2/repository/index", None, admin.clone());
    assert_eq!(st, 200, "index with secret: {text}");
    assert!(
        text.contains(r#""name":"add""#) && text.contains(r#""state":"READY""#),
        "{text}"
    );
    for path in [
        "/v2/logging",
        "/v2/models/stats",
        "/v2/trace/setting",
        "/v2/models/add/config",
    ] {
        let (st, text) = http("GET", path, None, admin.clone());
        assert_eq!(st, 200, "GET {path} with secret: {text}");
    }
    for path in [
        "/v2/repository/models/add/load",
        "/v2/repository/models/add/unload",
    ] {
        let (st, text) = http("POST", path, None, admin.clone());
        assert_eq!(
            st, 503,
            "POST {path} with secret must still fail (mode none): {text}"
        );
        assert!(text.contains("not allowed"), "{path}: {text}");
    }

    // ---- gRPC (one client process per header variant)
    let actions = [
        "load",
        "unload",
        "repository-index",
        "log-settings",
        "trace-settings",
        "shm-register",
        "statistics",
        "model-config",
    ];
    let grpc = |header: Option<String>| -> BTreeMap<String, String> {
        let mut a = vec!["grpc-admin-many".to_string(), s.grpc_addr()];
        a.extend(actions.iter().map(|x| x.to_string()));
        if let Some(h) = header {
            a.extend(["--header".into(), h]);
        }
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let (c, out, err) = client(&a);
        assert_eq!(c, 0, "grpc-admin-many: {err}");
        out.lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let gkey = "triton-grpc-protocol-x-stockade-admin";
    for header in [
        None,
        Some(format!("x-stockade-admin={secret}")),
        Some(format!("{gkey}=nope-nope-nope-nope")),
    ] {
        let r = grpc(header.clone());
        for act in actions {
            let v = r
                .get(act)
                .unwrap_or_else(|| panic!("no gRPC answer for {act}: {r:?}"));
            assert!(
                v.starts_with("ERR UNAVAILABLE") && v.contains("restricted"),
                "gRPC {act} (header {header:?}) not refused: {v}"
            );
        }
    }
    let r = grpc(Some(format!("{gkey}={secret}")));
    for act in [
        "repository-index",
        "log-settings",
        "trace-settings",
        "statistics",
        "model-config",
    ] {
        assert!(
            r[act].starts_with("OK "),
            "gRPC {act} with secret: {}",
            r[act]
        );
    }
    for act in ["load", "unload"] {
        assert!(
            r[act].starts_with("ERR UNAVAILABLE") && r[act].contains("not allowed"),
            "gRPC {act} with secret must still fail (mode none): {}",
            r[act]
        );
    }
    // The model set is unchanged.
    assert!(r["repository-index"].contains(r#""name":"probe""#));
    let (c, out, _) = client(&["http-infer", &s.url(), "add"]);
    assert_eq!((c, out.as_str()), (0, EXPECTED_SUM));

    // The dry run of the same command line: redacted, secret file untouched.
    let (d_out, d_err, d_code, after) = s.dry_run.clone().unwrap();
    assert_eq!(d_code, Some(0), "dry run failed: {d_err}");
    assert!(
        d_out.contains("<redacted>"),
        "dry run shows no <redacted> secret:\n{d_out}"
    );
    assert!(
        !d_out.contains(&secret) && !d_err.contains(&secret),
        "dry run leaks the secret"
    );
    assert_eq!(after, secret, "--dry-run rewrote the secret file");
    // The secret is in the host's /proc (no hidepid here): uid 1 reads it, and stockade says so
    // in the dry run and at start, with the fix (issue 14 item 2).
    let read = Command::new("setpriv")
        .args(["--reuid=1", "--regid=1", "--clear-groups", "cat"])
        .arg(format!("/proc/{}/cmdline", s.server_pid))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&read.stdout).contains(&want),
        "uid 1 cannot read the server's argv: the exposure warning would be wrong"
    );
    assert!(
        d_out
            .lines()
            .any(|l| l.starts_with("secret ") && l.contains("EVERY user")),
        "no secret-exposure line in the dry run:\n{d_out}"
    );
    assert!(
        s.log().contains("hidepid=invisible /proc"),
        "no hidepid warning at start"
    );

    let took = s.stop_cleanly();
    println!("[admin] SIGTERM -> exit 0 in {:.3} s", took.as_secs_f64());
    let log = s.log();
    assert!(
        log.contains("restricted group 'admin'"),
        "no restricted-group note in the log"
    );
    assert!(
        !log.contains(&secret),
        "stockade's stderr (incl. Triton's log) contains the secret"
    );
    assert!(!s.stdout().contains(&secret), "stdout contains the secret");
}

/// Flags that would weaken the policy are refused before anything starts: exit 78, a message
/// naming the flag, and no process ever appeared under stockade.
#[test]
fn weakening_flags_refused_before_start() {
    let t = triton();
    let repo = make_repo();
    let cwd = tempdir("stockade-e2e-cwd-", 0o755);
    // A repository whose path is a shell injection (exists, holds a valid model).
    let evil = cwd.path().join("x$(touch y)");
    copy_tree(&repo.models, &evil);
    let missing = cwd.path().join("no-such-repository");
    let base = vec![
        t.server.display().to_string(),
        format!("--backend-directory={}", t.backends.display()),
        "--http-port=18990".to_string(),
        "--grpc-port=18991".to_string(),
    ];
    let repo_arg = format!("--model-repository={}", repo.models.display());
    let s = |x: &str| x.to_string();
    // (extra args, flag named in the message, substring of the message)
    let cases: Vec<(Vec<String>, &str, String)> = vec![
        (
            vec![s("--model-control-mode=explicit")],
            "model-control-mode",
            s("pinned to 'none'"),
        ),
        (
            vec![s("--model-control-mode"), s("explicit")],
            "model-control-mode",
            s("pinned to 'none'"),
        ),
        (
            vec![s("--model-control=poll")],
            "model-control-mode",
            s("given as --model-control"),
        ),
        (
            vec![s("--load-model=add")],
            "load-model",
            s("denied by profile"),
        ),
        (
            vec![s("--allow-sagemaker=true")],
            "allow-sagemaker",
            s("pinned to 'false'"),
        ),
        (
            vec![s("--allow-sage=1")],
            "allow-sagemaker",
            s("pinned to 'false'"),
        ),
        (
            vec![s("--allow-vertex-ai=true")],
            "allow-vertex-ai",
            s("pinned to 'false'"),
        ),
        (
            vec![s("--http-address=0.0.0.0")],
            "http-address",
            s("not in the profile's allowed addresses"),
        ),
        (
            vec![s("--grpc-address"), s("0.0.0.0")],
            "grpc-address",
            s("0.0.0.0"),
        ),
        (
            vec![s("--reuse-http-port=true")],
            "reuse-http-port",
            s("pinned"),
        ),
        (
            vec![s("--backend-config=python,backend-directory=/tmp")],
            "backend-config",
            s("backend-config"),
        ),
        (
            vec![s("--backend-directory=/tmp")],
            "backend-directory",
            s("allowed_roots"),
        ),
        (
            vec![s("--http-header-forward-pattern=.*")],
            "http-header-forward-pattern",
            s("denied by profile"),
        ),
        (
            vec![s("--grpc-header-forward-pattern=.*")],
            "grpc-header-forward-pattern",
            s("denied by profile"),
        ),
        (
            vec![s("--trace-config=level=TIMESTAMPS")],
            "trace-config",
            s("denied by profile"),
        ),
        (
            vec![s("--trace-level=TIMESTAMPS")],
            "trace-level",
            s("pinned to 'OFF'"),
        ),
        (vec![s("--http-port=70000")], "http-port", s("70000")),
        (
            vec![s("--grpc-use-ssl-mutual=false")],
            "grpc-use-ssl-mutual",
            s("still enables SSL"),
        ),
        (
            vec![s("--exit-timeout-secs=100")],
            "exit-timeout-secs",
            s("..=55"),
        ),
        (
            vec![s("--log-file=/tmp/triton.log")],
            "log-file",
            s("log directories"),
        ),
        (vec![s("--mo=explicit")], "mo", s("ambiguous")),
        (vec![s("--help")], "help", s("denied by profile")),
    ];
    // (args, flag, message, exit code): refusals are 78; a missing path is 66 like any missing
    // input.
    let mut runs: Vec<(Vec<String>, &str, String, i32)> = cases
        .into_iter()
        .map(|(mut extra, flag, msg)| {
            let mut a = base.clone();
            a.push(repo_arg.clone());
            a.append(&mut extra);
            (a, flag, msg, 78)
        })
        .collect();
    for (path, msg, code) in [
        (
            evil.display().to_string(),
            s("must be an absolute path matching"),
            78,
        ),
        (
            missing.display().to_string(),
            format!("'{}': No such file or directory", missing.display()),
            66,
        ),
        (s("s3://bucket/models"), s("URLs are refused"), 78),
        (format!("{}/../models", repo.models.display()), s(".."), 78),
    ] {
        let mut a = base.clone();
        a.push(format!("--model-repository={path}"));
        runs.push((a, "model-repository", msg, code));
    }

    let mut failures = Vec::new();
    for (args, flag, msg, want) in &runs {
        let mut full = vec![s("--")];
        full.extend(args.iter().cloned());
        let mut cmd = stockade_cmd(t, &full, &[]);
        cmd.current_dir(cwd.path());
        let mut seen = BTreeSet::new();
        let t0 = Instant::now();
        let o = run_bounded(cmd, Duration::from_secs(20), |pid| {
            seen.extend(children(pid));
        });
        let took = t0.elapsed();
        let extra = &args[4.min(args.len())..];
        let line = o
            .stderr
            .lines()
            .find(|l| l.starts_with("stockade: "))
            .unwrap_or("");
        println!(
            "[refuse] {extra:?} -> {:?} in {:.0} ms: {line}",
            o.code,
            took.as_secs_f64() * 1e3
        );
        let problems = [
            (
                o.code != Some(*want),
                format!("exit {:?}, want {want}", o.code),
            ),
            (!line.contains("server flag"), s("no 'server flag' line")),
            (
                !line.contains(&format!("{flag}:")),
                format!("message does not name --{flag}"),
            ),
            (
                !line.contains(msg.as_str()),
                format!("message lacks {msg:?}"),
            ),
            (
                !seen.is_empty(),
                format!("processes appeared under stockade: {seen:?}"),
            ),
            (
                o.stderr.contains("server started"),
                s("stockade logged 'server started'"),
            ),
            (
                o.stderr.contains("confinement plan"),
                s("stockade got as far as a plan"),
            ),
            (
                o.stderr.contains("server.cc") || o.stderr.contains("CUDA"),
                s("Triton output seen"),
            ),
        ];
        for (bad, what) in problems {
            if bad {
                failures.push(format!(
                    "{extra:?}: {what}\n    stderr: {}",
                    tail(&o.stderr, 3)
                ));
            }
        }
    }
    assert!(!cwd.path().join("y").exists(), "the injected `touch y` ran");
    assert!(
        failures.is_empty(),
        "refusal failures:\n{}",
        failures.join("\n")
    );

    // Value eating is emulated, not refused: `--id --model-control-mode=poll` sets the server
    // id to that string and model control stays pinned to none (proved against the real
    // server in admin_apis_locked_behind_secret).
    let mut full = vec![s("--dry-run"), s("--")];
    full.extend(base.iter().cloned());
    full.extend([repo_arg.clone(), s("--id"), s("--model-control-mode=poll")]);
    let o = run_bounded(stockade_cmd(t, &full, &[]), Duration::from_secs(20), |_| {});
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let argv = o
        .stdout
        .lines()
        .find(|l| l.starts_with("argv"))
        .unwrap_or("");
    assert!(argv.contains(" --id=--model-control-mode=poll "), "{argv}");
    assert!(argv.contains(" --model-control-mode=none "), "{argv}");
}

/// The image's layout on this host for the length of one test: `/opt/tritonserver` (where the
/// official image keeps Triton) and `/models` (where the Deployment mounts the repository), as
/// symlinks, created only if absent and removed afterwards.
struct ImageLayout {
    made: Vec<PathBuf>,
}

impl ImageLayout {
    fn new(triton_home: &Path, models: &Path) -> ImageLayout {
        let mut made = Vec::new();
        for (link, target) in [
            (Path::new("/opt/tritonserver"), triton_home),
            (Path::new("/models"), models),
        ] {
            assert!(
                fs::symlink_metadata(link).is_err(),
                "{} exists on this host: the container-entrypoint test needs to create it",
                link.display()
            );
            std::os::unix::fs::symlink(target, link).unwrap();
            made.push(link.to_path_buf());
        }
        ImageLayout { made }
    }
}

impl Drop for ImageLayout {
    fn drop(&mut self) {
        for p in &self.made {
            let _ = fs::remove_file(p);
        }
    }
}

/// packaging/container/Dockerfile's exact ENTRYPOINT + CMD (only the stockade path is this
/// build's) serves the real Triton, on the image's default port 8000.
#[test]
fn container_entrypoint_and_cmd_serve() {
    let _serial = serial();
    let t = triton();
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/container/check-entrypoint.sh"))
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let argv: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(argv[0], "/usr/bin/stockade");
    assert!(
        TcpListener::bind("127.0.0.1:8000").is_ok(),
        "port 8000 (the image's default HTTP port) is busy on this host"
    );
    let repo = make_repo();
    let home = t.server.parent().and_then(Path::parent).unwrap();
    let _layout = ImageLayout::new(home, &repo.models);
    let mut cmd = Command::new(STOCKADE);
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", format!("/opt/tritonserver/bin:{}", t.path))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    while http_status(8000, "/v2/health/ready") != Some(200) {
        if Instant::now() > end || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "not ready: {}",
                tail(&String::from_utf8_lossy(&o.stderr), 20)
            );
        }
        sleep(Duration::from_millis(50));
    }
    let (code, answer, _) = client(&["http-infer", "http://127.0.0.1:8000", "add"]);
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let o = run_child_bounded(child, Duration::from_secs(70));
    assert_eq!((code, answer.as_str()), (0, EXPECTED_SUM));
    assert_eq!(o, Some(0), "stockade's exit status after SIGTERM");
}

fn run_child_bounded(mut child: Child, limit: Duration) -> Option<i32> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}
