//! stockade in a REAL container runtime (issue 15), and root with only some capabilities on the
//! host (issue 14 item 10): namespaces are decided from what the process can do, not its uid.
//!
//! podman (Debian's, with runc: crun refuses this host's hybrid cgroups) runs an image imported
//! from a rootfs tarball made here: the static musl stockade at /usr/bin/stockade (built by
//! `cargo build --release --target x86_64-unknown-linux-musl`, run by the first test if stale),
//! a shell, python3 and a few tools copied from the host, minimal /etc/passwd and /etc/group, and
//! the image's ENTRYPOINT + CMD parsed from packaging/container/Dockerfile. The host's /usr/lib,
//! /usr/lib64 and the pip-installed Triton (scripts/install-triton.sh) are bind-mounted
//! read-only rather than copied. Every podman call uses a private --root/--runroot/--tmpdir under a
//! temp dir, so the machine's podman storage is neither needed nor touched; each test removes
//! its containers and image by id. Containers use the host network (the built-in profile keeps
//! Triton on loopback) on a free port.
//!
//! Needs root, podman, runc and Triton: missing ones are failures, never skips
//! (scripts/test.sh installs podman and runc).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

const MUSL: &str = "x86_64-unknown-linux-musl";
const EXPECTED_SUM: &str = "OK [11.0, 22.0, 33.0, 44.0]";
/// Above the triton profile's 60 s stop grace, as packaging/container/README.md recommends.
const STOP_TIMEOUT_SECS: u32 = 75;
const USER: &str = "1000:1000";

// ------------------------------------------------------------------------------ environment

struct Host {
    stockade: PathBuf,
    triton_server: PathBuf,
    triton_python: PathBuf,
    podman: PathBuf,
}

fn host() -> &'static Host {
    static H: OnceLock<Host> = OnceLock::new();
    H.get_or_init(|| {
        common::require_root();
        let which = |name: &str| -> PathBuf {
            ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/bin", "/sbin"]
                .iter()
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file())
                .unwrap_or_else(|| {
                    panic!("{name} is not installed: run scripts/test.sh or `apt-get install podman runc`")
                })
        };
        let podman = which("podman");
        which("runc");
        let env_sh = fs::read_to_string("/opt/stockade/triton/env.sh").unwrap_or_else(|e| {
            panic!("Triton is not installed (run scripts/install-triton.sh): /opt/stockade/triton/env.sh: {e}")
        });
        let var = |k: &str| -> PathBuf {
            env_sh
                .lines()
                .filter_map(|l| l.trim().strip_prefix("export "))
                .filter_map(|l| l.split_once('='))
                .find(|(n, _)| *n == k)
                .map(|(_, v)| PathBuf::from(v.trim_matches('\'').trim_matches('"')))
                .unwrap_or_else(|| panic!("env.sh has no {k}"))
        };
        Host {
            stockade: musl_stockade(),
            triton_server: var("TRITONSERVER"),
            triton_python: var("TRITON_PYTHON"),
            podman,
        }
    })
}

