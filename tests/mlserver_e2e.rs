//! The real Seldon MLServer 1.7.1 under `stockade --profile mlserver` (installed by
//! scripts/install-mlserver.sh into /opt/stockade/mlserver, or $STOCKADE_MLSERVER_DIR).
//!
//! * `config_that_widens_exposure_is_refused_before_start`: settings.json, model-settings.json,
//!   the environment, a .env and the argv, each refused with exit 78 and the file and key named,
//!   and nothing started (one stockade line on stderr, the listener never opened).
//! * `serves_confined_and_stops_cleanly`: ready, V2 inference over HTTP and gRPC on free loopback ports
//!   taken from settings.json, every server process dropped (read from /proc), listeners only on
//!   127.0.0.1, SIGTERM → exit 0 and nothing left; `serves_rootless` the same started as uid 65534;
//!   `compromised_model_is_contained`: a hostile model denied write/exec/bind/connect/signal.
//!
//! Missing MLServer is a failure, not a skip. Requires root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

mod common;
use common::free_port;
use common::procs::{alive, cmdline, descendants, exe, http_req, listening, proc_status};

const STOCKADE: &str = env!("CARGO_BIN_EXE_stockade");

struct Ml {
    exe: PathBuf,
    path: String,
}

fn ml() -> Ml {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the MLServer end-to-end tests need root (they drop to uid 65534)"
    );
    let dir = std::env::var("STOCKADE_MLSERVER_DIR").unwrap_or("/opt/stockade/mlserver".into());
    let exe = Path::new(&dir).join("venv/bin/mlserver");
    assert!(
        exe.is_file(),
        "no MLServer at {}: run scripts/install-mlserver.sh (scripts/test.sh does)",
        exe.display()
    );
    Ml {
        exe,
        path: format!("{dir}/venv/bin:/usr/bin:/bin"),
    }
}

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A world-traversable directory (uid 65534 must reach the repository).
fn tempdir_in(prefix: &str, base: &str) -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(base)
        .unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    d
}

fn copy_tree(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    fs::set_permissions(dst, fs::Permissions::from_mode(0o755)).unwrap();
    for e in fs::read_dir(src).unwrap().flatten() {
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to);
        } else {
            fs::copy(e.path(), &to).unwrap();
            fs::set_permissions(&to, fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}

/// The fixture repository (one model, `add`) with `settings` as settings.json.
fn make_repo(settings: &str) -> (tempfile::TempDir, PathBuf) {
    make_repo_in(settings, "/tmp")
}

fn make_repo_in(settings: &str, base: &str) -> (tempfile::TempDir, PathBuf) {
    let d = tempdir_in("stockade-mlserver-", base);
    let repo = d.path().join("models");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mlserver/models"),
        &repo,
    );
    fs::write(repo.join("settings.json"), settings).unwrap();
    fs::set_permissions(
        repo.join("settings.json"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    (d, repo)
}

fn stockade(ml: &Ml, profile: &str, args: &[&str]) -> Command {
    let mut c = Command::new(STOCKADE);
    c.env_clear()
        .env("PATH", &ml.path)
        .env("STOCKADE_LOG", "info")
        .current_dir("/")
        .args(["--profile", profile, "--"])
        .arg(&ml.exe)
        .args(args);
    c
}

/// Run to completion, bounded: a refused start must not even reach fork.
fn run_bounded(mut cmd: Command, limit: Duration) -> (Output, Duration) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut child = cmd.spawn().unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            return (child.wait_with_output().unwrap(), t0.elapsed());
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "stockade still running after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The built-in profile with `edits` applied, written next to the repository.
fn edited_profile(dir: &Path, edits: &[(&str, &str)]) -> PathBuf {
    let out = Command::new(STOCKADE)
        .args(["--print-profile", "mlserver"])
        .output()
        .unwrap();
    let mut text = String::from_utf8(out.stdout).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "profile has no {from:?}");
        text = text.replacen(from, to, 1);
    }
    let p = dir.join("mlserver.toml");
    fs::write(&p, text).unwrap();
    p
}

