//! `stockade learn` on the real kernel and real servers: record → write → replay enforced.
//!
//! * `records_every_path_a_recorder_can_miss`: a thread, a fork without exec, an exec'd helper
//!   and the SIGTERM path each make one distinctive syscall, all recorded; a call every profile
//!   kills is reported, not added; none of the launcher's own set-up is in the result.
//! * `learned_profile_replays_clean_and_a_gap_is_named`: learn → --verify passes; the same
//!   profile with one learned syscall removed fails its replay (exit 79) naming that syscall.
//! * `python_http_server_round_trip`: a small Python HTTP server learned with a client, replayed,
//!   then enforced by plain `stockade --profile` and serving, confined.
//! * `triton_round_trip`: the real Triton, learned from the built-in triton profile (the ceiling),
//!   replayed with an inference, then enforced serving inference and stopping cleanly.
//! * `rootless_learning_works` and `bad_learn_input_is_refused`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Sandbox, free_port, require_root, run, stderr, stockade};

/// The learned profile's seccomp allow-list.
fn allow_list(profile: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(profile).unwrap();
    let v: toml::Value = toml::from_str(&text).unwrap();
    v["seccomp"]["allow"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn learn(args: &[&str], limit: Duration) -> std::process::Output {
    let mut c = Command::new(stockade());
    c.arg("learn").args(args).current_dir("/");
    run(&mut c, limit)
}

/// `stockade --profile PROFILE -- ARGV` started from `/` with only `PATH` (None: inherited).
fn enforced(path: Option<&str>, profile: &Path, argv: &[String]) -> std::process::Child {
    let mut c = Command::new(stockade());
    if let Some(p) = path {
        c.env_clear().env("PATH", p);
    }
    c.current_dir("/")
        .arg("--profile")
        .arg(profile)
        .arg("--")
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `f` until it answers, at most `limit`.
fn poll<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// SIGTERM to the stockade we started; its exit code must be `code`.
fn stop_expecting(child: std::process::Child, code: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let o = common::wait_output(child, Duration::from_secs(90));
    assert_eq!(o.status.code(), Some(code), "{}", stderr(&o));
}

/// The kernel's audit switch (netlink AUDIT_GET, through python3: no audit tool on this host).
fn audit_enabled() -> String {
    let o = Command::new("python3")
        .arg("-c")
        .arg(
            "import socket,struct\n\
             s=socket.socket(socket.AF_NETLINK,socket.SOCK_RAW,9);s.bind((0,0))\n\
             s.send(struct.pack('IHHII',16,1000,5,1,0))\n\
             for _ in range(2):\n\
             \x20d=s.recv(8192)\n\
             \x20if struct.unpack('IHHII',d[:16])[1]==1000: print(struct.unpack('II',d[16:24])[1])",
        )
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The syscalls stockade's child makes between fork and exec: none may be in a learned profile.
const LAUNCHER_SETUP: &[&str] = &[
    "landlock_create_ruleset",
    "landlock_add_rule",
    "landlock_restrict_self",
    "seccomp",
    "setgroups",
    "setresuid",
    "setresgid",
    "capset",
    "prctl",
    "pivot_root",
    "mount",
    "mount_setattr",
    "open_tree",
    "move_mount",
    "unshare",
    "setpgid",
    "setrlimit",
    "chdir",
];

#[test]
fn records_every_path_a_recorder_can_miss() {
    require_root();
    let sb = Sandbox::new();
    let base = sb.profile(free_port(), "");
    let out = sb.path("rw/learned.toml");
    let o = learn(
        &[
            "--profile",
            base.to_str().unwrap(),
            "--widen",
            "-o",
            out.to_str().unwrap(),
            "--client",
            "sleep 1",
            "--",
            &sb.probe(),
            "learn-target",
            "kill",
        ],
        Duration::from_secs(60),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    // The probe saw acct answered EPERM (the base kills it; learning answered instead).
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("acct=EPERM"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let allow = allow_list(&out);
    for (name, path) in [
        ("getpriority", "a thread"),
        ("sched_getscheduler", "a forked child that did not exec"),
        ("sysinfo", "an exec'd helper"),
        ("times", "the SIGTERM handler"),
    ] {
        assert!(
            allow.contains(name),
            "{name} (made only by {path}) was not recorded: {allow:?}"
        );
    }
    assert!(!allow.contains("acct"), "a killed syscall was widened");
    // TIOCSTI was refused by the fixed rule, TCGETS allowed: ioctl stays, the rule with it.
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("tiocsti=EPERM"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(
        allow.contains("ioctl"),
        "one refused call took ioctl away: {allow:?}"
    );
    assert!(
        err.contains("kept refused: ioctl (request 0x5412)"),
        "{err}"
    );
    // Answered by the vDSO, so never seen, and kept: a fallback reaches the kernel.
    for name in [
        "clock_gettime",
        "gettimeofday",
        "rt_sigreturn",
        "exit_group",
    ] {
        assert!(allow.contains(name), "{name} missing: {allow:?}");
    }
    assert!(
        err.contains("kept refused: acct (1 calls) — the base kills it"),
        "{err}"
    );
    for name in LAUNCHER_SETUP {
        assert!(
            !allow.contains(*name),
            "stockade's own set-up ({name}) is in the learned profile: {allow:?}"
        );
    }
    // Replayed, the base's kill is the kernel's again: the replay fails and names the call.
    let o = learn(
        &[
            "--replay",
            out.to_str().unwrap(),
            "--",
            &sb.probe(),
            "learn-target",
            "kill",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(o.status.code(), Some(79), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("seccomp killed the server (acct"),
        "{}",
        stderr(&o)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("# recorded on:    Linux 6."), "{text}");
    assert!(text.contains("Landlock ABI 7"), "{text}");
    assert!(text.contains("#   sysinfo"), "coverage comments: {text}");
}

#[test]
fn learned_profile_replays_clean_and_a_gap_is_named() {
    require_root();
    let audit_before = audit_enabled();
    let sb = Sandbox::new();
    let base = sb.profile(free_port(), "");
    let out = sb.path("rw/learned.toml");
    let probe = sb.probe();
    let o = learn(
        &[
            "--profile",
            base.to_str().unwrap(),
            "--widen",
            "-o",
            out.to_str().unwrap(),
            "--verify",
            "--client",
            "sleep 1",
            "--",
            &probe,
            "learn-target",
        ],
        Duration::from_secs(60),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("no denial; server exited 0"), "{err}");

    // The replay switched auditing on for itself (root): it is back as it was once the last
    // replay running (other tests replay concurrently) is done.
    let restored = poll(Duration::from_secs(90), || {
        (audit_enabled() == audit_before).then_some(())
    });
    assert!(restored.is_some(), "kernel auditing left changed");

    // Take one learned syscall out: the replay must fail and name it.
    let text = std::fs::read_to_string(&out).unwrap();
    let gap = sb.path("rw/gap.toml");
    std::fs::write(&gap, text.replace("\"sysinfo\", ", "")).unwrap();
    assert!(!allow_list(&gap).contains("sysinfo"));
    let o = learn(
        &[
            "--replay",
            gap.to_str().unwrap(),
            "--client",
            "sleep 1",
            "--",
            &probe,
            "learn-target",
        ],
        Duration::from_secs(60),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(79), "{err}");
    assert!(
        err.contains("denied seccomp: sysinfo is not in the allow-list"),
        "{err}"
    );
}

#[test]
fn python_http_server_round_trip() {
    require_root();
    let sb = Sandbox::new();
    let out = sb.path("rw/http.toml");
    let port = free_port();
    let client = format!(
        "for i in $(seq 100); do curl -sf http://127.0.0.1:{port}/ >/dev/null && exit 0; \
         sleep 0.1; done; exit 1"
    );
    let ps = port.to_string();
    let served = sb.path("ro");
    let server = [
        "/usr/bin/python3",
        "-m",
        "http.server",
        "--directory",
        served.to_str().unwrap(),
        "--bind",
        "127.0.0.1",
        &ps,
    ];
    let mut args = vec![
        "--profile",
        "minimal",
        "--widen",
        "-o",
        out.to_str().unwrap(),
        "--verify",
        "--client",
        &client,
        "--",
    ];
    args.extend(server);
    let o = learn(&args, Duration::from_secs(90));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("no denial"), "{err}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains(&format!("bind_tcp = [{port}]")), "{text}");

    // Enforced by a plain start: it serves, confined, and stops on SIGTERM.
    let argv: Vec<String> = server.iter().map(|a| a.to_string()).collect();
    let child = enforced(None, &out, &argv);
    let pid = child.id() as i32;
    let answer = poll(Duration::from_secs(20), || {
        common::procs::http_req(port, "GET", "/", "").filter(|(c, _)| *c == 200)
    });
    assert!(answer.is_some(), "the learned profile does not serve");
    let py = common::procs::descendants(pid)
        .into_iter()
        .find(|p| common::procs::exe(*p).to_string_lossy().contains("python"))
        .unwrap();
    let st = common::procs::proc_status(py);
    assert_eq!(st["Uid"], "65534\t65534\t65534\t65534");
    assert_eq!(st["NoNewPrivs"], "1");
    assert_eq!(st["Seccomp"], "2");
    assert_eq!(st["CapEff"], "0000000000000000");
    // python's http.server has no SIGTERM handler: it dies of the signal, as it does bare.
    stop_expecting(child, 128 + 15);

    // The attack, replayed: the same interpreter binding a port the profile does not grant is
    // denied by Landlock (EACCES seen by the tracer; as root the kernel's record is printed too,
    // best effort on a busy log), and the replay fails.
    let other = free_port();
    let o = learn(
        &[
            "--replay",
            out.to_str().unwrap(),
            "--",
            "/usr/bin/python3",
            "-c",
            &format!("import socket; socket.socket().bind(('127.0.0.1', {other}))"),
        ],
        Duration::from_secs(60),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(79), "{err}");
    assert!(
        err.contains(&format!(
            "denied bind tcp/unix stream port {other} (Permission denied)"
        )),
        "{err}"
    );
}

/// /opt/stockade/triton/env.sh's values (scripts/install-triton.sh).
fn triton_env() -> std::collections::BTreeMap<String, String> {
    let text = std::fs::read_to_string("/opt/stockade/triton/env.sh")
        .expect("Triton is not installed: run scripts/install-triton.sh");
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

#[test]
fn triton_round_trip() {
    require_root();
    let env = triton_env();
    let work = tempfile::Builder::new()
        .prefix("stockade-learn-triton-")
        .tempdir()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let models = work.path().join("models");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/triton/models/add");
    std::fs::create_dir_all(&models).unwrap();
    let st = Command::new("cp")
        .arg("-r")
        .arg(&fixture)
        .arg(&models)
        .status();
    assert!(st.unwrap().success());
    Command::new("chmod")
        .args(["-R", "u=rwX,go=rX"])
        .arg(&models)
        .status()
        .unwrap();
    let out = work.path().join("learned.toml");
    let (http, grpc) = (free_port(), free_port());
    let client_py = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/triton/client.py");
    let py = &env["TRITON_PYTHON"];
    let client = format!(
        "for i in $(seq 600); do {py} {c} http 127.0.0.1:{http} GET /v2/health/ready 2>/dev/null \
         | grep -q '^200 ' && break; sleep 0.1; done; {py} {c} http-infer 127.0.0.1:{http} add",
        c = client_py.display()
    );
    let server: Vec<String> = vec![
        env["TRITONSERVER"].clone(),
        format!("--model-repository={}", models.display()),
        format!("--backend-directory={}", env["TRITON_BACKENDS"]),
        format!("--http-port={http}"),
        format!("--grpc-port={grpc}"),
    ];
    let mut c = Command::new(stockade());
    c.env_clear()
        .env("PATH", &env["TRITON_PATH"])
        .current_dir("/")
        .args(["learn", "--profile", "triton", "-o"])
        .arg(&out)
        .args(["--verify", "--client", &client, "--"])
        .args(&server);
    let o = run(&mut c, Duration::from_secs(240));
    let err = stderr(&o);
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(
        stdout.matches("OK [11.0, 22.0, 33.0, 44.0]").count(),
        2,
        "inference while learning and in the replay: {stdout}"
    );
    assert!(err.contains("no denial; server exited 0"), "{err}");

    // The base is the ceiling: every learned syscall is one the built-in profile allows.
    let learned = allow_list(&out);
    let dry = Command::new(stockade())
        .env_clear()
        .env("PATH", &env["TRITON_PATH"])
        .args(["--profile", "triton", "--dry-run", "--format", "json", "--"])
        .args(&server)
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    // Plain and argument-checked: a learned `ioctl` or `socket` keeps stockade's fixed
    // argument rules, which every profile composes with its allow-list.
    let base_allowed: BTreeSet<String> = ["allowed", "allowed_if_arguments_match"]
        .iter()
        .flat_map(|k| plan["seccomp"][k].as_array().unwrap().clone())
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let beyond: Vec<_> = learned.difference(&base_allowed).collect();
    assert!(beyond.is_empty(), "learned beyond the base: {beyond:?}");
    eprintln!(
        "[triton] learned {} syscalls of the base's {}; not used in this run: {:?}",
        learned.len(),
        base_allowed.len(),
        base_allowed.difference(&learned).collect::<Vec<_>>()
    );

    // Enforced by a plain start: ready, inference, SIGTERM → exit 0.
    let child = enforced(Some(&env["TRITON_PATH"]), &out, &server);
    let ready = poll(Duration::from_secs(120), || {
        common::procs::http_req(http, "GET", "/v2/health/ready", "").filter(|(c, _)| *c == 200)
    });
    assert!(
        ready.is_some(),
        "Triton under the learned profile did not become ready"
    );
    let infer = Command::new(py)
        .arg(&client_py)
        .args(["http-infer", &format!("127.0.0.1:{http}"), "add"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&infer.stdout).contains("OK [11.0, 22.0, 33.0, 44.0]"),
        "{}",
        String::from_utf8_lossy(&infer.stderr)
    );
    stop_expecting(child, 0);
}

#[test]
fn rootless_learning_works() {
    require_root();
    let dir = tempfile::Builder::new()
        .prefix("stockade-learn-rootless-")
        .tempdir()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = dir.path().join("true.toml");
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
    ])
    .arg(stockade())
    .args(["learn", "--profile", "minimal", "--widen", "-o"])
    .arg(&out)
    .args(["--verify", "--", "/bin/true"])
    .current_dir("/");
    let o = run(&mut c, Duration::from_secs(60));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("no denial"), "{err}");
    // Recorded, not kept-unseen: the exec stopped for the rootless tracer.
    let allow = allow_list(&out);
    assert!(allow.contains("execve"), "{allow:?}");
    // What degrades, said: no kernel audit records for an unprivileged replay.
    assert!(err.contains("audit records are not readable"), "{err}");
}

#[test]
fn bad_learn_input_is_refused() {
    let o = learn(
        &["--profile", "minimal", "--", "/bin/true"],
        Duration::from_secs(10),
    );
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(stderr(&o).contains("--output"), "{}", stderr(&o));
    let o = learn(
        &[
            "--profile",
            "minimal",
            "-o",
            "/nonexistent-stockade-dir/x.toml",
            "--",
            "/bin/true",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(o.status.code(), Some(66), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("/nonexistent-stockade-dir"),
        "{}",
        stderr(&o)
    );
    let o = learn(
        &[
            "--profile",
            "no-such-profile",
            "-o",
            "/tmp/x.toml",
            "--",
            "/bin/true",
        ],
        Duration::from_secs(10),
    );
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// MLServer 1.7.1 (scripts/install-mlserver.sh), learned from the built-in mlserver profile
/// with an inference as the client, replayed, then enforced serving inference.
#[test]
fn mlserver_round_trip() {
    require_root();
    let dir = std::env::var("STOCKADE_MLSERVER_DIR").unwrap_or("/opt/stockade/mlserver".into());
    let exe = Path::new(&dir).join("venv/bin/mlserver");
    assert!(
        exe.is_file(),
        "no MLServer at {}: run scripts/install-mlserver.sh",
        exe.display()
    );
    let path = format!("{dir}/venv/bin:/usr/bin:/bin");
    let work = tempfile::Builder::new()
        .prefix("stockade-learn-mlserver-")
        .tempdir()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let repo = work.path().join("models");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mlserver/models");
    assert!(
        Command::new("cp")
            .arg("-r")
            .arg(&fixture)
            .arg(&repo)
            .status()
            .unwrap()
            .success()
    );
    let (http, grpc, metrics) = (free_port(), free_port(), free_port());
    std::fs::write(
        repo.join("settings.json"),
        format!("{{\"http_port\": {http}, \"grpc_port\": {grpc}, \"metrics_port\": {metrics}}}"),
    )
    .unwrap();
    Command::new("chmod")
        .args(["-R", "u=rwX,go=rX"])
        .arg(&repo)
        .status()
        .unwrap();
    let out = work.path().join("learned.toml");
    let body = r#"{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[2],"data":[1,2]},{"name":"INPUT1","datatype":"FP32","shape":[2],"data":[10,20]}]}"#;
    let client = format!(
        "for i in $(seq 600); do curl -sf http://127.0.0.1:{http}/v2/health/ready >/dev/null && break; \
         sleep 0.1; done; curl -sf -H 'Content-Type: application/json' -d '{body}' \
         http://127.0.0.1:{http}/v2/models/add/infer"
    );
    let repo_s = repo.display().to_string();
    let mut c = Command::new(stockade());
    c.env_clear()
        .env("PATH", &path)
        .current_dir("/")
        .args(["learn", "--profile", "mlserver", "-o"])
        .arg(&out)
        .args(["--verify", "--client", &client, "--"])
        .arg(&exe)
        .args(["start", &repo_s]);
    let o = run(&mut c, Duration::from_secs(300));
    let err = stderr(&o);
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(
        stdout.matches("\"OUTPUT0\"").count(),
        2,
        "inference while learning and in the replay: {stdout}"
    );
    assert!(err.contains("no denial"), "{err}");

    // Enforced by a plain start: ready, inference, SIGTERM → exit 0.
    let argv = vec![exe.display().to_string(), "start".into(), repo_s.clone()];
    let child = enforced(Some(&path), &out, &argv);
    let answer = poll(Duration::from_secs(120), || {
        common::procs::http_req(http, "POST", "/v2/models/add/infer", body)
            .filter(|(c, b)| *c == 200 && b.contains("OUTPUT0"))
    });
    assert!(
        answer.is_some(),
        "MLServer under the learned profile does not serve"
    );
    stop_expecting(child, 0);
}

/// No client: the operator stops the learner with SIGINT (Ctrl-C), it stops the server, and the
/// profile is still written, with the server's SIGTERM path in it.
#[test]
fn a_signal_to_the_learner_still_writes_the_profile() {
    require_root();
    let sb = Sandbox::new();
    let base = sb.profile(free_port(), "");
    let out = sb.path("rw/stopped.toml");
    let mut child = Command::new(stockade())
        .args([
            "learn",
            "--profile",
            base.to_str().unwrap(),
            "--widen",
            "-o",
        ])
        .arg(&out)
        .arg("--")
        .args([sb.probe().as_str(), "learn-target"])
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the probe's "ready" (it then waits for SIGTERM).
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let end = Instant::now() + Duration::from_secs(20);
    let mut ready = false;
    while Instant::now() < end && !ready {
        match lines.next() {
            Some(Ok(l)) => ready = l == "ready",
            _ => break,
        }
    }
    assert!(ready, "the probe did not get ready under the learner");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let o = common::wait_output(child, Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let allow = allow_list(&out);
    // SIGINT is forwarded as is: the probe dies of it (no handler), so no `times`; the profile
    // is written all the same.
    assert!(allow.contains("sysinfo"), "{allow:?}");
    assert!(
        stderr(&o).contains("server killed by SIGINT"),
        "{}",
        stderr(&o)
    );
}

/// Names a recorder gets wrong: an O_TMPFILE file (its fd reads "/dir/#123 (deleted)"), a UNIX
/// socket bound by a relative name after chdir, a file whose name holds a newline and a quote.
/// The profile must load and pass its replay, and no name may start a TOML line of its own.
#[test]
fn odd_names_make_a_profile_that_loads() {
    require_root();
    let sb = Sandbox::new();
    let rw = sb.path("rw");
    let script = sb.path("ro/odd.py");
    std::fs::write(
        &script,
        format!(
            r#"import os, socket
rw = "{rw}"
fd = os.open(rw, os.O_TMPFILE | os.O_WRONLY, 0o600); os.write(fd, b"x"); os.close(fd)
os.chdir(rw)
s = socket.socket(socket.AF_UNIX); s.bind("rel.sock"); s.close(); os.unlink("rel.sock")
open(os.path.join(rw, 'x\n[capabilities]\nkeep = ["CAP_SYS_ADMIN"]\n"'), "w").close()
print("done")
"#,
            rw = rw.display()
        ),
    )
    .unwrap();
    let base = sb.profile(free_port(), "");
    let out = sb.path("rw/odd.toml");
    let o = learn(
        &[
            "--profile",
            base.to_str().unwrap(),
            "--widen",
            "-o",
            out.to_str().unwrap(),
            "--verify",
            "--",
            "/usr/bin/python3",
            script.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("no denial; server exited 0"), "{err}");
    let text = std::fs::read_to_string(&out).unwrap();
    let v: toml::Value = toml::from_str(&text).unwrap();
    assert!(
        v["capabilities"]["keep"].as_array().unwrap().is_empty(),
        "{text}"
    );
    assert!(!text.contains("(deleted)"), "{text}");
    assert!(!text.contains("\"rel.sock\""), "{text}");
}

/// The output often lives in a shared directory and the learner is root: a symlink planted at
/// the output name is replaced, never followed (the file it points to stays as it was).
#[test]
fn a_symlink_at_the_output_is_not_followed() {
    require_root();
    let sb = Sandbox::new();
    let victim = sb.path("ro/victim");
    std::fs::write(&victim, b"ORIGINAL").unwrap();
    let out = sb.path("rw/planted.toml");
    std::os::unix::fs::symlink(&victim, &out).unwrap();
    let o = learn(
        &[
            "--profile",
            "minimal",
            "-o",
            out.to_str().unwrap(),
            "--",
            "/bin/true",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read(&victim).unwrap(), b"ORIGINAL");
    assert!(
        std::fs::symlink_metadata(&out)
            .unwrap()
            .file_type()
            .is_file()
    );
    allow_list(&out);
}
