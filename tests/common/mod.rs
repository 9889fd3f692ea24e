//! Shared helpers for the integration tests: a world-traversable sandbox directory with the probe
//! and a profile, bounded process runs, and /proc readers. Everything observes the real kernel.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod procs;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn stockade() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stockade"))
}

/// The probe example, built by `cargo test` next to the test binaries: `examples/probe` after a
/// `cargo build --examples`, else an `examples/probe-<hash>`. Cargo may also leave a test-harness
/// build of the example there, so each candidate (newest first) must answer like the probe.
pub fn probe_built() -> PathBuf {
    static PROBE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PROBE
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            let dir = exe.parent().unwrap().parent().unwrap().join("examples");
            let mut candidates: Vec<PathBuf> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| {
                    panic!("{}: {e}: run the tests through `cargo test`", dir.display())
                })
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    (name == "probe" || name.starts_with("probe-"))
                        && !name.contains('.')
                        && std::fs::metadata(p)
                            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                })
                .collect();
            candidates.sort_by_key(|p| {
                std::cmp::Reverse(std::fs::metadata(p).and_then(|m| m.modified()).ok())
            });
            candidates
                .into_iter()
                .find(|p| {
                    Command::new(p)
                        .arg("status")
                        .output()
                        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("\nUid:"))
                })
                .unwrap_or_else(|| {
                    panic!(
                        "no probe in {}: run the tests through `cargo test`",
                        dir.display()
                    )
                })
        })
        .clone()
}

/// Tests that need root fail (not skip) without it: CI runs as root on purpose.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests need root (uid changes, Landlock on other uids); run them as root"
    );
}

/// A 0755 directory tree the confined (uid 65534) probe can traverse:
/// `bin/probe` (read+exec), `ro/` (read-only, holds `ro/model.bin` and `ro/sub/`), `rw/`
/// (read-write), `deny/` (no rule at all), and `profile.toml`.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("stockade-test-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let sb = Sandbox { dir };
        for d in ["bin", "ro", "ro/sub", "rw", "deny"] {
            std::fs::create_dir(sb.path(d)).unwrap();
            std::fs::set_permissions(sb.path(d), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        // World-writable on purpose: only Landlock stands between the probe and these files.
        std::fs::write(sb.path("ro/model.bin"), b"weights").unwrap();
        std::fs::set_permissions(
            sb.path("ro/model.bin"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        std::fs::write(sb.path("deny/secret"), b"s").unwrap();
        std::fs::copy(probe_built(), sb.path("bin/probe")).unwrap();
        std::fs::set_permissions(sb.path("bin/probe"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        sb
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn probe(&self) -> String {
        self.path("bin/probe").display().to_string()
    }

    /// Write `profile.toml`: the minimal profile's shape over this sandbox's paths.
    pub fn profile(&self, bind_port: u16, extra: &str) -> PathBuf {
        let text = format!(
            r#"version = 1
description = "test"
[identity]
user = "nobody"
group = "nogroup"
[landlock]
read_exec = ["/usr", "/bin", "/lib", {{ path = "/lib64", optional = true }}, "{bin}"]
read_only = ["/etc", "/proc", "/dev/urandom", "{ro}"]
read_write = ["{rw}", "/dev/null"]
bind_tcp = [{bind_port}]
connect_tcp = []
{seccomp}[env]
set = {{ PATH = "/usr/bin:/bin" }}
{extra}
"#,
            seccomp = TEST_SECCOMP,
            bin = self.path("bin").display(),
            ro = self.path("ro").display(),
            rw = self.path("rw").display(),
        );
        let p = self.path("profile.toml");
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// The seccomp section of the test profiles: the minimal profile's allow-list.
pub const TEST_SECCOMP: &str = r#"[seccomp]
default_action = "errno:ENOSYS"
allow = ["@default", "@file-read", "@file-write", "@io-event", "@network", "@process"]
[[seccomp.allow_if]]
syscall = "socket"
arg = 0
any_of = [1, 2, 10]
[[seccomp.allow_if]]
syscall = "clone"
arg = 0
bits_clear = 0x7E020000
"#;

/// Run to completion with a deadline; the process is killed if it overstays.
pub fn run(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, limit)
}

pub fn wait_output(mut child: Child, limit: Duration) -> Output {
    let end = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > end {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "timed out after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

/// `stockade --profile P -- probe ARGS...`, bounded to 20 s.
pub fn confined(profile: &Path, probe: &str, args: &[&str]) -> Output {
    let mut c = Command::new(stockade());
    c.arg("--profile")
        .arg(profile)
        .arg("--")
        .arg(probe)
        .args(args);
    run(&mut c, Duration::from_secs(20))
}

/// Children of `pid` (single-threaded parent).
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// All descendants of `pid`, nearest first.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        for c in children(p) {
            out.push(c);
            queue.push(c);
        }
    }
    out
}

/// Wait (bounded) for `pid` to have a descendant whose exe is `exe`. (stockade may supervise
/// from PID 1 of its own PID namespace, one level below the process we started.)
pub fn wait_child_exe(pid: u32, exe: &Path, limit: Duration) -> u32 {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        for c in descendants(pid) {
            if std::fs::read_link(format!("/proc/{c}/exe")).is_ok_and(|p| p == exe) {
                return c;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!(
        "no child of {pid} running {} after {limit:?}",
        exe.display()
    );
}

/// `/proc/<pid>/status` as a map of field → value (whitespace-trimmed).
pub fn status(pid: u32) -> BTreeMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// Kill a child we started and reap it (for cleanup paths).
pub fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}