#[test]
fn config_that_widens_exposure_is_refused_before_start() {
    let ml = ml();
    let _g = serial();
    let http = free_port();
    let ports = format!("\"http_port\": {http}, \"grpc_port\": {}", free_port());
    struct Case {
        name: &'static str,
        settings: String,
        /// (relative path under the repository, contents) written besides.
        extra_file: Option<(&'static str, &'static str)>,
        /// `.env` in the server's cwd (a private cwd via an edited profile).
        dotenv: Option<&'static str>,
        profile_edit: Option<(&'static str, &'static str)>,
        args: Option<&'static [&'static str]>,
        /// (code, text after "stockade: "; `REPO` is the repository, `CWD` the cwd).
        code: i32,
        want: &'static str,
    }
    let case = |name, settings: String, want| Case {
        name,
        settings,
        extra_file: None,
        dotenv: None,
        profile_edit: None,
        args: None,
        code: 78,
        want,
    };
    let cases = vec![
        case(
            "settings.json moves every listener to 0.0.0.0",
            format!("{{{ports}, \"host\": \"0.0.0.0\"}}"),
            "server configuration refused: REPO/settings.json: host: '0.0.0.0' is not a listed address",
        ),
        case(
            "settings.json spells the key in capitals (pydantic matches keys case-insensitively)",
            format!("{{{ports}, \"HOST\": \"0.0.0.0\"}}"),
            "server configuration refused: REPO/settings.json: host: '0.0.0.0' is not a listed address",
        ),
        case(
            "settings.json turns debug on",
            format!("{{{ports}, \"debug\": true}}"),
            "server configuration refused: REPO/settings.json: debug: debug must be false",
        ),
        case(
            "custom model repository class",
            format!("{{{ports}, \"model_repository_implementation\": \"evil.Repo\"}}"),
            "server configuration refused: REPO/settings.json: model_repository_implementation: refused",
        ),
        case(
            "private uvicorn overrides",
            format!("{{{ports}, \"_custom_rest_server_settings\": {{\"host\": \"0.0.0.0\"}}}}"),
            "server configuration refused: REPO/settings.json: _custom_rest_server_settings: refused",
        ),
        case(
            "kafka egress not named by the profile",
            format!("{{{ports}, \"kafka_enabled\": true, \"kafka_servers\": \"10.0.0.1:9092\"}}"),
            "server configuration refused: REPO/settings.json: kafka_servers: Kafka broker '10.0.0.1:9092'",
        ),
        case(
            "tracing egress not named by the profile",
            format!("{{{ports}, \"tracing_server\": \"10.0.0.1:4317\"}}"),
            "server configuration refused: REPO/settings.json: tracing_server: OpenTelemetry export",
        ),
        case(
            "too many workers",
            format!("{{{ports}, \"parallel_workers\": 64}}"),
            "server configuration refused: REPO/settings.json: parallel_workers: 64 workers: allowed 0..=4",
        ),
        case(
            "port 0 (random)",
            format!("{{\"http_port\": {http}, \"grpc_port\": 0}}"),
            "server configuration refused: REPO/settings.json: grpc_port: 0 is not a TCP port",
        ),
        Case {
            extra_file: Some((
                "tarball/model-settings.json",
                r#"{"name": "t", "implementation": "add_model.AddModel", "parameters": {"environment_tarball": "./env.tar.gz"}}"#,
            )),
            ..case(
                "environment tarball in a nested model-settings.json",
                format!("{{{ports}}}"),
                "server configuration refused: REPO/tarball/model-settings.json: parameters.environment_tarball: environment tarballs are refused",
            )
        },
        Case {
            profile_edit: Some(("MLSERVER_DEBUG = \"false\"", "MLSERVER_DEBUG = \"true\"")),
            ..case(
                "the environment turns debug on",
                format!("{{{ports}}}"),
                "server configuration refused: environment variable MLSERVER_DEBUG: debug: debug must be false",
            )
        },
        Case {
            dotenv: Some("MLSERVER_METRICS_PORT=0\n"),
            ..case(
                "a .env in the cwd",
                format!("{{{ports}}}"),
                "server configuration refused: CWD/.env (MLSERVER_METRICS_PORT): metrics_port: 0 is not a TCP port",
            )
        },
        Case {
            args: Some(&["build", "REPO"]),
            ..case(
                "not `start`",
                format!("{{{ports}}}"),
                "server flag refused: build: only `mlserver start FOLDER` serves",
            )
        },
        Case {
            args: Some(&["start", "REPO", "--debug"]),
            ..case(
                "extra argument",
                format!("{{{ports}}}"),
                "server flag refused: --debug: mlserver start takes exactly one FOLDER",
            )
        },
        Case {
            args: Some(&["start", "REPO/missing"]),
            code: 66,
            ..case(
                "repository missing",
                format!("{{{ports}}}"),
                "mlserver start FOLDER (the model repository)",
            )
        },
    ];
    let mut failures = Vec::new();
    for c in &cases {
        let (dir, repo) = make_repo(&c.settings);
        if let Some((rel, text)) = c.extra_file {
            let p = repo.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::set_permissions(p.parent().unwrap(), fs::Permissions::from_mode(0o755)).unwrap();
            fs::write(&p, text).unwrap();
        }
        let cwd = dir.path().join("cwd");
        fs::create_dir(&cwd).unwrap();
        let mut edits: Vec<(&str, String)> = Vec::new();
        if let Some(d) = c.dotenv {
            fs::write(cwd.join(".env"), d).unwrap();
            edits.push(("cwd = \"/\"", format!("cwd = \"{}\"", cwd.display())));
        }
        if let Some((from, to)) = c.profile_edit {
            edits.push((from, to.to_string()));
        }
        let profile = if edits.is_empty() {
            "mlserver".to_string()
        } else {
            let e: Vec<(&str, &str)> = edits.iter().map(|(f, t)| (*f, t.as_str())).collect();
            edited_profile(dir.path(), &e).display().to_string()
        };
        let repo_s = repo.display().to_string();
        let args: Vec<String> = match c.args {
            Some(a) => a.iter().map(|s| s.replace("REPO", &repo_s)).collect(),
            None => vec!["start".into(), repo_s.clone()],
        };
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (out, took) = run_bounded(stockade(&ml, &profile, &a), Duration::from_secs(20));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let want = format!(
            "stockade: {}",
            c.want
                .replace("REPO", &repo_s)
                .replace("CWD", &cwd.display().to_string())
        );
        // Nothing started: stderr is stockade's one line (no MLServer or uvicorn log), and the
        // listener never opened.
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        let ok = out.status.code() == Some(c.code)
            && lines.len() == 1
            && lines[0].starts_with(&want)
            && TcpStream::connect(("127.0.0.1", http)).is_err();
        println!(
            "[refusal] {:<55} exit {:?} in {took:?}",
            c.name,
            out.status.code()
        );
        if !ok {
            failures.push(format!(
                "{}: exit {:?}, want {}; stderr:\n{err}\nwant line starting: {want}",
                c.name,
                out.status.code(),
                c.code
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
}

/// Kafka and tracing egress the profile names: the port the client library will dial (its own
/// defaults included) becomes the Landlock connect rule, and an endpoint whose port stockade
/// cannot tell is refused before start, naming the settings key (dry run of the real binary).
#[test]
fn egress_endpoint_ports_become_connect_rules_or_are_refused() {
    let ml = ml();
    let ports = format!(
        "\"http_port\": {}, \"grpc_port\": {}",
        free_port(),
        free_port()
    );
    let dir = tempdir_in("stockade-mlserver-egress-", "/tmp");
    let endpoints = [
        (
            "kafka_servers = []",
            "kafka_servers = [\"broker\", \"[::1]:19092\"]",
        ),
        (
            "tracing_servers = []",
            "tracing_servers = [\"otel\", \"http://otel:14317/v1/traces\"]",
        ),
    ];
    let without_connect = dir.path().join("no-connect.toml");
    fs::rename(edited_profile(dir.path(), &endpoints), &without_connect).unwrap();
    let mut edits = endpoints.to_vec();
    edits.push((CONNECT_FROM, CONNECT_TO));
    let profile = edited_profile(dir.path(), &edits);
    let dry = |profile: &Path, settings: &str| {
        let (_d, repo) = make_repo(settings);
        let mut c = Command::new(STOCKADE);
        c.env_clear()
            .env("PATH", &ml.path)
            .current_dir("/")
            .arg("--profile")
            .arg(profile)
            .args(["--dry-run", "--"])
            .arg(&ml.exe)
            .arg("start")
            .arg(&repo);
        let (out, _) = run_bounded(c, Duration::from_secs(20));
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let connect = |stdout: &str| -> String {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("tcp connect"))
            .unwrap_or_else(|| panic!("no tcp connect line:\n{stdout}"))
            .trim()
            .to_string()
    };
    // No egress: no connect rule.
    let (code, out, err) = dry(&profile, &format!("{{{ports}}}"));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(connect(&out), "(none)");
    // A portless broker: aiokafka's 9092; [::1]:19092 its own port.
    let kafka =
        format!("{{{ports}, \"kafka_enabled\": true, \"kafka_servers\": \"broker,[::1]:19092\"}}");
    let (code, out, err) = dry(&profile, &kafka);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(connect(&out), "9092, 19092");
    // An OTLP URL: its netloc's port.
    let (code, out, err) = dry(
        &profile,
        &format!("{{{ports}, \"tracing_server\": \"http://otel:14317/v1/traces\"}}"),
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(connect(&out), "14317");
    // A portless collector: gRPC would pick 443, which nothing names: refused, key named.
    let (code, out, err) = dry(
        &profile,
        &format!("{{{ports}, \"tracing_server\": \"otel\"}}"),
    );
    assert_eq!(code, Some(78), "{out}{err}");
    assert!(
        err.contains("settings.json: tracing_server: OpenTelemetry collector 'otel' names no port")
            && err.contains("connect_tcp"),
        "{err}"
    );
    // The endpoint listed, but the profile's seccomp has no `connect` (the built-in mlserver's):
    // refused before start instead of ENOSYS at run time.
    let (code, out, err) = dry(&without_connect, &kafka);
    assert_eq!(code, Some(78), "{out}{err}");
    assert!(
        err.contains("settings.json: kafka_servers: MLServer would connect to TCP port 9092")
            && err.contains("does not allow `connect`"),
        "{err}"
    );
}

/// The built-in mlserver profile's seccomp allow-list, with `connect` added (for egress tests).
const CONNECT_FROM: &str = "\"accept4\", \"access\",";
const CONNECT_TO: &str = "\"accept4\", \"access\", \"connect\",";

/// The connect rule is real: MLServer, confined, exports its trace spans to the collector port
/// the profile names (a listener of this test on loopback), i.e. Landlock lets exactly that
/// connect through; the dry run above shows the rule, compromised_model_is_contained shows other
/// ports refused.
#[test]
fn tracing_export_reaches_the_named_collector() {
    let ml = ml();
    let _g = serial();
    let collector = TcpListener::bind("127.0.0.1:0").unwrap();
    collector.set_nonblocking(true).unwrap();
    let port = collector.local_addr().unwrap().port();
    let endpoint = format!("127.0.0.1:{port}");
    let dir = tempdir_in("stockade-mlserver-otel-", "/tmp");
    let profile = edited_profile(
        dir.path(),
        &[
            (
                "tracing_servers = []",
                &format!("tracing_servers = [\"{endpoint}\"]"),
            ),
            (CONNECT_FROM, CONNECT_TO),
        ],
    );
    let mut s = Server::start_with(
        &ml,
        false,
        profile.to_str().unwrap(),
        &format!(", \"tracing_server\": \"{endpoint}\""),
    );
    match http_req(s.http, "POST", "/v2/models/add/infer", INFER) {
        Some((200, body)) if body.contains("\"data\":[11.0,22.0]") => {}
        other => s.fail(format!("inference answer: {other:?}")),
    }
    // BatchSpanProcessor exports every 5 s: wait up to 30 s for the connection.
    let t0 = Instant::now();
    let peer = loop {
        match collector.accept() {
            Ok((_, peer)) => break peer,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => s.fail(format!("accept: {e}")),
        }
        if t0.elapsed() > Duration::from_secs(30) {
            s.fail(format!("no span export to {endpoint} within 30 s"));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!(
        "[mlserver] span export from {peer} to {endpoint} after {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let err = fs::read_to_string(&s.log).unwrap_or_default();
    assert!(!err.contains("Permission denied"), "{err}");
    // Drop kills what this test started: the exporter's retries to a collector that speaks no
    // gRPC would only stretch a graceful stop (tested elsewhere).
}

/// ModelInfer over gRPC; prints OUTPUT0 as a list of floats.
const GRPC_INFER: &str = r#"
import struct, sys, grpc
from mlserver.grpc import dataplane_pb2 as pb, dataplane_pb2_grpc as pbg
T = pb.ModelInferRequest.InferInputTensor
def tensor(name, xs):
    return T(name=name, datatype="FP32", shape=[2], contents=pb.InferTensorContents(fp32_contents=xs))
stub = pbg.GRPCInferenceServiceStub(grpc.insecure_channel(sys.argv[1]))
r = stub.ModelInfer(pb.ModelInferRequest(model_name="add", inputs=[tensor("INPUT0", [1, 2]), tensor("INPUT1", [10, 20])]), timeout=20)
out = list(r.outputs[0].contents.fp32_contents)
if not out and r.raw_output_contents:
    raw = r.raw_output_contents[0]
    out = list(struct.unpack("<%df" % (len(raw) // 4), raw))
print(out)
"#;

const INFER: &str = r#"{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[2],"data":[1,2]},{"name":"INPUT1","datatype":"FP32","shape":[2],"data":[10,20]}]}"#;

/// A confined MLServer started under `stockade --profile mlserver`, ready.
struct Server {
    child: std::process::Child,
    pid: i32,
    http: u16,
    grpc: u16,
    metrics: u16,
    /// Holds the repository until the server is gone.
    _dir: tempfile::TempDir,
    repo: PathBuf,
    log: PathBuf,
    ready_after: Duration,
}

impl Server {
    fn start(ml: &Ml) -> Server {
        Server::start_as(ml, false)
    }

    /// `rootless`: stockade itself runs as uid 65534 (setpriv), with no private mounts; the
    /// repository then lives outside the read-write /tmp (/var/tmp), as stockade requires.
    fn start_as(ml: &Ml, rootless: bool) -> Server {
        Server::start_with(ml, rootless, "mlserver", "")
    }

    /// `extra_settings`: more `settings.json` keys (`, "key": value...`).
    fn start_with(ml: &Ml, rootless: bool, profile: &str, extra_settings: &str) -> Server {
        let (http, grpc, metrics) = (free_port(), free_port(), free_port());
        let (dir, repo) = make_repo_in(
            &format!(
                "{{\"http_port\": {http}, \"grpc_port\": {grpc}, \"metrics_port\": {metrics}{extra_settings}}}"
            ),
            if rootless { "/var/tmp" } else { "/tmp" },
        );
        let log = dir.path().join("stderr");
        let repo_s = repo.display().to_string();
        let mut cmd = if rootless {
            let mut c = Command::new("setpriv");
            c.env_clear()
                .env("PATH", &ml.path)
                .env("STOCKADE_LOG", "info")
                .current_dir("/")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups", STOCKADE])
                .args(["--profile", profile, "--"])
                .arg(&ml.exe)
                .args(["start", &repo_s]);
            c
        } else {
            stockade(ml, profile, &["start", &repo_s])
        };
        cmd.stdin(Stdio::null())
            .stdout(fs::File::create(dir.path().join("stdout")).unwrap())
            .stderr(fs::File::create(&log).unwrap());
        let t0 = Instant::now();
        let child = cmd.spawn().unwrap();
        let pid = child.id() as i32;
        let mut s = Server {
            child,
            pid,
            http,
            grpc,
            metrics,
            _dir: dir,
            repo,
            log,
            ready_after: Duration::ZERO,
        };
        // Ready: the probe stockade derived from settings.json's http_port answers 200.
        loop {
            if http_req(http, "GET", "/v2/health/ready", "").is_some_and(|(c, _)| c == 200) {
                break;
            }
            if let Some(st) = s.child.try_wait().unwrap() {
                s.fail(format!("stockade exited before ready: {st}"));
            }
            if t0.elapsed() > Duration::from_secs(120) {
                s.fail("not ready within 120 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        s.ready_after = t0.elapsed();
        s
    }

    fn fail(&mut self, what: String) -> ! {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
        panic!(
            "{what}\nstockade stderr:\n{}",
            fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Every process under stockade that is not stockade.
    fn servers(&self) -> Vec<i32> {
        let stockade_exe = fs::canonicalize(STOCKADE).unwrap();
        descendants(self.pid)
            .into_iter()
            .filter(|p| exe(*p) != stockade_exe)
            .collect()
    }

    /// One operation attempted by the probe model inside the confined worker.
    fn probe(&mut self, op: &str) -> String {
        let body = format!(
            r#"{{"inputs":[{{"name":"OP","datatype":"BYTES","shape":[1],"data":["{op}"]}}]}}"#
        );
        match http_req(self.http, "POST", "/v2/models/probe/infer", &body) {
            Some((200, answer)) => {
                let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
                v["outputs"][0]["data"][0].as_str().unwrap().to_string()
            }
            other => self.fail(format!("probe {op}: {other:?}")),
        }
    }

    /// SIGTERM to stockade: (exit status, time to exit).
    fn stop(&mut self) -> (std::process::ExitStatus, Duration) {
        let t = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st, t.elapsed());
            }
            if t.elapsed() > Duration::from_secs(40) {
                self.fail("still running 40 s after SIGTERM".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = self.child.wait();
        }
    }
}

#[test]
fn serves_confined_and_stops_cleanly() {
    let ml = ml();
    let _g = serial();
    let mut s = Server::start(&ml);
    println!(
        "[mlserver] time-to-ready {:.3} s",
        s.ready_after.as_secs_f64()
    );

    // V2 inference over HTTP.
    let t1 = Instant::now();
    let answer = http_req(s.http, "POST", "/v2/models/add/infer", INFER);
    println!(
        "[mlserver] inference {:.1} ms",
        t1.elapsed().as_secs_f64() * 1e3
    );
    match &answer {
        Some((200, body)) if body.contains("\"data\":[11.0,22.0]") => {}
        other => s.fail(format!("inference answer: {other:?}")),
    }

    // V2 inference over gRPC (MLServer's own generated stubs, from its venv's python).
    let grpc = Command::new(ml.exe.with_file_name("python"))
        .env_clear()
        .arg("-c")
        .arg(GRPC_INFER)
        .arg(format!("127.0.0.1:{}", s.grpc))
        .output()
        .unwrap();
    let grpc_out = String::from_utf8_lossy(&grpc.stdout).trim().to_string();
    println!("[mlserver] grpc inference -> {grpc_out}");
    if grpc_out != "[11.0, 22.0]" {
        s.fail(format!(
            "gRPC inference: {grpc_out} {}",
            String::from_utf8_lossy(&grpc.stderr)
        ));
    }

    // Every server process is dropped.
    let servers = s.servers();
    let Some(main) = servers
        .iter()
        .copied()
        .find(|p| cmdline(*p).contains(" start "))
    else {
        s.fail(format!("no `mlserver start` among {servers:?}"));
    };
    if !servers
        .iter()
        .any(|p| cmdline(*p).contains("multiprocessing"))
    {
        s.fail(format!("no multiprocessing worker among {servers:?}"));
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
        "[mlserver] {} server processes confined: {servers:?}",
        servers.len()
    );

    // Listeners: exactly the effective ports, on loopback only.
    let listeners: BTreeSet<String> = servers.iter().flat_map(|p| listening(*p)).collect();
    let want: BTreeSet<String> = [s.http, s.grpc, s.metrics]
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    assert_eq!(listeners, want, "listeners of {servers:?}");

    // SIGTERM to stockade: forwarded, MLServer stops its workers, exit 0, nothing left.
    let (status, took) = s.stop();
    println!("[mlserver] stop took {:.3} s", took.as_secs_f64());
    let err = fs::read_to_string(&s.log).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "exit after SIGTERM; stderr:\n{err}");
    let left: Vec<i32> = servers.iter().copied().filter(|p| alive(*p)).collect();
    assert!(
        left.is_empty(),
        "server processes left after stop: {left:?}"
    );
    assert!(!alive(main));
    assert!(
        TcpStream::connect(("127.0.0.1", s.http)).is_err(),
        "HTTP port still open after stop"
    );
}

/// Rootless (stockade started as uid 65534, e.g. Kubernetes runAsNonRoot): still serves, still
/// no_new_privs + seccomp + no effective capabilities in every server process, exit 0 on TERM.
#[test]
fn serves_rootless() {
    let ml = ml();
    let _g = serial();
    let mut s = Server::start_as(&ml, true);
    println!(
        "[mlserver rootless] time-to-ready {:.3} s",
        s.ready_after.as_secs_f64()
    );
    match http_req(s.http, "POST", "/v2/models/add/infer", INFER) {
        Some((200, body)) if body.contains("\"data\":[11.0,22.0]") => {}
        other => s.fail(format!("inference answer: {other:?}")),
    }
    let servers = s.servers();
    assert!(servers.len() >= 2, "{servers:?}");
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
    let (status, took) = s.stop();
    println!("[mlserver rootless] stop took {:.3} s", took.as_secs_f64());
    assert_eq!(status.code(), Some(0));
    let left: Vec<i32> = servers.iter().copied().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "left after stop: {left:?}");
}

/// A model that turns hostile: every attempt is denied with its errno inside, and the effect
/// is absent outside. The unauthenticated repository API is the residual risk the dry run
/// states; the read-only repository keeps a load from bringing in new code.
#[test]
fn compromised_model_is_contained() {
    let ml = ml();
    let _g = serial();
    let mut s = Server::start(&ml);
    let outside = TcpListener::bind("127.0.0.1:0").unwrap();
    let outside_port = outside.local_addr().unwrap().port();
    let free = free_port();
    let new_model = s.repo.join("evil/model-settings.json");
    let evil_json = s.repo.join("evil.json");
    let planted = s.repo.join("add/add_model.py");
    let before = fs::read(&planted).unwrap();
    /// (operation, accepted errno names, the effect is absent outside)
    type Attempt<'a> = (String, &'static [&'static str], Box<dyn Fn() -> bool + 'a>);
    let cases: Vec<Attempt> = vec![
        (
            format!("write:{}", planted.display()),
            &["EACCES", "EROFS"],
            Box::new(|| fs::read(&planted).unwrap() == before),
        ),
        (
            format!("write:{}", evil_json.display()),
            &["EACCES", "EROFS"],
            Box::new(|| !evil_json.exists()),
        ),
        (
            "exec:/tmp/probe-true".into(),
            &["EACCES"],
            Box::new(|| true),
        ),
        (
            "exec:/dev/shm/probe-true".into(),
            &["EACCES"],
            Box::new(|| true),
        ),
        (
            format!("bind:{free}"),
            &["EACCES"],
            Box::new(|| TcpStream::connect(("127.0.0.1", free)).is_err()),
        ),
        // The built-in profile does not even allow connect: seccomp answers ENOSYS before
        // Landlock's EACCES (MLServer needs no egress).
        (
            format!("connect:{outside_port}"),
            &["ENOSYS", "EACCES"],
            Box::new(|| true),
        ),
        ("signal-supervisor".into(), &["EPERM"], Box::new(|| true)),
    ];
    let mut failures = Vec::new();
    for (op, want, outside_ok) in &cases {
        let got = s.probe(op);
        println!("[mlserver] probe {op:<60} -> {got}");
        if !want.contains(&got.as_str()) || !outside_ok() {
            failures.push(format!(
                "{op}: got {got}, want one of {want:?} (outside check {})",
                outside_ok()
            ));
        }
    }
    // No connection reached the outside listener.
    outside.set_nonblocking(true).unwrap();
    assert!(
        outside.accept().is_err(),
        "a connection reached the outside listener"
    );
    // The supervisor survived the signal attempt, the server still answers.
    if s.child.try_wait().unwrap().is_some() {
        s.fail("stockade exited after the model's signal attempt".into());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Residual risk (stated in the dry run): the repository API needs no credentials...
    let unload = http_req(s.http, "POST", "/v2/repository/models/add/unload", "");
    assert_eq!(unload.map(|(c, _)| c), Some(200), "unauthenticated unload");
    let load = http_req(s.http, "POST", "/v2/repository/models/add/load", "");
    assert_eq!(load.map(|(c, _)| c), Some(200), "unauthenticated load");
    // ...but a load brings back only what the read-only repository holds.
    assert!(!new_model.exists());
    let again = http_req(s.http, "POST", "/v2/models/add/infer", INFER);
    assert!(
        again
            .as_ref()
            .is_some_and(|(c, b)| *c == 200 && b.contains("[11.0,22.0]")),
        "{again:?}"
    );
    let (status, _) = s.stop();
    assert_eq!(status.code(), Some(0));
}
