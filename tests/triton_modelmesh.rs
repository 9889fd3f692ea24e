//! ModelMesh's Triton adapter against the REAL tritonserver 2.51 (python backend) confined by the
//! REAL stockade with the built-in `--profile triton-modelmesh`.
//!
//! The adapter (kserve/modelmesh-runtime-adapter, model-mesh-triton-adapter/server/server.go)
//! dials `localhost:<RUNTIME_PORT>` over gRPC without metadata and calls ServerReady,
//! RepositoryIndex(ready=true), ServerMetadata, RepositoryModelLoad(model_name) and
//! RepositoryModelUnload(model_name); `client.py adapter` sends exactly those with raw stubs.
//!
//! Requirements: root, Triton installed by `scripts/install-triton.sh` (default
//! /opt/stockade/triton, or `STOCKADE_TRITON_DIR`). A missing install is a failure, not a skip.
//! Servers run one at a time (each start rewrites /run/stockade/triton-admin.secret); every wait
//! is bounded; a `Drop` guard kills what a failed test started, by pid.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::procs::{descendants, http_req, listening, proc_status};
use common::{free_port, require_root, stockade};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const NOBODY: u32 = 65534;
const SECRET_FILE: &str = "/run/stockade/triton-admin.secret";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(45);
const EXPECTED_SUM: &str = "OK [11.0, 22.0, 33.0, 44.0]";

struct Install {
    server: PathBuf,
    backends: PathBuf,
    python: PathBuf,
    path: String,
}

fn install() -> Install {
    require_root();
    let dir =
        std::env::var("STOCKADE_TRITON_DIR").unwrap_or_else(|_| "/opt/stockade/triton".into());
    let env_sh = fs::read_to_string(format!("{dir}/env.sh")).unwrap_or_else(|e| {
        panic!("Triton is not installed in {dir} (run scripts/install-triton.sh {dir}): {e}")
    });
    let vars: BTreeMap<&str, &str> = env_sh
        .lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k, v.trim_matches('\'')))
        .collect();
    let get = |k: &str| {
        vars.get(k)
            .unwrap_or_else(|| panic!("{dir}/env.sh has no {k}"))
    };
    Install {
        server: fs::canonicalize(get("TRITONSERVER")).unwrap(),
        backends: PathBuf::from(get("TRITON_BACKENDS")),
        python: PathBuf::from(get("TRITON_PYTHON")),
        path: get("TRITON_PATH").to_string(),
    }
}

fn serial() -> MutexGuard<'static, ()> {
    static S: Mutex<()> = Mutex::new(());
    S.lock().unwrap_or_else(|e| e.into_inner())
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/triton")
}

/// A 0755 temp dir the server (uid 65534) can traverse, outside /tmp (whose make_dirs rule would
/// make a repository there writable: refused, unless stockade mounts it read-only).
fn tempdir(prefix: &str) -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/var/tmp")
        .unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// The model directory as the adapter leaves it: `<model>/config.pbtxt` + `<model>/1/model.py`,
/// root-owned, world-readable (the adapter's container writes it; Triton only reads it).
fn repository(dir: &Path) -> PathBuf {
    let models = dir.join("models");
    let src = fixtures().join("models/add");
    fs::create_dir_all(models.join("add/1")).unwrap();
    for f in ["config.pbtxt", "1/model.py"] {
        fs::copy(src.join(f), models.join("add").join(f)).unwrap();
    }
    for d in [&models, &models.join("add"), &models.join("add/1")] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    models
}

/// `client.py ARGS` under Triton's venv python: (exit code, stdout trimmed).
fn client(t: &Install, args: &[&str]) -> (i32, String) {
    let mut c = Command::new(&t.python);
    c.arg(fixtures().join("client.py")).args(args);
    let o = common::run(&mut c, Duration::from_secs(90));
    let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        !err.contains("Traceback"),
        "client.py {args:?} crashed: {err}"
    );
    (o.status.code().unwrap_or(-1), out)
}

struct Server {
    child: Child,
    pid: i32,
    server_pid: i32,
    http: u16,
    grpc: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
    tree: Vec<i32>,
}

impl Server {
    fn start(t: &Install, profile: &str, extra: &[&str]) -> Server {
        Server::start_as(t, &[], profile, extra)
    }

