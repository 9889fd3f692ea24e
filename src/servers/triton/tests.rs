// Tests may unwrap and panic: a failure should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use super::grammar::{self, OPTIONS};
use super::policy::FlagValue;
use super::secret::Secret;
use super::*;

const PROFILE: &str = include_str!("../../../profiles/triton.toml");
const EXPLICIT: &str = include_str!("../../../profiles/triton-explicit.toml");
const MODELMESH: &str = include_str!("../../../profiles/triton-modelmesh.toml");

#[derive(serde::Deserialize)]
struct File {
    triton: Policy,
}

fn load(text: &str) -> Policy {
    toml::from_str::<File>(text).expect("profile parses").triton
}

/// A temp install (backends, caches), a model repository and a profile pointing at them.
struct Fx {
    dir: tempfile::TempDir,
    policy: Policy,
}

impl Fx {
    fn with(text: &str) -> Fx {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for d in [
            "install/backends/python",
            "install/caches/local",
            "repo/add/1",
            "log",
        ] {
            fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        let mut policy = load(text);
        policy.code_dirs.backend_directory = root.join("install/backends");
        policy.code_dirs.repoagent_directory = root.join("install/repoagents");
        policy.code_dirs.cache_directory = root.join("install/caches");
        policy.code_dirs.allowed_roots = vec![root.join("install")];
        for (i, g) in policy.restricted.iter_mut().enumerate() {
            let name = if i == 0 {
                "admin".into()
            } else {
                format!("admin{i}")
            };
            g.generate_secret_file = Some(root.join(format!("run/stockade/{name}.secret")));
        }
        if let Some(lf) = policy.log_file.as_mut() {
            lf.allowed_dirs = vec![root.join("log")];
        }
        Fx { dir, policy }
    }
    fn new() -> Fx {
        Fx::with(PROFILE)
    }
    fn p(&self, rel: &str) -> String {
        self.dir.path().join(rel).display().to_string()
    }
    fn repo(&self) -> String {
        format!("--model-repository={}", self.p("repo"))
    }
    /// Runs with the fixture's repository prepended.
    fn run(&self, extra: &[&str]) -> Result<Rewritten, RewriteError> {
        let mut args = vec![self.repo()];
        args.extend(extra.iter().map(|s| s.to_string()));
        rewrite(&self.policy, &os(&args), true)
    }
}

fn os(v: &[String]) -> Vec<OsString> {
    v.iter().map(OsString::from).collect()
}

fn err(r: Result<Rewritten, RewriteError>) -> RewriteError {
    match r {
        Ok(rw) => panic!("expected refusal, got {:?}", rw.args),
        Err(e) => e,
    }
}

fn has(rw: &Rewritten, arg: &str) -> bool {
    rw.args.iter().any(|a| a == arg)
}

#[test]
fn option_table_is_complete_and_unique() {
    assert_eq!(OPTIONS.len(), 87, "86 options + --help (research §1.5)");
    for (i, a) in OPTIONS.iter().enumerate() {
        assert!(
            OPTIONS[i + 1..].iter().all(|b| b.name != a.name),
            "{}",
            a.name
        );
    }
}

#[test]
fn profiles_parse_and_check() {
    load(PROFILE).check().expect("triton.toml");
    load(EXPLICIT).check().expect("triton-explicit.toml");
    load(MODELMESH).check().expect("triton-modelmesh.toml");
    assert!(PROFILE.contains("\n# --- triton argv policy (the [triton] tables) ---\n"));
    assert!(toml::from_str::<File>("[triton]\nbogus = 1\n").is_err());
}

#[test]
fn grammar_refusals() {
    let fx = Fx::new();
    // (argv, flag in error, fragment of reason)
    let cases: &[(&[&str], &str, &str)] = &[
        (&["--model-c=x"], "model-c", "--model-control-mode"),
        (&["--model-c=x"], "model-c", "--model-config-name"),
        (&["--allow=false"], "allow", "--allow-vertex-ai"),
        (
            &["--grpc-use-ss=false"],
            "grpc-use-ss",
            "--grpc-use-ssl-mutual",
        ),
        (
            &["--grpc-keepalive-tim=5"],
            "grpc-keepalive-tim",
            "--grpc-keepalive-timeout",
        ),
        (
            &["--disable-auto-complete-config=true"],
            "disable-auto-complete-config",
            "no argument",
        ),
        (
            &["--disable-auto-complete-config", "true"],
            "",
            "positional argument 'true'",
        ),
        (
            &["--", "--model-control-mode=none"],
            "",
            "'--' ends option parsing",
        ),
        (&["extra"], "", "positional argument 'extra'"),
        (&["-"], "", "positional argument '-'"),
        (&["-m"], "", "single-dash"),
        (&["-model-control-mode=poll"], "", "single-dash"),
        (
            &["--model-control-mode"],
            "model-control-mode",
            "requires an argument",
        ),
        (&["--foo=bar"], "foo", "unrecognized option"),
        (&["--=x"], "", "empty option name"),
        // `--flag value` eats the next element even if it starts with "--".
        (
            &["--model-repository", "--model-control-mode=poll"],
            "model-repository",
            "absolute path",
        ),
    ];
    for (argv, flag, frag) in cases {
        let e = err(fx.run(argv));
        assert_eq!(e.flag, *flag, "{argv:?}: {e}");
        assert!(e.reason.contains(frag), "{argv:?}: {e}");
    }
}

#[test]
fn grammar_accepts_abbreviations_and_exact_names() {
    let fx = Fx::new();
    let rw = fx
        .run(&[
            "--model-control=none",
            "--strict-r=true",
            "--grpc-use-ssl=false",
            "--grpc-keepalive-time=100000",
            "--log-verb",
            "1",
        ])
        .expect("accepted");
    assert!(has(&rw, "--model-control-mode=none"));
    assert!(has(&rw, "--strict-readiness=true"));
    assert!(has(&rw, "--grpc-use-ssl=false"));
    assert!(has(&rw, "--grpc-keepalive-time=100000"));
    assert!(has(&rw, "--log-verbose=1"));
    // The value of --id is the next element, even "--model-control-mode=poll".
    let rw = fx
        .run(&["--id", "--model-control-mode=poll"])
        .expect("accepted");
    assert!(has(&rw, "--id=--model-control-mode=poll"));
    assert!(has(&rw, "--model-control-mode=none"));
    assert!(rw.args.iter().all(|a| a.starts_with("--")));
}

#[test]
fn pinned_flags_refuse_conflicting_values_with_reason() {
    let fx = Fx::new();
    for (name, entry) in &fx.policy.pinned {
        let other = match (&entry.value, name.as_str()) {
            (FlagValue::Bool(b), _) => (!b).to_string(),
            (_, "model-control-mode") => "explicit".into(),
            (_, "trace-level") => "TIMESTAMPS".into(),
            (v, _) => panic!("add a conflicting value for {name} = {v:?}"),
        };
        let e = err(fx.run(&[&format!("--{name}={other}")]));
        assert_eq!(e.flag, *name);
        assert!(
            e.reason.contains("pinned") && e.reason.contains(&entry.reason),
            "{e}"
        );
        assert!(e.to_string().starts_with(&format!("--{name}: ")));
    }
    // The pinned value itself, in any accepted spelling, is fine.
    let rw = fx
        .run(&[
            "--exit-on-error=ON",
            "--model-control-mode=NONE",
            "--trace-level=off",
        ])
        .expect("same values");
    assert!(has(&rw, "--exit-on-error=true") && has(&rw, "--trace-level=OFF"));
    // Abbreviated conflicting spelling is refused and named.
    let e = err(fx.run(&["--model-control=explicit"]));
    assert!(e.reason.contains("given as --model-control"), "{e}");
}

/// Shortest prefix that resolves to `name`.
fn shortest_abbrev(name: &str) -> String {
    (1..=name.len())
        .map(|n| &name[..n])
        .find(|p| grammar::resolve(p).is_ok_and(|s| s.name == name))
        .unwrap_or(name)
        .to_string()
}

#[test]
fn denied_flags_refused_full_and_abbreviated() {
    let fx = Fx::new();
    assert!(fx.policy.denied.len() >= 15);
    for (name, d) in &fx.policy.denied {
        let noarg = grammar::by_id(name).is_some_and(|s| s.kind == grammar::Kind::NoArg);
        for spelled in [name.clone(), shortest_abbrev(name)] {
            let arg = if noarg {
                format!("--{spelled}")
            } else {
                format!("--{spelled}=x")
            };
            let e = err(fx.run(&[&arg]));
            assert_eq!(e.flag, *name, "{arg}");
            assert!(
                e.reason.contains("denied") && e.reason.contains(&d.reason),
                "{e}"
            );
        }
    }
    // The --flag value form as well.
    let e = err(fx.run(&["--http-header-forward-pattern", ".*"]));
    assert_eq!(e.flag, "http-header-forward-pattern");
}

#[test]
fn value_validation() {
    let fx = Fx::new();
    let bad: &[(&str, &str)] = &[
        ("--http-port=0", "http-port"),
        ("--http-port=70000", "http-port"),
        ("--http-port=19100abc", "http-port"),
        ("--http-port=0x4a9c", "http-port"),
        ("--http-port=-1", "http-port"),
        ("--http-port=+8000", "http-port"),
        ("--http-port= 8000", "http-port"),
        ("--grpc-port=", "grpc-port"),
        ("--allow-grpc=yes", "allow-grpc"),
        ("--allow-grpc=t", "allow-grpc"),
        ("--allow-grpc=2", "allow-grpc"),
        ("--exit-timeout-secs=2.9", "exit-timeout-secs"),
        ("--exit-timeout-secs=60", "exit-timeout-secs"),
        ("--http-thread-count=99999999999", "http-thread-count"),
        ("--log-verbose=yes", "log-verbose"),
        ("--log-format=iso8601", "log-format"),
        ("--model-control-mode=readonly", "model-control-mode"),
        ("--http-address=0.0.0.0", "http-address"),
        ("--grpc-address=localhost", "grpc-address"),
        ("--metrics-address=10.0.0.1", "metrics-address"),
        ("--model-config-name=../x", "model-config-name"),
        ("--id=a\u{1b}b", "id"),
    ];
    for (arg, flag) in bad {
        let e = err(fx.run(&[arg]));
        assert_eq!(e.flag, *flag, "{arg}: {e}");
    }
    let rw = fx
        .run(&[
            "--http-port=08000",
            "--allow-grpc=TRUE",
            "--allow-metrics",
            "off",
            "--log-format=ISO8601",
            "--http-address=::1",
            "--exit-timeout-secs=20",
        ])
        .expect("accepted");
    assert!(
        has(&rw, "--http-port=8000")
            && has(&rw, "--allow-grpc=true")
            && has(&rw, "--allow-metrics=false")
    );
    assert!(has(&rw, "--http-address=::1") && has(&rw, "--log-format=ISO8601"));
    assert_eq!(rw.exit_timeout_secs, 20);
}

#[test]
fn backend_config_bypasses_refused() {
    let fx = Fx::new();
    let bad = [
        "--backend-config=backend-directory=/tmp/evil",
        "--backend-config=python,backend-directory=/tmp/evil",
        "--backend-config=python,backend_directory=/tmp/evil",
        "--backend-config=onnxruntime,backend-directory=/tmp/evil",
        "--backend-c=backend-directory=/tmp/evil",
        // tritonserver's name ends at the first comma anywhere.
        "--backend-config=shm-default-byte-size=1,backend-directory=/tmp/evil",
        "--backend-config=python,shm-region-prefix-name=$(touch_x)",
        "--backend-config=python,unknown-key=1",
        "--backend-config=,shm-default-byte-size=1",
    ];
    for arg in bad {
        let e = err(fx.run(&[arg]));
        assert_eq!(e.flag, "backend-config", "{arg}: {e}");
    }
    let e = err(fx.run(&["--backend-config", "backend-directory=/tmp/evil"]));
    assert_eq!(e.flag, "backend-config");
    let rw = fx
        .run(&["--backend-config=python,shm-default-byte-size=2097152"])
        .expect("allowed key");
    assert!(has(
        &rw,
        "--backend-config=python,shm-default-byte-size=2097152"
    ));
}

#[test]
fn code_dirs_pinned_or_inside_allowed_roots() {
    let fx = Fx::new();
    let rw = fx.run(&[]).expect("defaults");
    let backends = fs::canonicalize(fx.p("install/backends")).expect("canon");
    assert!(has(
        &rw,
        &format!("--backend-directory={}", backends.display())
    ));
    let caches = fs::canonicalize(fx.p("install/caches")).expect("canon");
    assert_eq!(
        rw.read_exec_dirs,
        vec![backends, caches],
        "missing repoagent dir skipped"
    );
    assert!(
        rw.args
            .iter()
            .any(|a| a.starts_with("--repoagent-directory="))
    );
    assert!(rw.args.iter().any(|a| a.starts_with("--cache-directory=")));
    // Operator choice inside an allowed root is accepted.
    fx.run(&[&format!("--backend-directory={}", fx.p("install/backends"))])
        .expect("inside root");
    // The canonical argv reads back: restating the absent repoagent default is that default
    // (found by fuzz/ target triton_argv).
    let again = fx.run(&[&format!(
        "--repoagent-directory={}",
        fx.p("install/repoagents")
    )]);
    assert_eq!(again.expect("restated default").args, rw.args);
    // Outside: refused.
    let e = err(fx.run(&[&format!("--backend-dir={}", fx.p("repo"))]));
    assert_eq!(e.flag, "backend-directory");
    assert!(e.reason.contains("allowed_roots"), "{e}");
    // World-writable code directory: refused.
    fs::set_permissions(fx.p("install/backends"), fs::Permissions::from_mode(0o777))
        .expect("chmod");
    assert_eq!(err(fx.run(&[])).flag, "backend-directory");
}

#[test]
fn restricted_groups_merge_and_duplicates() {
    let fx = Fx::new();
    let rw = fx
        .run(&[
            "--http-restricted-api=inference,health:x-data=0123456789abcdef",
            "--grpc-restricted-protocol=metadata:x-data=0123456789abcdef",
        ])
        .expect("merge");
    let admin = "--http-restricted-api=model-repository,model-config,statistics,trace,logging,shared-memory:x-stockade-admin=<redacted>";
    assert!(has(&rw, admin), "{:?}", rw.args);
    assert!(has(
        &rw,
        "--http-restricted-api=inference,health:x-data=<redacted>"
    ));
    assert!(
        rw.args
            .iter()
            .any(|a| a.starts_with("--grpc-restricted-protocol=model-repository,"))
    );
    assert!(has(
        &rw,
        "--grpc-restricted-protocol=metadata:x-data=<redacted>"
    ));

    let bad: &[(&str, &str, &str)] = &[
        (
            "--http-restricted-api=model-config:k=0123456789abcdef",
            "http-restricted-api",
            "profile group 'admin'",
        ),
        (
            "--grpc-restricted=logging:k=0123456789abcdef",
            "grpc-restricted-protocol",
            "profile group 'admin'",
        ),
        (
            "--http-restricted-api=health,k=0123456789abcdef",
            "http-restricted-api",
            "format",
        ),
        (
            "--http-restricted-api=Health:k=0123456789abcdef",
            "http-restricted-api",
            "unknown restricted category",
        ),
        (
            "--http-restricted-api=health,health:k=0123456789abcdef",
            "http-restricted-api",
            "twice",
        ),
        (
            "--http-restricted-api=health:k=short",
            "http-restricted-api",
            "16+",
        ),
    ];
    for (arg, flag, frag) in bad {
        let e = err(fx.run(&[arg]));
        assert_eq!(e.flag, *flag, "{arg}");
        assert!(e.reason.contains(frag), "{arg}: {e}");
    }
    // The same category in two operator groups.
    let e = err(fx.run(&[
        "--http-restricted-api=health:a=0123456789abcdef",
        "--http-restricted-api=health:b=0123456789abcdef",
    ]));
    assert!(e.reason.contains("another operator group"), "{e}");
}

#[test]
fn generated_secret_written_0600_and_never_leaks() {
    let fx = Fx::new();
    let args = os(&[fx.repo(), "--allow-grpc=true".into()]);
    let rw = rewrite(&fx.policy, &args, false).expect("real run");
    let path = fx.dir.path().join("run/stockade/admin.secret");
    assert_eq!(rw.secret_files_written, vec![path.clone()]);
    let secret = fs::read_to_string(&path)
        .expect("secret")
        .trim_end()
        .to_string();
    assert!(secret.len() >= 32 && secret.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(path.parent().expect("parent"))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    assert!(
        rw.args
            .iter()
            .any(|a| a.ends_with(&format!(":x-stockade-admin={secret}")))
    );
    assert!(!format!("{rw:?}").contains(&secret));
    assert!(!rw.notes.iter().any(|n| n.contains(&secret)));
    assert!(!rw.redacted_args().iter().any(|a| a.contains(&secret)));
    assert!(!format!("{:?}", Secret(secret.clone())).contains(&secret));
    // A second launch generates a new secret.
    rewrite(&fx.policy, &args, false).expect("second run");
    assert_ne!(
        fs::read_to_string(&path).expect("secret").trim_end(),
        secret
    );
}

#[test]
fn dry_run_writes_nothing_and_redacts() {
    let fx = Fx::new();
    let rw = fx.run(&[]).expect("dry run");
    assert!(rw.secret_files_written.is_empty());
    assert!(!fx.dir.path().join("run").exists());
    assert!(rw.notes.iter().any(|n| n.contains("would be generated")));
    assert!(
        rw.args
            .iter()
            .any(|a| a.ends_with(":x-stockade-admin=<redacted>"))
    );
}

#[test]
fn secret_from_file_and_fd() {
    let mut fx = Fx::new();
    let file = fx.dir.path().join("admin.secret");
    fs::write(&file, "s3cr3t-from-file-0123456789\n").expect("write");
    fx.policy.restricted[0].generate_secret_file = None;
    fx.policy.restricted[0].secret_file = Some(file.clone());
    let args = os(&[fx.repo()]);
    let rw = rewrite(&fx.policy, &args, false).expect("file secret");
    assert!(
        rw.args
            .iter()
            .any(|a| a.ends_with("=s3cr3t-from-file-0123456789"))
    );
    assert!(!format!("{rw:?}").contains("s3cr3t-from-file"));

    let fd_file = fs::File::open(&file).expect("open");
    fx.policy.restricted[0].secret_file = None;
    fx.policy.restricted[0].secret_fd = Some(u32::try_from(fd_file.as_raw_fd()).expect("fd"));
    let rw = rewrite(&fx.policy, &args, false).expect("fd secret");
    assert!(
        rw.args
            .iter()
            .any(|a| a.ends_with("=s3cr3t-from-file-0123456789"))
    );

    fs::write(&file, "short\n").expect("write");
    fx.policy.restricted[0].secret_fd = None;
    fx.policy.restricted[0].secret_file = Some(file);
    assert_eq!(
        err(rewrite(&fx.policy, &args, false)).flag,
        "http-restricted-api"
    );
}

#[test]
fn canonical_argv_and_derived_values() {
    let fx = Fx::new();
    let repo = fs::canonicalize(fx.p("repo")).expect("canon");
    let backends = fs::canonicalize(fx.p("install/backends")).expect("canon");
    let rw = fx.run(&[]).expect("minimal");
    let want: Vec<String> = [
        "--exit-timeout-secs=30".to_string(),
        "--log-verbose=0".into(),
        format!("--model-repository={}", repo.display()),
        "--exit-on-error=true".into(),
        "--disable-auto-complete-config".into(),
        "--strict-readiness=true".into(),
        "--model-control-mode=none".into(),
        "--allow-http=true".into(),
        "--http-address=127.0.0.1".into(),
        "--http-port=8000".into(),
        "--reuse-http-port=false".into(),
        "--http-restricted-api=model-repository,model-config,statistics,trace,logging,shared-memory:x-stockade-admin=<redacted>".into(),
        "--allow-grpc=false".into(),
        "--grpc-address=127.0.0.1".into(),
        "--grpc-port=8001".into(),
        "--reuse-grpc-port=false".into(),
        "--grpc-restricted-protocol=model-repository,model-config,statistics,trace,logging,shared-memory:x-stockade-admin=<redacted>".into(),
        "--allow-sagemaker=false".into(),
        "--allow-vertex-ai=false".into(),
        "--allow-metrics=false".into(),
        "--allow-gpu-metrics=false".into(),
        "--allow-cpu-metrics=false".into(),
        "--metrics-address=127.0.0.1".into(),
        "--metrics-port=8002".into(),
        format!("--backend-directory={}", backends.display()),
        format!("--repoagent-directory={}", fx.p("install/repoagents")),
        format!("--cache-directory={}", fs::canonicalize(fx.p("install/caches")).expect("c").display()),
        "--trace-level=OFF".into(),
    ]
    .into();
    assert_eq!(rw.args, want);
    assert_eq!(rw.model_repositories, vec![repo]);
    assert_eq!(rw.bind_ports, vec![8000]);
    assert!(rw.connect_ports.is_empty() && rw.read_files.is_empty() && rw.write_files.is_empty());
    assert_eq!(rw.exit_timeout_secs, 30);
}

#[test]
fn ports_follow_enabled_endpoints() {
    let fx = Fx::new();
    let rw = fx
        .run(&[
            "--allow-grpc=true",
            "--allow-metrics=1",
            "--http-port=19100",
            "--grpc-port",
            "19101",
            "--metrics-port=19102",
        ])
        .expect("all endpoints");
    assert_eq!(rw.bind_ports, vec![19100, 19101, 19102]);
    let rw = fx
        .run(&["--allow-http=false", "--allow-grpc=true"])
        .expect("grpc only");
    assert_eq!(rw.bind_ports, vec![8001]);
    let e = err(fx.run(&["--allow-grpc=true", "--grpc-port=8000"]));
    assert_eq!(e.flag, "grpc-port");
}

#[test]
fn model_repository_paths() {
    let fx = Fx::new();
    let none = rewrite(&fx.policy, &[], true);
    assert_eq!(err(none).flag, "model-repository");
    fs::create_dir_all(fx.dir.path().join("bad/$(touch PWNED)")).expect("mkdir");
    fs::create_dir_all(fx.dir.path().join("spaced/my model")).expect("mkdir");
    fs::write(fx.dir.path().join("afile"), "x").expect("write");
    let bad = [
        "relative/repo".to_string(),
        "s3://bucket/models".into(),
        format!("{}/x/../repo", fx.p("")),
        fx.p("bad/$(touch PWNED)"),
        fx.p("missing"),
        fx.p("afile"),
        fx.p("spaced"),
    ];
    for b in &bad {
        let e = err(rewrite(
            &fx.policy,
            &os(&[format!("--model-repository={b}")]),
            true,
        ));
        assert_eq!(e.flag, "model-repository", "{b}: {e}");
    }
    // Symlink resolved, alias canonicalized, duplicates merged.
    std::os::unix::fs::symlink(fx.p("repo"), fx.dir.path().join("link")).expect("symlink");
    let args = os(&[format!("--model-store={}", fx.p("link")), fx.repo()]);
    let rw = rewrite(&fx.policy, &args, true).expect("alias");
    let canon = fs::canonicalize(fx.p("repo")).expect("canon");
    assert_eq!(rw.model_repositories, vec![canon.clone()]);
    assert_eq!(
        rw.args
            .iter()
            .filter(|a| a.starts_with("--model-repository="))
            .count(),
        1
    );
    // Roots.
    let mut fx2 = Fx::new();
    fx2.policy.model_repository.roots = vec![PathBuf::from("/nonexistent-root")];
    assert_eq!(err(fx2.run(&[])).flag, "model-repository");
    fx2.policy.model_repository.roots = vec![fx2.dir.path().to_path_buf()];
    fx2.run(&[]).expect("inside root");
}

#[test]
fn tls_trace_cache_log_and_translation() {
    let fx = Fx::new();
    let e = err(fx.run(&["--grpc-use-ssl-mutual=false"]));
    assert!(e.reason.contains("still enables SSL"), "{e}");
    assert_eq!(
        err(fx.run(&["--grpc-use-ssl=true"])).flag,
        "grpc-server-cert"
    );
    fs::write(fx.dir.path().join("cert.pem"), "c").expect("w");
    fs::write(fx.dir.path().join("key.pem"), "k").expect("w");
    let cert = format!("--grpc-server-cert={}", fx.p("cert.pem"));
    let key = format!("--grpc-server-key={}", fx.p("key.pem"));
    let rw = fx
        .run(&["--allow-grpc=true", "--grpc-use-ssl=on", &cert, &key])
        .expect("tls");
    assert_eq!(rw.read_files.len(), 2);
    assert!(
        !rw.args
            .iter()
            .any(|a| a.starts_with("--grpc-use-ssl-mutual"))
    );
    assert_eq!(
        err(fx.run(&["--grpc-use-ssl-mutual=true", &cert, &key])).flag,
        "grpc-root-cert"
    );

    assert_eq!(
        err(fx.run(&["--trace-level=TIMESTAMPS"])).flag,
        "trace-level"
    );
    assert_eq!(
        err(fx.run(&["--trace-config", "level=OFF"])).flag,
        "trace-config"
    );

    let rw = fx
        .run(&["--cache-config=local,size=1048576"])
        .expect("local cache");
    assert!(rw.read_exec_dirs.len() == 2 && has(&rw, "--cache-config=local,size=1048576"));
    for bad in [
        "--cache-config=redis,host=x",
        "--cache-config=local,size=99999999999",
    ] {
        assert_eq!(err(fx.run(&[bad])).flag, "cache-config", "{bad}");
    }

    let rw = fx
        .run(&[&format!("--log-file={}", fx.p("log/triton.log"))])
        .expect("log");
    assert_eq!(rw.write_files.len(), 1);
    assert_eq!(
        err(fx.run(&[&format!("--log-file={}", fx.p("repo/x.log"))])).flag,
        "log-file"
    );

    let rw = fx.run(&["--strict-model-config=false"]).expect("translate");
    assert!(!has(&rw, "--disable-auto-complete-config"));
    // The opt-out stays in the final argv, so the argv read again decides the same (found by
    // fuzz/ target triton_argv: it used to come back with --disable-auto-complete-config).
    assert!(has(&rw, "--strict-model-config=false"));
    let again: Vec<&str> = rw
        .args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.contains("x-stockade-admin=") && !a.starts_with("--model-repository="))
        .collect();
    assert_eq!(fx.run(&again).expect("canonical argv").args, rw.args);
    let rw = fx.run(&["--strict-model-config=true"]).expect("translate");
    assert!(has(&rw, "--disable-auto-complete-config"));
}

#[test]
fn explicit_mode_profile() {
    let fx = Fx::with(EXPLICIT);
    let rw = fx
        .run(&["--load-model=add", "--allow-grpc=true"])
        .expect("explicit");
    assert!(has(&rw, "--model-control-mode=explicit") && has(&rw, "--load-model=add"));
    let e = err(fx.run(&["--model-control-mode=none"]));
    assert_eq!(e.flag, "model-control-mode");
    // Without model-repository in the admin group the mode is refused.
    let mut fx = Fx::with(EXPLICIT);
    fx.policy.restricted[0]
        .categories
        .retain(|c| c != "model-repository");
    let e = err(fx.run(&[]));
    assert!(e.reason.contains("model-repository"), "{e}");
    // Nor on a non-loopback listener, even if the profile listed one.
    let mut fx = Fx::with(EXPLICIT);
    fx.policy.listen.allowed_addresses.push("10.0.0.1".into());
    assert!(
        err(fx.run(&["--grpc-address=10.0.0.1"]))
            .reason
            .contains("loopback")
    );
}

/// ModelMesh's adapter: the model-repository API open on loopback gRPC only, every other admin
/// category (and model-repository on HTTP) still behind a secret.
#[test]
fn modelmesh_profile_opens_repository_on_loopback_grpc_only() {
    let fx = Fx::with(MODELMESH);
    let rw = fx.run(&[]).expect("modelmesh defaults");
    for a in [
        "--model-control-mode=explicit",
        "--allow-grpc=true",
        "--grpc-address=127.0.0.1",
        "--grpc-port=8001",
        "--http-address=127.0.0.1",
    ] {
        assert!(has(&rw, a), "{a} in {:?}", rw.args);
    }
    let flag = |f: &str| -> Vec<&String> { rw.args.iter().filter(|a| a.starts_with(f)).collect() };
    let grpc = flag("--grpc-restricted-protocol=");
    assert_eq!(grpc.len(), 1, "{grpc:?}");
    assert!(!grpc[0].contains("model-repository"), "{grpc:?}");
    for c in policy::ADMIN_CATEGORIES {
        assert!(grpc[0].contains(c), "{c} restricted on gRPC: {grpc:?}");
    }
    let http = flag("--http-restricted-api=");
    assert!(
        http.len() == 1 && http[0].contains("model-repository"),
        "{http:?}"
    );
    assert!(
        rw.notes
            .iter()
            .any(|n| n.contains("WITHOUT a header on gRPC 127.0.0.1:8001")),
        "{:?}",
        rw.notes
    );
    assert!(fx.run(&["--grpc-address=::1"]).is_ok());
    // A non-loopback gRPC address is refused, naming the flag, even if [triton.listen] allowed
    // it (the pod profile's 0.0.0.0).
    let mut fx = Fx::with(MODELMESH);
    fx.policy.listen.allowed_addresses.push("0.0.0.0".into());
    fx.policy.listen.allowed_addresses.push("10.0.0.1".into());
    for a in ["0.0.0.0", "10.0.0.1", "::ffff:127.0.0.1"] {
        let e = err(fx.run(&[&format!("--grpc-address={a}")]));
        assert_eq!(e.flag, "grpc-address", "{a}: {e}");
        assert!(
            e.reason.contains("not a loopback address")
                && e.reason.contains("[triton.open_model_repository]"),
            "{e}"
        );
    }
    // gRPC off: nothing open, said so.
    let rw = fx.run(&["--allow-grpc=false"]).expect("grpc off");
    assert!(rw.notes.iter().any(|n| n.starts_with("gRPC is off")));
    // HTTP cannot be opened by the operator either: the category is already the profile's.
    let e = err(fx.run(&["--http-restricted-api=model-repository:k=0123456789abcdef0"]));
    assert!(e.reason.contains("already restricted"), "{e}");
}

#[test]
fn open_model_repository_needs_everything_else_locked() {
    load(MODELMESH).check().expect("as shipped");
    let mut p = load(MODELMESH);
    p.open_model_repository.as_mut().unwrap().protocol = policy::Protocol::Http;
    assert!(
        p.check()
            .expect_err("http")
            .reason
            .contains("must be \"grpc\"")
    );
    let mut p = load(MODELMESH);
    p.restricted[1].categories.push("model-repository".into());
    assert!(p.check().expect_err("both").reason.contains("both name"));
    let mut p = load(MODELMESH);
    p.restricted[0]
        .categories
        .retain(|c| c != "model-repository");
    let e = p.check().expect_err("http open");
    assert_eq!(e.flag, "http-restricted-api", "{e}");
    for c in policy::ADMIN_CATEGORIES {
        for g in 0..2 {
            let mut p = load(MODELMESH);
            p.restricted[g].categories.retain(|x| x != c);
            let e = p.check().expect_err(c);
            assert!(e.reason.contains(&format!("needs '{c}'")), "{e}");
        }
    }
    let mut p = load(MODELMESH);
    p.open_model_repository.as_mut().unwrap().reason = " ".into();
    assert!(p.check().is_err(), "reason");
    // Without the table the same groups leave gRPC's load API unlocked: explicit mode refused.
    let mut fx = Fx::with(MODELMESH);
    fx.policy.open_model_repository = None;
    let e = err(fx.run(&[]));
    assert_eq!(e.flag, "model-control-mode", "{e}");
    assert!(e.reason.contains("grpc-restricted-protocol"), "{e}");
}

#[test]
fn policy_checks() {
    let mut p = load(PROFILE);
    p.pinned.remove("allow-vertex-ai");
    assert_eq!(p.check().expect_err("vertex").flag, "allow-vertex-ai");
    let mut p = load(PROFILE);
    p.backend_config
        .allowed
        .push("python,backend-directory".into());
    assert_eq!(p.check().expect_err("bd").flag, "backend-config");
    let mut p = load(PROFILE);
    p.defaults.remove("http-address");
    assert_eq!(p.check().expect_err("addr").flag, "http-address");
    let mut p = load(PROFILE);
    p.restricted[0].secret_fd = Some(3);
    assert!(p.check().is_err(), "two secret sources");
    let mut p = load(PROFILE);
    p.restricted[0].header = "X-Admin".into();
    assert!(p.check().is_err(), "uppercase header");
}

#[test]
fn error_display_is_one_line() {
    let e = RewriteError::new("http-port", "bad");
    assert_eq!(e.to_string(), "--http-port: bad");
    assert_eq!(
        RewriteError::new("", "x").to_string(),
        "tritonserver argv: x"
    );
    let _: &dyn std::error::Error = &e;
    assert!(!Path::new("/").join("x").as_os_str().is_empty());
    // Control characters in the operator's argv are escaped (fuzz/ target triton_argv found
    // `-\nh` printed over two lines; ESC would reach the terminal).
    for argv in [
        &["-\nh"][..],
        &["x\u{1b}[2J"],
        &["--log-file\r=/x"],
        &["--http-port=8\n0"],
    ] {
        let e = err(Fx::new().run(argv)).to_string();
        assert!(!e.chars().any(char::is_control), "{e:?}");
    }
}