/// The static binary the image ships: built (or found up to date) by cargo, like .ci/package.sh.
fn musl_stockade() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("target"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let t0 = Instant::now();
    let mut c = Command::new(cargo);
    c.current_dir(manifest)
        .env("CARGO_TARGET_DIR", &target_dir)
        .args(["build", "--release", "--locked", "--target", MUSL])
        .args(["--bin", "stockade"]);
    let o = common::run(&mut c, Duration::from_secs(900));
    assert!(
        o.status.success(),
        "building the static stockade failed (rustup target add {MUSL}?): {}",
        common::stderr(&o)
    );
    eprintln!(
        "[container] static stockade up to date in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let bin = target_dir.join(MUSL).join("release/stockade");
    let file = Command::new("file").arg(&bin).output();
    if let Ok(f) = file {
        let text = String::from_utf8_lossy(&f.stdout).to_string();
        assert!(
            text.contains("statically linked") || text.contains("static-pie"),
            "{text}"
        );
    }
    bin
}

/// packaging/container/Dockerfile's ENTRYPOINT and CMD, via check-entrypoint.sh.
fn dockerfile_entrypoint_and_cmd() -> (Vec<String>, Vec<String>) {
    let o = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/container/check-entrypoint.sh"))
        .arg("--json")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let argv: Vec<String> = serde_json::from_slice(&o.stdout).unwrap();
    let split = argv.iter().position(|a| a == "--").unwrap() + 1;
    (argv[..split].to_vec(), argv[split..].to_vec())
}

// ---------------------------------------------------------------------------------- podman

/// A private podman state (storage, run, tmp dirs) with the test image; Drop removes the
/// containers and the image it made, by id, then the directory.
struct Podman {
    dir: tempfile::TempDir,
    image: String,
    containers: Vec<String>,
    models: PathBuf,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
}

fn copy_host_file(src: &str, dst: &Path) {
    fs::copy(src, dst).unwrap_or_else(|e| panic!("copy {src}: {e}"));
    fs::set_permissions(dst, fs::Permissions::from_mode(0o755)).unwrap();
}

impl Podman {
    fn new() -> Podman {
        let h = host();
        let t0 = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("stockade-container-")
            .tempdir_in("/var/tmp")
            .unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        // The rootfs: merged-/usr layout, the static stockade, what Triton's python stub needs.
        let r = dir.path().join("rootfs");
        for d in [
            "etc",
            "usr/bin",
            "usr/lib",
            "usr/lib64",
            "usr/sbin",
            "proc",
            "dev",
            "sys",
            "run",
            "tmp",
            "models",
            "opt/stockade/triton",
        ] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        fs::set_permissions(r.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        for (link, target) in [
            ("bin", "usr/bin"),
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
            ("sbin", "usr/sbin"),
            ("usr/bin/sh", "dash"),
            ("usr/bin/python3", "python3.11"),
        ] {
            std::os::unix::fs::symlink(target, r.join(link)).unwrap();
        }
        // Where the official image keeps Triton (its CMD runs `tritonserver` from PATH).
        let home = h.triton_server.parent().and_then(Path::parent).unwrap();
        std::os::unix::fs::symlink(home, r.join("opt/tritonserver")).unwrap();
        fs::copy(&h.stockade, r.join("usr/bin/stockade")).unwrap();
        for b in ["bash", "dash", "id", "true", "cat", "sleep", "python3.11"] {
            copy_host_file(&format!("/usr/bin/{b}"), &r.join("usr/bin").join(b));
        }
        fs::write(
            r.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
             triton:x:1000:1000::/nonexistent:/usr/sbin/nologin\n",
        )
        .unwrap();
        fs::write(
            r.join("etc/group"),
            "root:x:0:\nnogroup:x:65534:\ntriton:x:1000:\n",
        )
        .unwrap();
        let tar = dir.path().join("rootfs.tar");
        let o = common::run(
            Command::new("tar")
                .arg("-C")
                .arg(&r)
                .arg("-cf")
                .arg(&tar)
                .arg("."),
            Duration::from_secs(60),
        );
        assert!(o.status.success(), "tar: {}", common::stderr(&o));
        // The model repository, mounted read-only at /models.
        let models = dir.path().join("models");
        fs::create_dir(&models).unwrap();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/triton/models");
        for m in ["add", "probe"] {
            copy_tree(&fixtures.join(m), &models.join(m));
        }

        let (entrypoint, cmd) = dockerfile_entrypoint_and_cmd();
        let mut p = Podman {
            dir,
            image: String::new(),
            containers: Vec::new(),
            models,
            entrypoint,
            cmd,
        };
        let name = format!(
            "localhost/stockade-test-{}-{}:latest",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let o = p.podman(
            &[
                "import".into(),
                "--quiet".into(),
                "--change".into(),
                format!(
                    "ENTRYPOINT {}",
                    serde_json::to_string(&p.entrypoint).unwrap()
                ),
                "--change".into(),
                format!("CMD {}", serde_json::to_string(&p.cmd).unwrap()),
                "--change".into(),
                // The venv's python3 (with numpy) stands in for the official image's system one.
                "ENV PATH=/opt/tritonserver/bin:/opt/stockade/triton/venv/bin:/usr/local/sbin:\
                 /usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                    .into(),
                tar.display().to_string(),
                name,
            ],
            60,
        );
        assert!(o.status.success(), "podman import: {}", common::stderr(&o));
        p.image = common::stdout(&o).trim_start_matches("sha256:").to_string();
        assert!(!p.image.is_empty());
        eprintln!(
            "[container] image {} built and imported in {:.2} s",
            &p.image[..12],
            t0.elapsed().as_secs_f64()
        );
        p
    }

    fn base(&self) -> Command {
        let d = self.dir.path();
        let mut c = Command::new(&host().podman);
        c.arg("--root")
            .arg(d.join("storage"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("libpod"))
            .args(["--storage-driver", "vfs", "--runtime", "runc"])
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"]);
        c
    }

    fn podman(&self, args: &[String], limit_secs: u64) -> Output {
        let mut c = self.base();
        c.args(args);
        common::run(&mut c, Duration::from_secs(limit_secs))
    }

    /// `podman run` arguments common to every container: explicit ulimits (this host's hard
    /// limits cap them), the host's libraries and Triton read-only, the models read-only.
    fn run_args(&self, mode: &[&str]) -> Vec<String> {
        let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map(|(_, hard)| hard.min(65536))
            .unwrap();
        let mut a: Vec<String> = vec![
            "--ulimit".into(),
            format!("nofile={nofile}:{nofile}"),
            "--ulimit".into(),
            "nproc=4096:4096".into(),
            "-v".into(),
            "/usr/lib:/usr/lib:ro".into(),
            "-v".into(),
            "/usr/lib64:/usr/lib64:ro".into(),
            "-v".into(),
            "/opt/stockade/triton:/opt/stockade/triton:ro".into(),
            "-v".into(),
            format!("{}:/models:ro", self.models.display()),
        ];
        a.extend(mode.iter().map(|s| s.to_string()));
        a
    }

    /// `podman run --rm` to completion with stockade as the entrypoint and `args` after it.
    fn run_stockade(&self, mode: &[&str], args: &[&str]) -> Output {
        let mut a = vec!["run".to_string(), "--rm".into()];
        a.extend(self.run_args(mode));
        a.extend(["--entrypoint".into(), "/usr/bin/stockade".into()]);
        a.push(self.image.clone());
        a.extend(args.iter().map(|s| s.to_string()));
        self.podman(&a, 120)
    }

    /// `podman run -d` of the image's ENTRYPOINT + CMD (+ `--http-port`, host network).
    fn start_triton(&mut self, mode: &[&str], port: u16) -> String {
        let mut a = vec![
            "run".to_string(),
            "-d".into(),
            "--network".into(),
            "host".into(),
        ];
        a.extend(["--stop-timeout".into(), STOP_TIMEOUT_SECS.to_string()]);
        a.extend(self.run_args(mode));
        a.push(self.image.clone());
        a.extend(self.cmd.iter().cloned());
        a.push(format!("--http-port={port}"));
        let o = self.podman(&a, 60);
        assert!(o.status.success(), "podman run: {}", common::stderr(&o));
        let id = common::stdout(&o);
        self.containers.push(id.clone());
        id
    }

    fn inspect(&self, id: &str, format: &str) -> String {
        let o = self.podman(
            &["inspect".into(), "-f".into(), format.into(), id.into()],
            30,
        );
        assert!(o.status.success(), "podman inspect: {}", common::stderr(&o));
        common::stdout(&o)
    }

    fn logs(&self, id: &str) -> String {
        let o = self.podman(&["logs".into(), id.into()], 30);
        format!("{}\n{}", common::stdout(&o), common::stderr(&o))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for id in &self.containers {
            let _ = self.podman(
                &[
                    "rm".into(),
                    "-f".into(),
                    "-t".into(),
                    "0".into(),
                    id.clone(),
                ],
                60,
            );
        }
        if !self.image.is_empty() {
            let _ = self.podman(&["rmi".into(), "-f".into(), self.image.clone()], 60);
        }
    }
}

fn copy_tree(src: &Path, dst: &Path) {
    fs::create_dir(dst).unwrap();
    fs::set_permissions(dst, fs::Permissions::from_mode(0o755)).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to);
        } else {
            fs::copy(e.path(), &to).unwrap();
            fs::set_permissions(&to, fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}

// ------------------------------------------------------------------------------- the host view

fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Descendants of `pid`, from the children of every one of its threads.
fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        for t in fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let kids = fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for c in kids.split_whitespace().filter_map(|s| s.parse().ok()) {
                out.push(c);
                queue.push(c);
            }
        }
    }
    out
}

fn exe(pid: i32) -> String {
    fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// `METHOD path` on 127.0.0.1:port with optional headers: (status, body); None on transport error.
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Option<(u16, String)> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

struct Expect {
    uid: u32,
    /// The server's bounding set must be empty (root start, or --cap-drop ALL).
    empty_bounding: bool,
    /// stockade applied the private mounts (CAP_SYS_ADMIN).
    private_mounts: bool,
}

/// The whole story for one container mode: the image's ENTRYPOINT + CMD serve the real Triton
/// to the host, the server's /proc status read from the host shows the drop, admin APIs are
/// locked, `podman stop` ends it with 0 within the grace period and leaves nothing.
fn triton_in_container(mode: &[&str], want: Expect) {
    let h = host();
    let mut p = Podman::new();
    assert_eq!(
        p.entrypoint,
        ["/usr/bin/stockade", "--profile", "triton", "--"]
    );
    let port = common::free_port();
    let t0 = Instant::now();
    let id = p.start_triton(mode, port);
    let end = Instant::now() + Duration::from_secs(90);
    while http(port, "GET", "/v2/health/ready", &[]).map(|r| r.0) != Some(200) {
        let running = p.inspect(&id, "{{.State.Running}}") == "true";
        assert!(
            running && Instant::now() < end,
            "Triton in the container not ready (running: {running}): {}",
            p.logs(&id)
        );
        sleep(Duration::from_millis(100));
    }
    eprintln!(
        "[container {mode:?}] ready in {:.2} s",
        t0.elapsed().as_secs_f64()
    );

    // Inference from outside the container.
    let o = common::run(
        Command::new(&h.triton_python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/triton/client.py"))
            .args(["http-infer", &format!("http://127.0.0.1:{port}"), "add"]),
        Duration::from_secs(60),
    );
    assert_eq!(common::stdout(&o), EXPECTED_SUM, "{}", common::stderr(&o));

    // The host's view of the server: stockade is the container's init, Triton its child.
    let init: i32 = p.inspect(&id, "{{.State.Pid}}").parse().unwrap();
    assert!(exe(init).ends_with("/usr/bin/stockade"), "{}", exe(init));
    let tree = descendants(init);
    let server = *tree
        .iter()
        .find(|c| exe(**c).ends_with("/bin/tritonserver"))
        .unwrap_or_else(|| panic!("no tritonserver below {init}: {tree:?}"));
    let recorded: Vec<(i32, u64)> = std::iter::once(init)
        .chain(tree.iter().copied())
        .filter_map(|p| start_time(p).map(|t| (p, t)))
        .collect();
    let st = common::status(server as u32);
    let u = want.uid.to_string();
    assert_eq!(st["Uid"], format!("{u}\t{u}\t{u}\t{u}"), "{st:?}");
    assert_eq!(st["CapEff"], "0000000000000000");
    assert_eq!(st["CapPrm"], "0000000000000000");
    assert_eq!(st["CapAmb"], "0000000000000000");
    if want.empty_bounding {
        assert_eq!(st["CapBnd"], "0000000000000000");
    }
    assert_eq!(st["NoNewPrivs"], "1");
    assert_eq!(st["Seccomp"], "2");
    // Landlock: the server cannot open what the profile does not list (/run/stockade holds
    // the secret; as uid 1000 the directory is the server's own, so only Landlock stops it).
    let mountinfo = fs::read_to_string(format!("/proc/{server}/mountinfo")).unwrap();
    let line = |mp: &str| {
        mountinfo
            .lines()
            .rfind(|l| l.split(' ').nth(4) == Some(mp))
            .map(str::to_string)
    };
    let tmp = line("/tmp");
    let models = line("/models").unwrap();
    if want.private_mounts {
        let tmp = tmp.expect("no private /tmp");
        assert!(tmp.contains(" - tmpfs ") && tmp.contains("noexec"), "{tmp}");
        let shm = line("/dev/shm").unwrap();
        assert!(
            shm.contains("noexec") && shm.contains("size=1048576k"),
            "{shm}"
        );
        let opts = models.split(' ').nth(5).unwrap();
        assert!(opts.contains("ro") && opts.contains("noexec"), "{models}");
    } else {
        // Not stockade's: /models is the runtime's plain read-only bind.
        let opts = models.split(' ').nth(5).unwrap();
        assert!(!opts.contains("noexec"), "{models}");
        assert!(
            p.logs(&id).contains("CAP_SYS_ADMIN"),
            "no warning about the missing mounts"
        );
    }

    // From inside (the `probe` model plays a compromised server): Landlock and the mounts hold.
    // As uid 1000 /run/stockade is the server's own directory: only Landlock refuses the secret.
    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/triton/client.py");
    let url = format!("http://127.0.0.1:{port}");
    let probe = |op: &str, arg: &str| {
        let o = common::run(
            Command::new(&h.triton_python)
                .arg(&client)
                .args(["http-probe", &url, op, arg]),
            Duration::from_secs(60),
        );
        assert_eq!(
            o.status.code(),
            Some(0),
            "probe {op} {arg}: {}",
            common::stderr(&o)
        );
        common::stdout(&o)
    };
    // With CAP_SYS_ADMIN the profile's fresh root holds no /run at all; without it Landlock
    // refuses the read.
    let secret_read = if want.private_mounts {
        "errno=ENOENT"
    } else {
        "errno=EACCES"
    };
    for (op, arg, want) in [
        ("read", "/run/stockade/triton-admin.secret", secret_read),
        (
            "copy_exec",
            "/bin/true:/tmp/stockade-probe-true",
            "errno=EACCES",
        ),
        ("kill", "1:TERM", "errno=EPERM"),
        ("read", "/models/add/config.pbtxt", "ok"),
        ("exec", "/bin/true", "ok"),
    ] {
        assert_eq!(probe(op, arg), want, "{op} {arg} in {mode:?}");
    }
    let w = probe("write", "/models/add/planted.py");
    assert!(
        w == "errno=EROFS" || w == "errno=EACCES",
        "write /models: {w}"
    );

    // Admin APIs: refused without the secret, allowed with it (read from the container's
    // /run/stockade through the host's /proc).
    for (method, path) in [
        ("POST", "/v2/repository/index"),
        ("POST", "/v2/repository/models/add/unload"),
        ("GET", "/v2/logging"),
    ] {
        let (status, body) = http(port, method, path, &[]).unwrap();
        assert_eq!(status, 403, "{method} {path}: {body}");
    }
    let secret = fs::read_to_string(format!(
        "/proc/{init}/root/run/stockade/triton-admin.secret"
    ))
    .unwrap();
    let (status, body) = http(
        port,
        "POST",
        "/v2/repository/index",
        &[("x-stockade-admin", secret.trim())],
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""name":"add""#), "{body}");

    // podman stop: SIGTERM to stockade, which drains Triton within the grace period.
    let t1 = Instant::now();
    let o = p.podman(
        &[
            "stop".into(),
            "-t".into(),
            STOP_TIMEOUT_SECS.to_string(),
            id.clone(),
        ],
        u64::from(STOP_TIMEOUT_SECS) + 30,
    );
    let stop = t1.elapsed();
    assert!(o.status.success(), "podman stop: {}", common::stderr(&o));
    eprintln!(
        "[container {mode:?}] stopped in {:.2} s",
        stop.as_secs_f64()
    );
    assert!(stop < Duration::from_secs(60), "stop took {stop:?}");
    assert_eq!(
        p.inspect(&id, "{{.State.ExitCode}}"),
        "0",
        "{}",
        p.logs(&id)
    );
    let left: Vec<i32> = recorded
        .iter()
        .filter(|(pid, t)| start_time(*pid) == Some(*t))
        .map(|(pid, _)| *pid)
        .collect();
    assert!(
        left.is_empty(),
        "processes left after podman stop: {left:?}"
    );
}

// ------------------------------------------------------------------------------------- tests

/// Default container, root, no added capabilities (the README's first use). Before issue 15 the
/// triton profile exited 71 here ('private mounts' EPERM).
#[test]
fn triton_default_container_as_root() {
    triton_in_container(
        &[],
        Expect {
            uid: 65534,
            empty_bounding: true,
            private_mounts: false,
        },
    );
}

/// Non-root `--user`: stockade runs rootless (keeps uid 1000). /run/stockade for the generated
/// admin secret: a tmpfs owned by that user (podman's `U` option).
#[test]
fn triton_default_container_as_non_root_user() {
    triton_in_container(
        &["--user", USER, "--tmpfs", "/run/stockade:rw,mode=0700,U"],
        Expect {
            uid: 1000,
            empty_bounding: false,
            private_mounts: false,
        },
    );
}

/// `--cap-add SYS_ADMIN`: stockade makes the private mounts itself (probe passes under
/// podman's seccomp filter, which allows mount/unshare with that capability).
#[test]
fn triton_container_with_cap_sys_admin_applies_private_mounts() {
    triton_in_container(
        &["--cap-add", "SYS_ADMIN"],
        Expect {
            uid: 65534,
            empty_bounding: true,
            private_mounts: true,
        },
    );
}

/// packaging/container/README.md's run line: root start with only the four capabilities stockade
/// needs to change ids (the Kubernetes "baseline" alternative), read-only root, no-new-privileges.
#[test]
fn triton_readme_run_line_root_with_four_capabilities() {
    triton_in_container(
        &[
            "--read-only",
            "--tmpfs",
            "/tmp:rw,nosuid,nodev,noexec,size=256m",
            "--tmpfs",
            "/run",
            "--shm-size",
            "1g",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "SETUID",
            "--cap-add",
            "SETGID",
            "--cap-add",
            "SETPCAP",
            "--cap-add",
            "KILL",
            "--security-opt",
            "no-new-privileges",
        ],
        Expect {
            uid: 65534,
            empty_bounding: true,
            private_mounts: false,
        },
    );
}

/// packaging/kubernetes/triton.yaml's security context as podman flags: read-only root, every
/// capability dropped, no-new-privileges, non-root uid, a writable /tmp.
#[test]
fn triton_kubernetes_security_context_in_podman() {
    triton_in_container(
        &[
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--user",
            USER,
            "--tmpfs",
            "/tmp:rw,nosuid,nodev,noexec,size=256m",
            "--tmpfs",
            "/run/stockade:rw,mode=0700,U",
        ],
        Expect {
            uid: 1000,
            empty_bounding: true,
            private_mounts: false,
        },
    );
}

/// A profile with the triton profile's [mounts] (the "triton-grade" case of issue 15) around
/// /bin/id, in containers: default caps (warn → runs, says what is missing; refuse → 77 naming
/// the capability and the flag), the Kubernetes root alternative (only SETUID SETGID SETPCAP
/// KILL), --cap-add SYS_ADMIN (mounts applied), and SYS_ADMIN under a seccomp filter that
/// refuses unshare (the probe sees it: warn → runs; refuse → 77 naming the filter).
#[test]
fn triton_grade_profile_in_containers_decides_from_capabilities() {
    let p = Podman::new();
    let profile = |when: &str| {
        format!(
            r#"version = 1
description = "minimal with the triton profile's mounts"
[identity]
user = "nobody"
group = "nogroup"
[landlock]
read_exec = ["/usr", "/bin", "/lib", {{ path = "/lib64", optional = true }}]
read_only = ["/etc", "/proc"]
read_write = ["/tmp", "/dev/shm", "/dev/null"]
{seccomp}
[mounts]
tmpfs = [{{ path = "/tmp", size_mb = 16 }}, {{ path = "/dev/shm", size_mb = 16 }}]
read_only_noexec = ["/models"]
when_unprivileged = "{when}"
"#,
            seccomp = common::TEST_SECCOMP
        )
    };
    let dir = p.dir.path();
    fs::write(dir.join("warn.toml"), profile("warn")).unwrap();
    fs::write(dir.join("refuse.toml"), profile("refuse")).unwrap();
    // unshare refused by the runtime's filter although CAP_SYS_ADMIN is granted.
    let filter = dir.join("no-unshare.json");
    fs::write(
        &filter,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["unshare"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
    )
    .unwrap();
    let seccomp_opt = format!("seccomp={}", filter.display());
    let profiles = format!("{}:/profiles:ro", dir.display());
    let k8s_root = [
        "--cap-drop",
        "ALL",
        "--cap-add",
        "SETUID",
        "--cap-add",
        "SETGID",
        "--cap-add",
        "SETPCAP",
        "--cap-add",
        "KILL",
    ];

    // minimal works in a default container (it did before, too).
    let o = p.run_stockade(&[], &["--profile", "minimal", "--", "/bin/id"]);
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    assert!(common::stdout(&o).starts_with("uid=65534(nobody) gid=65534(nogroup)"));

    let cases: Vec<(&str, Vec<&str>, &str, i32)> = vec![
        ("default caps, warn", vec![], "warn", 0),
        ("default caps, refuse", vec![], "refuse", 77),
        (
            "kubernetes root alternative, warn",
            k8s_root.to_vec(),
            "warn",
            0,
        ),
        (
            "kubernetes root alternative, refuse",
            k8s_root.to_vec(),
            "refuse",
            77,
        ),
        (
            "SYS_ADMIN, refuse",
            vec!["--cap-add", "SYS_ADMIN"],
            "refuse",
            0,
        ),
        (
            "SYS_ADMIN, seccomp refuses unshare, warn",
            vec!["--cap-add", "SYS_ADMIN", "--security-opt", &seccomp_opt],
            "warn",
            0,
        ),
        (
            "SYS_ADMIN, seccomp refuses unshare, refuse",
            vec!["--cap-add", "SYS_ADMIN", "--security-opt", &seccomp_opt],
            "refuse",
            77,
        ),
    ];
    for (what, mode, when, code) in cases {
        let mut m = mode.clone();
        m.extend(["-v", &profiles]);
        let prof = format!("/profiles/{when}.toml");
        let dry = p.run_stockade(&m, &["--profile", &prof, "--dry-run", "--", "/bin/id"]);
        let run = p.run_stockade(
            &m,
            &["--profile", &prof, "--", "/bin/cat", "/proc/self/mountinfo"],
        );
        let (out, err) = (common::stdout(&run), common::stderr(&run));
        eprintln!("[container] {what}: exit {:?}", run.status.code());
        assert_eq!(run.status.code(), Some(code), "{what}: {err}\n{out}");
        assert_ne!(run.status.code(), Some(71), "{what}");
        let dry_text = common::stdout(&dry);
        if what == "SYS_ADMIN, seccomp refuses unshare, warn" {
            let json = p.run_stockade(
                &m,
                &[
                    "--profile",
                    &prof,
                    "--dry-run",
                    "--format",
                    "json",
                    "--",
                    "/bin/id",
                ],
            );
            let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
            let ns = &v["namespaces"];
            assert_eq!(ns["cap_sys_admin"], true, "{v}");
            assert_eq!(ns["probed"], true, "{v}");
            assert_eq!(ns["seccomp_filtered"], true, "{v}");
            assert_eq!(ns["pid1"], true, "{v}");
            assert_eq!(ns["runtime"], "podman", "{v}");
            assert_eq!(
                ns["mounts"]["refused"]["call"], "unshare(CLONE_NEWNS)",
                "{v}"
            );
            assert_eq!(ns["mounts"]["refused"]["errno"], "EPERM", "{v}");
        }
        let sys_admin = mode.contains(&"SYS_ADMIN");
        let filtered = mode.contains(&"--security-opt");
        match (code, sys_admin && !filtered) {
            (0, true) => {
                // Applied: the server's /tmp is stockade's 16 MiB tmpfs, /models ro,noexec.
                assert!(
                    out.lines().any(|l| l.contains(" /tmp ")
                        && l.contains("noexec")
                        && l.contains("size=16384k")),
                    "{what}: {out}"
                );
                assert!(
                    dry_text.contains("private tmpfs /tmp           stockade"),
                    "{dry_text}"
                );
            }
            (0, false) => {
                assert!(
                    !out.lines()
                        .any(|l| l.contains(" /tmp ") && l.contains("size=16384k")),
                    "{what}: {out}"
                );
                let cause = if filtered {
                    "unshare(CLONE_NEWNS) was refused (EPERM"
                } else {
                    "lack CAP_SYS_ADMIN"
                };
                assert!(err.contains(cause), "{what}: {err}");
                assert!(
                    dry_text.contains("mounts       NOT APPLIED"),
                    "{what}: {dry_text}"
                );
                assert!(dry_text.contains(cause), "{what}: {dry_text}");
                assert!(
                    dry_text.contains(
                        "PID namespace                runtime (podman): stockade is PID 1"
                    ),
                    "{dry_text}"
                );
                assert_eq!(dry.status.code(), Some(0), "{what}");
            }
            _ => {
                let flag = if filtered {
                    "--security-opt seccomp="
                } else {
                    "--cap-add SYS_ADMIN"
                };
                assert!(
                    err.starts_with(
                        "stockade: privilege: the profile's [mounts] need a private mount namespace"
                    ),
                    "{what}: {err}"
                );
                assert!(err.contains(flag), "{what}: {err}");
                assert_eq!(dry.status.code(), Some(77), "{what}");
                assert!(out.is_empty(), "{what}: nothing may start: {out}");
            }
        }
    }
}

// ------------------------------------------------------------------ on the host, no container

/// Root with only the Kubernetes alternative's capabilities (SETUID SETGID SETPCAP KILL, set by
/// `setpriv` as the bounding set): the dry run says the mounts are not applied and why, the
/// start runs the server with the drop (it exited 71 on 'private mounts' before, issue 14 item
/// 10), `refuse` exits 77 naming the capability, and `pid_namespace = "always"` likewise.
#[test]
fn root_without_cap_sys_admin_on_host_decides_from_capabilities() {
    common::require_root();
    let dir = tempfile::Builder::new()
        .prefix("stockade-caps-")
        .tempdir()
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let rw = dir.path().join("rw");
    fs::create_dir(&rw).unwrap();
    fs::set_permissions(&rw, fs::Permissions::from_mode(0o777)).unwrap();
    let write_profile = |name: &str, when: &str, pidns: &str| {
        let path = dir.path().join(name);
        fs::write(
            &path,
            format!(
                r#"version = 1
description = "test"
[identity]
user = "nobody"
group = "nogroup"
[landlock]
read_exec = ["/usr", "/bin", "/lib", {{ path = "/lib64", optional = true }}]
read_only = ["/etc", "/proc"]
read_write = ["{rw}", "/dev/null"]
{seccomp}
[mounts]
tmpfs = [{{ path = "{rw}", size_mb = 8 }}]
when_unprivileged = "{when}"
[supervise]
pid_namespace = "{pidns}"
"#,
                rw = rw.display(),
                seccomp = common::TEST_SECCOMP
            ),
        )
        .unwrap();
        path
    };
    let setpriv = |profile: &Path, args: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args([
            "--bounding-set",
            "-all,+setuid,+setgid,+setpcap,+kill",
            "--",
        ])
        .arg(common::stockade())
        .arg("--profile")
        .arg(profile)
        .args(args)
        .stdin(Stdio::null());
        common::run(&mut c, Duration::from_secs(30))
    };
    let profile = write_profile("warn.toml", "warn", "auto");
    // This process itself: full capabilities (the mounts apply): the server's rw dir is a tmpfs.
    let full = common::confined(&profile, "/bin/cat", &["/proc/self/mountinfo"]);
    assert_eq!(full.status.code(), Some(0), "{}", common::stderr(&full));
    let rw_s = rw.display().to_string();
    let is_tmpfs = |out: &str| {
        out.lines()
            .any(|l| l.split(' ').nth(4) == Some(rw_s.as_str()) && l.contains(" - tmpfs "))
    };
    assert!(is_tmpfs(&common::stdout(&full)));

    let dry = setpriv(&profile, &["--dry-run", "--", "/bin/true"]);
    let text = common::stdout(&dry);
    assert_eq!(dry.status.code(), Some(0), "{}", common::stderr(&dry));
    assert!(
        text.contains(
            "mounts       NOT APPLIED (stockade's effective capabilities lack CAP_SYS_ADMIN)"
        ),
        "{text}"
    );
    assert!(text.contains("--cap-add SYS_ADMIN"), "{text}");

    let json = setpriv(
        &profile,
        &["--dry-run", "--format", "json", "--", "/bin/true"],
    );
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["namespaces"]["cap_sys_admin"], false, "{v}");
    assert_eq!(v["namespaces"]["mounts"], "no_capability", "{v}");
    assert_eq!(v["mounts"], serde_json::Value::Null, "{v}");
    let tmpfs_row = &v["provided_by"][0];
    assert_eq!(tmpfs_row["by"], "NOBODY: shared and exec allowed", "{v}");
    assert!(
        tmpfs_row["instead"]
            .as_str()
            .unwrap()
            .starts_with("--tmpfs "),
        "{v}"
    );

    let run = setpriv(
        &profile,
        &[
            "--",
            "/bin/cat",
            "/proc/self/status",
            "/proc/self/mountinfo",
        ],
    );
    let (out, err) = (common::stdout(&run), common::stderr(&run));
    assert_eq!(run.status.code(), Some(0), "{err}");
    assert!(out.contains("Uid:\t65534\t65534\t65534\t65534"), "{out}");
    assert!(out.contains("CapBnd:\t0000000000000000"), "{out}");
    assert!(!is_tmpfs(&out), "{out}");
    assert!(err.contains("lack CAP_SYS_ADMIN"), "{err}");

    let refuse = write_profile("refuse.toml", "refuse", "auto");
    let run = setpriv(&refuse, &["--", "/bin/true"]);
    let err = common::stderr(&run);
    assert_eq!(run.status.code(), Some(77), "{err}");
    assert!(
        err.contains("lack CAP_SYS_ADMIN") && err.contains("--cap-add SYS_ADMIN"),
        "{err}"
    );

    let always = write_profile("always.toml", "warn", "always");
    let run = setpriv(&always, &["--", "/bin/true"]);
    let err = common::stderr(&run);
    assert_eq!(run.status.code(), Some(77), "{err}");
    assert!(
        err.contains("pid_namespace = \"always\" needs a PID namespace")
            && err.contains("lack CAP_SYS_ADMIN"),
        "{err}"
    );
}