    /// `pre`: a command prefix (e.g. setpriv for a rootless start), run as `pre... stockade ...`.
    fn start_as(t: &Install, pre: &[&str], profile: &str, extra: &[&str]) -> Server {
        let dir = tempdir("stockade-mm-");
        let models = repository(dir.path());
        let (http, grpc) = (free_port(), free_port());
        let log = dir.path().join("stderr");
        fs::File::create(&log).unwrap();
        std::os::unix::fs::chown(&log, Some(NOBODY), Some(NOBODY)).unwrap();
        let mut c = match pre.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(stockade());
                c
            }
            None => Command::new(stockade()),
        };
        c.env_clear()
            .env("PATH", &t.path)
            .env("STOCKADE_LOG", "info")
            .current_dir("/")
            .args(["--profile", profile, "--"])
            .arg(&t.server)
            .arg(format!("--model-repository={}", models.display()))
            .arg(format!("--backend-directory={}", t.backends.display()))
            .arg(format!("--http-port={http}"))
            .arg(format!("--grpc-port={grpc}"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::OpenOptions::new().append(true).open(&log).unwrap());
        let child = c.spawn().unwrap();
        let pid = child.id() as i32;
        let mut s = Server {
            child,
            pid,
            server_pid: 0,
            http,
            grpc,
            log,
            _dir: dir,
            tree: Vec::new(),
        };
        // Ready: OUR tritonserver listens on the HTTP port (another process could have taken a
        // port free_port() handed out) and /v2/health/ready answers 200.
        let t0 = Instant::now();
        let own = format!("127.0.0.1:{http}");
        loop {
            if let Some(st) = s.child.try_wait().unwrap() {
                panic!("stockade exited ({st}) before ready:\n{}", s.log_text());
            }
            s.tree = descendants(pid);
            if let Some(p) = s
                .tree
                .iter()
                .find(|p| fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e == t.server))
            {
                s.server_pid = *p;
            }
            if s.server_pid != 0
                && listening(s.server_pid).contains(&own)
                && http_req(http, "GET", "/v2/health/ready", "").is_some_and(|(c, _)| c == 200)
            {
                break;
            }
            assert!(
                t0.elapsed() < READY_TIMEOUT,
                "not ready after {READY_TIMEOUT:?}:\n{}",
                s.log_text()
            );
            sleep(Duration::from_millis(50));
        }
        s
    }

    fn grpc_addr(&self) -> String {
        format!("127.0.0.1:{}", self.grpc)
    }

    fn log_text(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// `path` in the server's mount namespace (its private /tmp and /dev/shm), from outside.
    fn inside(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{path}", self.server_pid))
    }

    /// SIGTERM to stockade; its exit code (bounded wait).
    fn stop(&mut self) -> Option<i32> {
        kill(Pid::from_raw(self.pid), Signal::SIGTERM).unwrap();
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            assert!(t0.elapsed() < STOP_TIMEOUT, "no exit after SIGTERM");
            sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            for p in &self.tree {
                let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn assert_confined(pid: i32) {
    let st = proc_status(pid);
    assert_eq!(st["Uid"], "65534\t65534\t65534\t65534", "Uid of {pid}");
    for cap in ["CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(st[cap], "0000000000000000", "{cap} of {pid}");
    }
    assert_eq!(st["NoNewPrivs"], "1");
    assert_eq!(st["Seccomp"], "2");
}

/// What the adapter's RuntimeStatus sees: (ready, models in RepositoryIndex(ready=true)).
fn adapter_status(t: &Install, s: &Server) -> String {
    let (code, out) = client(t, &["adapter", &s.grpc_addr(), "status"]);
    assert_eq!(code, 0, "adapter status without metadata: {out}");
    out
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The adapter's calls succeed with no metadata on loopback gRPC; the same API on HTTP, every other
/// admin API on gRPC, and a load that carries its own model files (`file:` overrides) are refused.
#[test]
fn adapter_loads_and_unloads_over_loopback_grpc_without_a_header() {
    let t = install();
    let _serial = serial();
    let mut s = Server::start(&t, "triton-modelmesh", &[]);
    assert_confined(s.server_pid);
    assert_eq!(
        listening(s.server_pid),
        BTreeSet::from([
            format!("127.0.0.1:{}", s.http),
            format!("127.0.0.1:{}", s.grpc)
        ]),
        "only the two loopback listeners"
    );

    adapter_flow(&t, &s);
    assert_eq!(s.stop(), Some(0), "SIGTERM: clean exit\n{}", s.log_text());
}

/// What ModelMesh does with a runtime, and what it must not be able to do.
fn adapter_flow(t: &Install, s: &Server) {
    // RuntimeStatus: ready, nothing loaded (explicit mode loads nothing at start).
    let st = adapter_status(t, s);
    assert!(
        st.contains("\"ready\":true") && st.contains("\"loaded\":[]"),
        "{st}"
    );
    // LoadModel: RepositoryModelLoad(model_name) without metadata, then inference.
    let (code, out) = client(t, &["adapter", &s.grpc_addr(), "load", "add"]);
    assert_eq!((code, out.as_str()), (0, "OK {\"loaded\":\"add\"}"));
    assert!(adapter_status(t, s).contains("\"loaded\":[\"add\"]"));
    let (code, out) = client(t, &["grpc-infer", &s.grpc_addr(), "add"]);
    assert_eq!((code, out.as_str()), (0, EXPECTED_SUM));

    // HTTP: the model-repository API stays restricted (no header: 403).
    for path in [
        "/v2/repository/index",
        "/v2/repository/models/add/load",
        "/v2/repository/models/add/unload",
    ] {
        let (code, body) = http_req(s.http, "POST", path, "{}").expect("HTTP answers");
        assert_eq!(code, 403, "POST {path}: {body}");
        assert!(body.contains("This API is restricted"), "{body}");
    }
    // gRPC: every other admin API still needs the secret.
    let (_, out) = client(
        t,
        &[
            "grpc-admin-many",
            &s.grpc_addr(),
            "log-settings",
            "trace-settings",
            "shm-register",
            "statistics",
            "model-config",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    for l in lines {
        assert!(
            l.contains("ERR UNAVAILABLE This protocol is restricted"),
            "{l}"
        );
    }

    // A load that brings its own model (config + file:1/model.py): Triton writes the files to
    // /tmp/folderXXXXXX, where the profile allows directories only. Refused from inside (EACCES
    // on Triton's own open), checked from outside: no marker, no files, the model not loaded.
    let marker = format!("injected-{}", std::process::id());
    let (code, out) = client(t, &["override-load", &s.grpc_addr(), "evil", &marker]);
    assert_eq!(code, 1, "override load must fail: {out}");
    assert!(out.starts_with("ERR INTERNAL"), "{out}");
    let log = s.log_text();
    assert!(
        log.contains("file for write /tmp/folder") && log.contains("Permission denied"),
        "Triton's write under /tmp refused:\n{log}"
    );
    assert!(!s.inside(&format!("/dev/shm/{marker}")).exists());
    // The folder Triton made for the override holds nothing (and is gone: Triton removed it).
    let folder = log
        .split("for write /tmp/")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap();
    assert!(folder.starts_with("folder"), "{folder}");
    assert!(
        !s.inside(&format!("/tmp/{folder}")).exists(),
        "{folder} left"
    );
    assert!(
        names(&s.inside("/tmp"))
            .iter()
            .any(|n| n.starts_with("python_env_"))
    );
    assert!(!adapter_status(t, s).contains("evil"));

    // UnloadModel; RuntimeStatus then sees nothing loaded (bounded: unloading is asynchronous).
    let (code, out) = client(t, &["adapter", &s.grpc_addr(), "unload", "add"]);
    assert_eq!((code, out.as_str()), (0, "OK {\"unloaded\":\"add\"}"));
    let t0 = Instant::now();
    while !adapter_status(t, s).contains("\"loaded\":[]") {
        assert!(t0.elapsed() < Duration::from_secs(30), "add still loaded");
        sleep(Duration::from_millis(200));
    }
}

/// The same, rootless as in the ModelMesh pod (non-root uid, no capabilities: no private /tmp,
/// the Landlock make_dirs rule alone keeps the override files out of the host's /tmp).
#[test]
fn adapter_flow_rootless() {
    let t = install();
    let _serial = serial();
    let dir = tempdir("stockade-mm-rootless-");
    let run = dir.path().join("run");
    fs::create_dir(&run).unwrap();
    fs::set_permissions(&run, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&run, Some(NOBODY), Some(NOBODY)).unwrap();
    let builtin = print_profile("triton-modelmesh");
    let profile = dir.path().join("triton-modelmesh-rootless.toml");
    fs::write(
        &profile,
        builtin.replace("/run/stockade/", &format!("{}/", run.display())),
    )
    .unwrap();
    fs::set_permissions(&profile, fs::Permissions::from_mode(0o644)).unwrap();
    let pre = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
    ];
    let mut s = Server::start_as(&t, &pre, profile.to_str().unwrap(), &[]);
    assert!(
        s.log_text().contains("Rootless"),
        "stockade ran rootless:\n{}",
        s.log_text()
    );
    assert_confined(s.server_pid);
    adapter_flow(&t, &s);
    assert_eq!(s.stop(), Some(0), "SIGTERM: clean exit\n{}", s.log_text());
}

fn print_profile(name: &str) -> String {
    let o = common::run(
        Command::new(stockade()).args(["--print-profile", name]),
        Duration::from_secs(10),
    );
    String::from_utf8(o.stdout).unwrap()
}

/// The control: the same override under `triton-explicit` (with the admin secret, /tmp read-write)
/// loads the injected model, whose code runs; and there the adapter, which sends no metadata, is
/// refused.
#[test]
fn control_override_runs_injected_code_where_tmp_is_writable() {
    let t = install();
    let _serial = serial();
    let mut s = Server::start(&t, "triton-explicit", &["--allow-grpc=true"]);
    let (code, out) = client(&t, &["adapter", &s.grpc_addr(), "load", "add"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("UNAVAILABLE This protocol is restricted, expecting header"),
        "{out}"
    );
    let secret = fs::read_to_string(SECRET_FILE).unwrap();
    let header = format!("triton-grpc-protocol-x-stockade-admin={}", secret.trim());
    let marker = format!("injected-{}", std::process::id());
    let (code, out) = client(
        &t,
        &[
            "override-load",
            &s.grpc_addr(),
            "evil",
            &marker,
            "--header",
            &header,
        ],
    );
    assert_eq!((code, out.as_str()), (0, "OK {\"loaded\": \"evil\"}"));
    assert_eq!(
        fs::read_to_string(s.inside(&format!("/dev/shm/{marker}"))).unwrap(),
        "injected",
        "the injected model's code ran"
    );
    assert_eq!(s.stop(), Some(0));
}

/// A non-loopback gRPC address is refused before anything starts, naming the flag, even with a
/// derived profile whose [triton.listen] allows it; a profile that leaves /tmp writable to the
/// server is refused too.
#[test]
fn non_loopback_grpc_and_writable_tmp_refused_before_start() {
    let t = install();
    let dir = tempdir("stockade-mm-refuse-");
    let models = repository(dir.path());
    let run = |profile: &str, extra: &[&str]| {
        let mut c = Command::new(stockade());
        c.env_clear()
            .env("PATH", &t.path)
            .current_dir("/")
            .args(["--profile", profile, "--"])
            .arg(&t.server)
            .arg(format!("--model-repository={}", models.display()))
            .arg(format!("--backend-directory={}", t.backends.display()))
            .args(extra);
        let o = common::run(&mut c, Duration::from_secs(30));
        (o.status.code(), common::stderr(&o))
    };
    let (code, err) = run("triton-modelmesh", &["--grpc-address=0.0.0.0"]);
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.starts_with(
            "stockade: server flag refused: grpc-address: '0.0.0.0' is not a loopback address"
        ) && err.contains("[triton.open_model_repository]"),
        "{err}"
    );
    let builtin = print_profile("triton-modelmesh");
    let pod = dir.path().join("pod.toml");
    let allowed = "allowed_addresses = [\"127.0.0.1\", \"::1\"]";
    assert!(builtin.contains(allowed));
    fs::write(
        &pod,
        builtin.replace(
            allowed,
            "allowed_addresses = [\"127.0.0.1\", \"::1\", \"0.0.0.0\"]",
        ),
    )
    .unwrap();
    for a in ["0.0.0.0", "::ffff:127.0.0.1"] {
        let (code, err) = run(pod.to_str().unwrap(), &[&format!("--grpc-address={a}")]);
        assert_eq!(code, Some(78), "{a}: {err}");
        assert!(
            err.contains("refused: grpc-address: ") && err.contains("not a loopback"),
            "{err}"
        );
    }
    let writable = dir.path().join("writable-tmp.toml");
    let (rw, md) = (
        "read_write = [\"/dev/shm\", \"/dev/null\"]",
        "make_dirs = [\"/tmp\"]",
    );
    assert!(builtin.contains(rw) && builtin.contains(md));
    fs::write(
        &writable,
        builtin
            .replace(md, "")
            .replace(rw, "read_write = [\"/tmp\", \"/dev/shm\", \"/dev/null\"]"),
    )
    .unwrap();
    let (code, err) = run(writable.to_str().unwrap(), &[]);
    assert_eq!(code, Some(65), "{err}");
    assert!(
        err.contains("writable-tmp.toml:") && err.contains("/tmp out of landlock read_write"),
        "{err}"
    );
}
