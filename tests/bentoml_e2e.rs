//! The real BentoML 1.4.40 under `stockade --profile bentoml` (installed by
//! scripts/install-bentoml.sh into /opt/stockade/bentoml, or $STOCKADE_BENTOML_DIR).
//!
//! * `argv_that_widens_exposure_is_refused_before_start`: --host 0.0.0.0, --reload,
//!   --development, --env, a working dir outside the service roots, too many workers,
//!   BENTOML_CONFIG_OPTIONS: exit 78 with the flag or variable named, nothing started.
//! * `serves_confined_and_stops_cleanly`: ready, an API call, every process (the arbiter and its
//!   setsid'd worker) dropped, listeners only on 127.0.0.1, a hostile service method denied
//!   write/exec/bind/signal, the residual risk measured (ephemeral binds, circus endpoints
//!   reachable from outside), SIGTERM → exit 0, nothing left.
//! * `serves_rootless`: the same service with stockade itself started as uid 65534 (Kubernetes
//!   runAsNonRoot): ready, an API call, every process with no capabilities, NoNewPrivs and
//!   seccomp, listeners only on loopback, a hostile method still denied, SIGTERM → exit 0.
//!
//! Missing BentoML is a failure, not a skip. Requires root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::fs;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

mod common;
use common::free_port;
use common::procs::{alive, cmdline, descendants, exe, http_req, listening, proc_status};

const STOCKADE: &str = env!("CARGO_BIN_EXE_stockade");

struct Bento {
    exe: PathBuf,
    path: String,
}

fn bento() -> Bento {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the BentoML end-to-end tests need root (they drop to uid 65534)"
    );
    let dir = std::env::var("STOCKADE_BENTOML_DIR").unwrap_or("/opt/stockade/bentoml".into());
    let exe = Path::new(&dir).join("venv/bin/bentoml");
    assert!(
        exe.is_file(),
        "no BentoML at {}: run scripts/install-bentoml.sh (scripts/test.sh does)",
        exe.display()
    );
    Bento {
        exe,
        path: format!("{dir}/venv/bin:/usr/bin:/bin"),
    }
}

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A world-traversable service root holding the fixture service in `svc/`, and the built-in
/// profile with that root as its only service root.
fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    setup_in("/tmp")
}

