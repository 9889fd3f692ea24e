#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::OsString;

use super::{Policy, check, parse};

fn argv(a: &[&str]) -> Vec<OsString> {
    a.iter().map(OsString::from).collect()
}

fn policy(root: &std::path::Path) -> Policy {
    Policy {
        service_roots: vec![root.display().to_string()],
        ..Policy::default()
    }
}

fn svc() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("svc")).unwrap();
    d
}

fn run(
    d: &tempfile::TempDir,
    a: &[&str],
    env: &[(&str, &str)],
) -> crate::error::Result<super::Checked> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    check(
        &policy(d.path()),
        &parse(&argv(a))?,
        &d.path().join("svc"),
        &env,
    )
}

#[test]
fn click_forms_are_tokenized() {
    let p = parse(&argv(&[
        "serve",
        "service:Svc",
        "-p3001",
        "--host",
        "127.0.0.1",
        "--api-workers=2",
        "-q",
    ]))
    .unwrap();
    assert_eq!(p.bento.as_deref(), Some("service:Svc"));
    let names: Vec<(&str, Option<&str>)> = p
        .opts
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_deref()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("port", Some("3001")),
            ("host", Some("127.0.0.1")),
            ("api-workers", Some("2")),
            ("quiet", None)
        ]
    );
    // After `--` a dash-word is the BENTO.
    let p = parse(&argv(&["serve", "--", "-odd:Svc"])).unwrap();
    assert_eq!(p.bento.as_deref(), Some("-odd:Svc"));
}

#[test]
fn unknown_abbreviated_or_malformed_options_are_refused() {
    for (a, want) in [
        (
            vec!["serve", "--hos", "0.0.0.0", "s:S"],
            "--hos: unknown option",
        ),
        (vec!["serve", "-x", "s:S"], "-x: unknown option"),
        (vec!["serve", "s:S", "--port"], "port: needs a value"),
        (vec!["serve", "--reload=1", "s:S"], "reload: takes no value"),
        (
            vec!["serve", "a:A", "b:B"],
            "b:B: bentoml serve takes one BENTO",
        ),
        (
            vec!["build", "."],
            "build: only `bentoml serve BENTO` serves",
        ),
        (vec![], "bentoml: give `serve BENTO"),
    ] {
        let e = parse(&argv(&a)).unwrap_err();
        assert_eq!(e.exit_code(), 78, "{a:?}");
        assert!(e.to_string().contains(want), "{a:?}: {e}");
    }
}

#[test]
fn loopback_host_and_explicit_port_are_emitted() {
    let d = svc();
    let c = run(&d, &["serve", "service:Svc"], &[]).unwrap();
    let wd = d.path().join("svc").canonicalize().unwrap();
    assert_eq!(
        c.args,
        vec![
            "serve".to_string(),
            "--host=127.0.0.1".into(),
            "--port=3000".into(),
            format!("--working-dir={}", wd.display()),
            "--".into(),
            "service:Svc".into()
        ]
    );
    assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 3000));
}

#[test]
fn widening_flags_are_refused() {
    let d = svc();
    for (a, want) in [
        (
            vec!["serve", "s:S", "--host", "0.0.0.0"],
            "--host: '0.0.0.0' is not a listed address",
        ),
        (vec!["serve", "s:S", "--reload"], "--reload: refused"),
        (
            vec!["serve", "s:S", "--development"],
            "--development: refused",
        ),
        (vec!["serve", "s:S", "--env", "conda"], "--env: refused"),
        (
            vec!["serve", "s:S", "--arg-file", "/etc/passwd"],
            "--arg-file: refused",
        ),
        (
            vec!["serve", "s:S", "--ssl-keyfile-password=x"],
            "--ssl-keyfile-password: refused",
        ),
        (
            vec!["serve", "s:S", "--api-workers", "64"],
            "--api-workers: 64 workers",
        ),
        (
            vec!["serve", "s:S", "-p", "0"],
            "--port: 0 is not a TCP port",
        ),
        (
            vec!["serve", "s:S", "--working-dir", "/"],
            "--working-dir: / is outside",
        ),
        (vec!["serve"], "serve: needs the BENTO"),
    ] {
        let e = run(&d, &a, &[]).unwrap_err();
        assert_eq!(e.exit_code(), 78, "{a:?}: {e}");
        assert!(e.to_string().contains(want), "{a:?}: {e}");
    }
    let e = run(&d, &["serve", "s:S", "--ssl-certfile", "missing.pem"], &[]).unwrap_err();
    assert_eq!(e.exit_code(), 66, "{e}");
}

#[test]
fn bentoml_environment_is_checked() {
    let d = svc();
    for var in [
        "BENTOML_CONFIG",
        "BENTOML_CONFIG_OPTIONS",
        "BENTOML_CONFIG_OVERRIDES",
        "BENTOML_DEBUG",
    ] {
        let e = run(&d, &["serve", "s:S"], &[(var, "x")]).unwrap_err();
        assert_eq!(e.exit_code(), 78);
        assert!(
            e.to_string().starts_with(&format!(
                "server configuration refused: environment variable {var}: {var}:"
            )),
            "{e}"
        );
    }
    run(
        &d,
        &["serve", "s:S"],
        &[("BENTOML_HOME", "/tmp/h"), ("BENTOML_API_WORKERS", "2")],
    )
    .unwrap();
    let e = run(&d, &["serve", "s:S"], &[("BENTOML_API_WORKERS", "99")]).unwrap_err();
    assert!(
        e.to_string().contains("BENTOML_API_WORKERS: 99 workers"),
        "{e}"
    );
}

#[test]
fn tls_files_become_read_only_rules() {
    let d = svc();
    std::fs::write(d.path().join("svc/cert.pem"), "x").unwrap();
    let c = run(&d, &["serve", "s:S", "--ssl-certfile=cert.pem"], &[]).unwrap();
    assert_eq!(c.read_files, vec![d.path().join("svc/cert.pem")]);
    assert!(c.args.contains(&"--ssl-certfile=cert.pem".to_string()));
}