/// `setup` under `base`: rootless runs have no private /tmp, so the service must live outside
/// the profile's read-write /tmp (stockade refuses a service root inside a writable path).
fn setup_in(base: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let d = tempfile::Builder::new()
        .prefix("stockade-bentoml-")
        .tempdir_in(base)
        .unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let svc = d.path().join("svc");
    fs::create_dir(&svc).unwrap();
    fs::set_permissions(&svc, fs::Permissions::from_mode(0o755)).unwrap();
    let f = svc.join("service.py");
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bentoml/service.py"),
        &f,
    )
    .unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(STOCKADE)
        .args(["--print-profile", "bentoml"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let from = "service_roots = [\"/srv/bentoml\", \"/opt/stockade/bentoml/services\"]";
    assert!(text.contains(from));
    let text = text.replace(from, &format!("service_roots = [\"{}\"]", svc.display()));
    let profile = d.path().join("bentoml.toml");
    fs::write(&profile, text).unwrap();
    (d, svc, profile)
}

fn stockade(b: &Bento, profile: &Path, env: &[(&str, &str)], args: &[String]) -> Command {
    let mut c = Command::new(STOCKADE);
    c.env_clear()
        .env("PATH", &b.path)
        .env("STOCKADE_LOG", "info")
        .envs(env.iter().copied())
        .current_dir("/")
        .arg("--profile")
        .arg(profile)
        .arg("--")
        .arg(&b.exe)
        .args(args);
    c
}

#[test]
fn argv_that_widens_exposure_is_refused_before_start() {
    let b = bento();
    let _g = serial();
    let (d, svc, profile) = setup();
    let port = free_port();
    let wd = format!("--working-dir={}", svc.display());
    let p = format!("--port={port}");
    /// (name, extra argv, environment, exit code, message after "stockade: ")
    type Case<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>, i32, String);
    let cases: Vec<Case> = vec![
        ("all interfaces", vec!["--host", "0.0.0.0"], vec![], 78,
         "server flag refused: --host: '0.0.0.0' is not a listed address".into()),
        ("reload", vec!["--reload"], vec![], 78, "server flag refused: --reload: refused".into()),
        ("development", vec!["--development"], vec![], 78,
         "server flag refused: --development: refused".into()),
        ("conda env", vec!["--env", "conda"], vec![], 78, "server flag refused: --env: refused".into()),
        ("workers", vec!["--api-workers=64"], vec![], 78,
         "server flag refused: --api-workers: 64 workers".into()),
        ("working dir outside the roots", vec!["--working-dir", "/etc"], vec![], 78,
         "server flag refused: --working-dir: /etc is outside bentoml.service_roots".into()),
        ("config overrides in the environment", vec![], vec![("BENTOML_CONFIG_OPTIONS", "api_server.http.host=0.0.0.0")], 78,
         "server configuration refused: environment variable BENTOML_CONFIG_OPTIONS: BENTOML_CONFIG_OPTIONS:".into()),
    ];
    let mut failures = Vec::new();
    for (name, extra, env, code, want) in &cases {
        // The profile passes only what [env] lists: name the variable there for this case.
        let prof = if env.is_empty() {
            profile.clone()
        } else {
            let text = fs::read_to_string(&profile).unwrap().replace(
                "pass = [\"PATH\", \"LANG\", \"LC_ALL\", \"TZ\"]",
                &format!(
                    "pass = [\"PATH\", \"LANG\", \"LC_ALL\", \"TZ\", \"{}\"]",
                    env[0].0
                ),
            );
            let p2 = d.path().join("env.toml");
            fs::write(&p2, text).unwrap();
            p2
        };
        let mut args: Vec<String> = vec!["serve".into(), "service:Calc".into(), p.clone()];
        if !extra.iter().any(|a| a.starts_with("--working-dir")) {
            args.push(wd.clone());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let t0 = Instant::now();
        let out = stockade(&b, &prof, env, &args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        println!(
            "[refusal] {name:<40} exit {:?} in {:?}",
            out.status.code(),
            t0.elapsed()
        );
        let want = format!("stockade: {want}");
        if out.status.code() != Some(*code)
            || lines.len() != 1
            || !lines[0].starts_with(&want)
            || TcpStream::connect(("127.0.0.1", port)).is_ok()
        {
            failures.push(format!(
                "{name}: exit {:?}; stderr:\n{err}\nwant: {want}",
                out.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
}

#[test]
fn serves_confined_and_stops_cleanly() {
    let b = bento();
    let _g = serial();
    let (d, svc, profile) = setup();
    let port = free_port();
    let log = d.path().join("stderr");
    let args = vec![
        "serve".to_string(),
        "service:Calc".into(),
        format!("--port={port}"),
        format!("--working-dir={}", svc.display()),
    ];
    let mut cmd = stockade(&b, &profile, &[], &args);
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(d.path().join("stdout")).unwrap())
        .stderr(fs::File::create(&log).unwrap());
    let t0 = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let pid = child.id() as i32;
    let fail = |child: &mut std::process::Child, what: String| -> ! {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
        panic!(
            "{what}\nstockade stderr:\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
    };
    loop {
        if http_req(port, "GET", "/readyz", "").is_some_and(|(c, _)| c == 200) {
            break;
        }
        if let Some(st) = child.try_wait().unwrap() {
            fail(&mut child, format!("stockade exited before ready: {st}"));
        }
        if t0.elapsed() > Duration::from_secs(120) {
            fail(&mut child, "not ready within 120 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "[bentoml] time-to-ready {:.3} s",
        t0.elapsed().as_secs_f64()
    );
    let t1 = Instant::now();
    let answer = http_req(port, "POST", "/add", r#"{"a": 1.5, "b": 2.25}"#);
    println!(
        "[bentoml] api call {:.1} ms",
        t1.elapsed().as_secs_f64() * 1e3
    );
    match &answer {
        Some((200, body)) if body.trim() == "3.75" => {}
        other => fail(&mut child, format!("api answer: {other:?}")),
    }

    // Every server process, the worker that setsid()s away from the group included.
    let stockade_exe = fs::canonicalize(STOCKADE).unwrap();
    let servers: Vec<i32> = descendants(pid)
        .into_iter()
        .filter(|p| exe(*p) != stockade_exe)
        .collect();
    if !servers
        .iter()
        .any(|p| cmdline(*p).contains("_bentoml_impl.worker"))
    {
        fail(&mut child, format!("no worker among {servers:?}"));
    }
    for p in &servers {
        let st = proc_status(*p);
        let what = format!("pid {p} ({})", cmdline(*p));
        assert_eq!(st["Uid"], "65534\t65534\t65534\t65534", "{what}: Uid");
        assert_eq!(st["Gid"], "65534\t65534\t65534\t65534", "{what}: Gid");
        assert_eq!(st["Groups"], "", "{what}: Groups");
        for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(st[cap], "0000000000000000", "{what}: {cap}");
        }
        assert_eq!(st["NoNewPrivs"], "1", "{what}: NoNewPrivs");
        assert_eq!(st["Seccomp"], "2", "{what}: Seccomp");
    }
    println!(
        "[bentoml] {} server processes confined: {servers:?}",
        servers.len()
    );
    // The kind's environment reached the server: telemetry off, BENTOML_HOME private.
    for p in &servers {
        let environ: Vec<String> = fs::read(format!("/proc/{p}/environ"))
            .unwrap()
            .split(|b| *b == 0)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        for want in [
            "BENTOML_DO_NOT_TRACK=true",
            "BENTOML_HOME=/tmp/bentoml-home",
        ] {
            // (the arbiter hands its worker "True")
            assert!(
                environ.iter().any(|e| e.eq_ignore_ascii_case(want)),
                "pid {p}: no {want}: {environ:?}"
            );
        }
    }
    // The service port only on loopback; the other listeners are circus's zmq endpoints, which
    // the dry run names as the residual risk: they must be on loopback too.
    let listeners: BTreeSet<String> = servers.iter().flat_map(|p| listening(*p)).collect();
    assert!(
        listeners.contains(&format!("127.0.0.1:{port}")),
        "{listeners:?}"
    );
    assert!(
        listeners.iter().all(|l| l.starts_with("127.0.0.1:")),
        "{listeners:?}"
    );
    println!("[bentoml] listeners {listeners:?}");

    // A compromised service method: denied with its errno inside, absent outside.
    let free = free_port();
    let planted = svc.join("service.py");
    let before = fs::read(&planted).unwrap();
    let probe = |op: &str| -> String {
        let body = format!("{{\"op\": \"{op}\"}}");
        match http_req(port, "POST", "/probe", &body) {
            Some((200, b)) => b.trim().trim_matches('"').to_string(),
            other => format!("HTTP {other:?}"),
        }
    };
    let mut failures = Vec::new();
    for (op, want) in [
        (
            format!("write:{}", planted.display()),
            &["EROFS", "EACCES"][..],
        ),
        ("exec:/tmp/probe-true".to_string(), &["EACCES"][..]),
        (format!("bind:{}", 1024 + free % 1000), &["EACCES"][..]),
        ("signal-supervisor".to_string(), &["EPERM"][..]),
    ] {
        let got = probe(&op);
        println!("[bentoml] probe {op:<60} -> {got}");
        if !want.contains(&got.as_str()) {
            failures.push(format!("{op}: got {got}, want {want:?}"));
        }
    }
    assert_eq!(fs::read(&planted).unwrap(), before, "service code changed");
    if let Some(st) = child.try_wait().unwrap() {
        fail(
            &mut child,
            format!("stockade exited after the probes: {st}"),
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Residual risk, measured (the start-up warning states it): a port in the ephemeral range is
    // bindable from inside, and circus's controller endpoints accept connections from outside
    // the sandbox.
    let (lo, _) = (32768u16, 60999u16);
    let residual = probe(&format!("bind:{}", lo + free % 20000));
    println!("[bentoml] residual: bind inside the ephemeral range -> {residual}");
    assert_eq!(
        residual, "ok",
        "the ephemeral range is bindable (the stated residual risk)"
    );
    for l in listeners
        .iter()
        .filter(|l| **l != format!("127.0.0.1:{port}"))
    {
        let reachable = TcpStream::connect(l.as_str()).is_ok();
        println!("[bentoml] residual: circus endpoint {l} reachable from outside: {reachable}");
    }

    let t2 = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t2.elapsed() > Duration::from_secs(40) {
            fail(&mut child, "still running 40 s after SIGTERM".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    println!("[bentoml] stop took {:.3} s", t2.elapsed().as_secs_f64());
    let err = fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "exit after SIGTERM; stderr:\n{err}");
    let left: Vec<i32> = servers.iter().copied().filter(|p| alive(*p)).collect();
    assert!(
        left.is_empty(),
        "server processes left after stop: {left:?}"
    );
}

/// Rootless (stockade started as uid 65534 with setpriv, as under Kubernetes runAsNonRoot): no id
/// change and no private mounts, but every server process (the arbiter and its worker) still has
/// no capabilities, NoNewPrivs and seccomp; the service answers, listens only on loopback, a
/// hostile method is still denied, and SIGTERM stops everything with exit 0.
#[test]
fn serves_rootless() {
    let b = bento();
    let _g = serial();
    let (d, svc, profile) = setup_in("/var/tmp");
    let port = free_port();
    let log = d.path().join("stderr");
    let mut cmd = Command::new("setpriv");
    cmd.env_clear()
        .env("PATH", &b.path)
        .env("STOCKADE_LOG", "info")
        .current_dir("/")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", STOCKADE])
        .arg("--profile")
        .arg(&profile)
        .arg("--")
        .arg(&b.exe)
        .args([
            "serve".to_string(),
            "service:Calc".into(),
            format!("--port={port}"),
            format!("--working-dir={}", svc.display()),
        ])
        .stdin(Stdio::null())
        .stdout(fs::File::create(d.path().join("stdout")).unwrap())
        .stderr(fs::File::create(&log).unwrap());
    let t0 = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let pid = child.id() as i32;
    let fail = |child: &mut std::process::Child, what: String| -> ! {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
        panic!(
            "{what}\nstockade stderr:\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
    };
    loop {
        if http_req(port, "GET", "/readyz", "").is_some_and(|(c, _)| c == 200) {
            break;
        }
        if let Some(st) = child.try_wait().unwrap() {
            fail(&mut child, format!("stockade exited before ready: {st}"));
        }
        if t0.elapsed() > Duration::from_secs(120) {
            fail(&mut child, "not ready within 120 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "[bentoml rootless] time-to-ready {:.3} s",
        t0.elapsed().as_secs_f64()
    );
    match http_req(port, "POST", "/add", r#"{"a": 1.5, "b": 2.25}"#) {
        Some((200, body)) if body.trim() == "3.75" => {}
        other => fail(&mut child, format!("api answer: {other:?}")),
    }
    // setpriv made stockade itself uid 65534: check it, then every process below it.
    let own = proc_status(pid);
    assert_eq!(own["Uid"], "65534\t65534\t65534\t65534", "stockade: Uid");
    let stockade_exe = fs::canonicalize(STOCKADE).unwrap();
    let servers: Vec<i32> = descendants(pid)
        .into_iter()
        .filter(|p| exe(*p) != stockade_exe)
        .collect();
    if !servers
        .iter()
        .any(|p| cmdline(*p).contains("_bentoml_impl.worker"))
    {
        fail(&mut child, format!("no worker among {servers:?}"));
    }
    for p in &servers {
        let st = proc_status(*p);
        let what = format!("pid {p} ({})", cmdline(*p));
        assert_eq!(st["Uid"], "65534\t65534\t65534\t65534", "{what}: Uid");
        for cap in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
            assert_eq!(st[cap], "0000000000000000", "{what}: {cap}");
        }
        assert_eq!(st["NoNewPrivs"], "1", "{what}: NoNewPrivs");
        assert_eq!(st["Seccomp"], "2", "{what}: Seccomp");
    }
    println!(
        "[bentoml rootless] {} server processes confined: {servers:?}",
        servers.len()
    );
    let listeners: BTreeSet<String> = servers.iter().flat_map(|p| listening(*p)).collect();
    assert!(
        listeners.contains(&format!("127.0.0.1:{port}")),
        "{listeners:?}"
    );
    assert!(
        listeners.iter().all(|l| l.starts_with("127.0.0.1:")),
        "{listeners:?}"
    );
    // Same uid as the server, so only Landlock and the scopes stand between a hostile method and
    // the service code, the supervisor and the port space.
    let planted = svc.join("service.py");
    let before = fs::read(&planted).unwrap();
    let free = free_port();
    let mut failures = Vec::new();
    for (op, want) in [
        (format!("write:{}", planted.display()), &["EACCES"][..]),
        (format!("bind:{}", 1024 + free % 1000), &["EACCES"][..]),
        ("signal-supervisor".to_string(), &["EPERM"][..]),
    ] {
        let got = match http_req(port, "POST", "/probe", &format!("{{\"op\": \"{op}\"}}")) {
            Some((200, b)) => b.trim().trim_matches('"').to_string(),
            other => format!("HTTP {other:?}"),
        };
        println!("[bentoml rootless] probe {op:<60} -> {got}");
        if !want.contains(&got.as_str()) {
            failures.push(format!("{op}: got {got}, want {want:?}"));
        }
    }
    assert_eq!(fs::read(&planted).unwrap(), before, "service code changed");
    if let Some(st) = child.try_wait().unwrap() {
        fail(
            &mut child,
            format!("stockade exited after the probes: {st}"),
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let t2 = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t2.elapsed() > Duration::from_secs(40) {
            fail(&mut child, "still running 40 s after SIGTERM".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    println!(
        "[bentoml rootless] stop took {:.3} s",
        t2.elapsed().as_secs_f64()
    );
    let err = fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "exit after SIGTERM; stderr:\n{err}");
    let left: Vec<i32> = servers.iter().copied().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "left after stop: {left:?}");
}
