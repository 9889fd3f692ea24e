#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::OsString;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::config::{self, DotEnv, Inputs, Source};
use super::{Policy, check, folder_of};

fn file() -> PathBuf {
    PathBuf::from("/repo/settings.json")
}

/// A safe baseline (as the built-in profile sets it) plus `settings` as settings.json.
fn inputs(settings: Value, env: &[(&str, &str)]) -> Inputs {
    let mut vars: Vec<(String, String)> = vec![
        ("MLSERVER_HOST".into(), "127.0.0.1".into()),
        ("MLSERVER_DEBUG".into(), "false".into()),
    ];
    for (k, v) in env {
        vars.retain(|(n, _)| !n.eq_ignore_ascii_case(k));
        vars.push(((*k).into(), (*v).into()));
    }
    let obj = settings.as_object().cloned().unwrap_or_default();
    Inputs {
        settings: (!obj.is_empty()).then(|| (file(), obj)),
        env: vars,
        dotenv: None,
    }
}

fn refused(i: &Inputs) -> (String, String, String) {
    refused_with(&Policy::default(), i, &[])
}

fn refused_with(p: &Policy, i: &Inputs, models: &[super::ModelFile]) -> (String, String, String) {
    let r = check(p, i, models).expect_err("should be refused");
    (r.source, r.key, r.reason)
}

#[test]
fn safe_configuration_gives_ports_and_notes() {
    let e = check(
        &Policy::default(),
        &inputs(
            json!({"http_port": 9000, "grpc_port": 9001, "metrics_port": 9002}),
            &[],
        ),
        &[],
    )
    .unwrap();
    assert_eq!(
        (e.host.as_str(), e.http_port, e.grpc_port, e.metrics_port),
        ("127.0.0.1", 9000, 9001, Some(9002))
    );
    assert!(e.connect_ports.is_empty());
    assert!(
        e.notes[0].contains("http 127.0.0.1:9000 (/repo/settings.json)"),
        "{:?}",
        e.notes
    );
    assert!(e.notes[0].contains("host from environment variable MLSERVER_HOST"));
}

#[test]
fn defaults_when_nothing_sets_the_ports() {
    let e = check(&Policy::default(), &inputs(json!({}), &[]), &[]).unwrap();
    assert_eq!(
        (e.http_port, e.grpc_port, e.metrics_port, e.parallel_workers),
        (8080, 8081, Some(8082), 1)
    );
}

#[test]
fn host_unset_is_mlservers_wildcard_and_refused() {
    let mut i = inputs(json!({}), &[]);
    i.env.retain(|(k, _)| k != "MLSERVER_HOST");
    let (src, key, why) = refused(&i);
    assert_eq!((src.as_str(), key.as_str()), ("MLServer's default", "host"));
    assert!(why.contains("'0.0.0.0' is not a listed address"), "{why}");
}

#[test]
fn settings_json_host_beats_the_environment() {
    let (src, key, _) = refused(&inputs(json!({"host": "0.0.0.0"}), &[]));
    assert_eq!(
        (src.as_str(), key.as_str()),
        ("/repo/settings.json", "host")
    );
}

#[test]
fn settings_json_keys_match_case_insensitively() {
    // MLServer 1.7.1 takes "HOST" from settings.json over MLSERVER_HOST (verified).
    let (src, key, _) = refused(&inputs(json!({"HOST": "0.0.0.0"}), &[]));
    assert_eq!(
        (src.as_str(), key.as_str()),
        ("/repo/settings.json", "host")
    );
    let (_, key, why) = refused(&inputs(
        json!({"host": "127.0.0.1", "Host": "0.0.0.0"}),
        &[],
    ));
    assert_eq!(key, "host");
    assert!(why.contains("different letter case"), "{why}");
    let model = (
        PathBuf::from("/repo/m/model-settings.json"),
        json!({"name": "m", "PARAMETERS": {"Environment_Tarball": "/x.tgz"}})
            .as_object()
            .cloned()
            .unwrap(),
    );
    let (_, key, _) = refused_with(&Policy::default(), &inputs(json!({}), &[]), &[model]);
    assert_eq!(key, "parameters.environment_tarball");
}

#[test]
fn environment_names_match_case_insensitively() {
    let i = inputs(json!({}), &[("mlserver_host", "0.0.0.0")]);
    let (src, key, _) = refused(&i);
    assert_eq!(
        (src.as_str(), key.as_str()),
        ("environment variable mlserver_host", "host")
    );
}

#[test]
fn same_variable_in_two_cases_with_two_values_is_refused() {
    let mut i = inputs(json!({}), &[]);
    i.env.push(("mlserver_host".into(), "0.0.0.0".into()));
    let (_, key, why) = refused(&i);
    assert_eq!(key, "MLSERVER_host");
    assert!(why.contains("different letter case"), "{why}");
}

#[test]
fn dotenv_applies_below_the_environment() {
    let mut i = inputs(json!({}), &[]);
    i.env.retain(|(k, _)| k != "MLSERVER_HOST");
    i.dotenv = Some(DotEnv {
        path: "/srv/.env".into(),
        vars: vec![("MLSERVER_HOST".into(), "0.0.0.0".into())],
    });
    let (src, key, _) = refused(&i);
    assert_eq!(
        (src.as_str(), key.as_str()),
        ("/srv/.env (MLSERVER_HOST)", "host")
    );
    // The environment wins over the .env.
    i.env.push(("MLSERVER_HOST".into(), "127.0.0.1".into()));
    check(&Policy::default(), &i, &[]).unwrap();
}

#[test]
fn listed_ipv6_loopback_and_profile_widening() {
    check(
        &Policy::default(),
        &inputs(json!({"host": "::1"}), &[]),
        &[],
    )
    .unwrap();
    let p = Policy {
        listen_hosts: vec!["10.0.0.5".into()],
        ..Policy::default()
    };
    check(&p, &inputs(json!({"host": "10.0.0.5"}), &[]), &[]).unwrap();
    let (_, key, _) = refused_with(&p, &inputs(json!({}), &[]), &[]);
    assert_eq!(key, "host");
}

#[test]
fn debug_must_be_false() {
    let mut i = inputs(json!({}), &[]);
    i.env.retain(|(k, _)| k != "MLSERVER_DEBUG");
    let (src, key, why) = refused(&i);
    assert_eq!(
        (src.as_str(), key.as_str()),
        ("MLServer's default", "debug")
    );
    assert!(why.contains("defaults to debug = true"), "{why}");
    let (src, key, _) = refused(&inputs(json!({"debug": true}), &[]));
    assert_eq!(
        (src.as_str(), key.as_str()),
        ("/repo/settings.json", "debug")
    );
    let (src, _, _) = refused(&inputs(json!({}), &[("MLSERVER_DEBUG", "yes")]));
    assert_eq!(src, "environment variable MLSERVER_DEBUG");
    let (_, _, why) = refused(&inputs(json!({"debug": "maybe"}), &[]));
    assert!(why.contains("is not a boolean"), "{why}");
    // The file's false beats an environment true.
    check(
        &Policy::default(),
        &inputs(json!({"debug": false}), &[("MLSERVER_DEBUG", "true")]),
        &[],
    )
    .unwrap();
}

#[test]
fn ports_must_be_real_distinct_ports() {
    for (v, want) in [
        (json!({"http_port": 0}), "0 is not a TCP port"),
        (json!({"grpc_port": 70000}), "70000 is not a TCP port"),
        (json!({"metrics_port": "x"}), "is not an integer"),
        (
            json!({"http_port": 9000, "grpc_port": 9000}),
            "port 9000 is also http_port",
        ),
    ] {
        let (src, _, why) = refused(&inputs(v.clone(), &[]));
        assert_eq!(src, "/repo/settings.json");
        assert!(why.contains(want), "{v}: {why}");
    }
    let (src, key, _) = refused(&inputs(json!({}), &[("MLSERVER_HTTP_PORT", "0")]));
    assert_eq!(
        (src.as_str(), key.as_str()),
        ("environment variable MLSERVER_HTTP_PORT", "http_port")
    );
}

#[test]
fn metrics_off_leaves_its_port_out() {
    let e = check(
        &Policy::default(),
        &inputs(json!({"metrics_endpoint": null, "metrics_port": 8080}), &[]),
        &[],
    )
    .unwrap();
    assert_eq!(e.metrics_port, None);
    assert!(e.notes[0].contains("metrics off"));
    let e = check(
        &Policy::default(),
        &inputs(json!({}), &[("MLSERVER_METRICS_ENDPOINT", "")]),
        &[],
    )
    .unwrap();
    assert_eq!(e.metrics_port, None);
}

#[test]
fn code_loading_and_private_overrides_are_refused() {
    for key in [
        "model_repository_implementation",
        "_custom_rest_server_settings",
        "_custom_grpc_server_settings",
        "_custom_metrics_server_settings",
        "cors_settings",
        "logging_settings",
    ] {
        let (src, k, why) = refused(&inputs(json!({ key: {"host": "0.0.0.0"} }), &[]));
        assert_eq!((src.as_str(), k.as_str()), ("/repo/settings.json", key));
        assert!(why.starts_with("refused: "), "{why}");
    }
    let (src, k, _) = refused(&inputs(
        json!({}),
        &[("MLSERVER_MODEL_REPOSITORY_IMPLEMENTATION", "evil.Repo")],
    ));
    assert_eq!(
        (src.as_str(), k.as_str()),
        (
            "environment variable MLSERVER_MODEL_REPOSITORY_IMPLEMENTATION",
            "model_repository_implementation"
        )
    );
    // null is the default: allowed.
    check(
        &Policy::default(),
        &inputs(json!({"model_repository_implementation": null}), &[]),
        &[],
    )
    .unwrap();
}

#[test]
fn kafka_and_tracing_egress_need_the_profile() {
    let (src, key, why) = refused(&inputs(json!({"kafka_enabled": true}), &[]));
    assert_eq!(
        (src.as_str(), key.as_str()),
        ("MLServer's default", "kafka_servers")
    );
    assert!(why.contains("'localhost:9092'"), "{why}");
    let (src, key, _) = refused(&inputs(json!({"tracing_server": "otel:4317"}), &[]));
    assert_eq!(
        (src.as_str(), key.as_str()),
        ("/repo/settings.json", "tracing_server")
    );
    let p = Policy {
        kafka_servers: vec!["broker:9093".into()],
        tracing_servers: vec!["otel:4317".into()],
        ..Policy::default()
    };
    let e = check(
        &p,
        &inputs(
            json!({"kafka_enabled": true, "kafka_servers": "broker:9093", "tracing_server": "otel:4317"}),
            &[],
        ),
        &[],
    )
    .unwrap();
    assert_eq!(e.connect_ports, vec![9093, 4317]);
    // kafka_enabled false: kafka_servers is irrelevant.
    check(
        &Policy::default(),
        &inputs(json!({"kafka_servers": "evil:1"}), &[]),
        &[],
    )
    .unwrap();
}

/// The connect rule stockade adds is the port the client library dials: aiokafka's and the OTLP
/// gRPC exporter's own parsing, defaults included; an endpoint whose port stockade cannot tell is
/// refused before start, naming the key.
#[test]
fn egress_ports_follow_the_clients_parsing() {
    for (s, want) in [
        ("broker:9093", Ok(9093)),
        ("broker", Ok(9092)),
        (" 10.0.0.1:19092 ", Ok(19092)),
        ("[::1]:9094", Ok(9094)),
        ("[::1]", Ok(9092)),
        ("::1", Ok(9092)),
    ] {
        assert_eq!(super::kafka_port(s), want, "{s}");
    }
    for s in ["broker:0", "broker:x", "broker:70000", "[::1", "[::1]x"] {
        assert!(super::kafka_port(s).is_err(), "{s}");
    }
    for (s, want) in [
        ("otel:4317", 4317),
        ("http://otel:4317", 4317),
        ("http://otel:4317/v1/traces", 4317),
        ("https://[::1]:4318/", 4318),
        ("[fd00::1]:4317", 4317),
    ] {
        assert_eq!(super::otlp_port(s), Ok(want), "{s}");
    }
    for s in [
        "otel",
        "http://otel",
        "[::1]",
        "::1",
        "dns:///otel:4317",
        "unix:///run/otel.sock",
        "unix:/run/otel.sock",
        "otel:0",
        "otel:99999",
        "http://user@otel:4317",
        "",
    ] {
        assert!(super::otlp_port(s).is_err(), "{s:?}");
    }
    assert!(
        super::otlp_port("otel")
            .unwrap_err()
            .contains("names no port")
    );

    // Through check(): a portless broker gets aiokafka's 9092; a portless collector is refused.
    let p = Policy {
        kafka_servers: vec!["broker".into(), "[::1]".into()],
        tracing_servers: vec!["otel".into(), "http://otel:4317/".into()],
        ..Policy::default()
    };
    let e = check(
        &p,
        &inputs(
            json!({"kafka_enabled": true, "kafka_servers": "broker,[::1]", "tracing_server": "http://otel:4317/"}),
            &[],
        ),
        &[],
    )
    .unwrap();
    assert_eq!(e.connect_ports, vec![9092, 9092, 4317]);
    assert!(
        e.notes
            .iter()
            .any(|n| n.contains("landlock connect_tcp gets port 4317")),
        "{:?}",
        e.notes
    );
    let (src, key, why) = refused_with(&p, &inputs(json!({"tracing_server": "otel"}), &[]), &[]);
    assert_eq!(
        (src.as_str(), key.as_str()),
        ("/repo/settings.json", "tracing_server")
    );
    assert!(
        why.contains("'otel' names no port") && why.contains("connect_tcp"),
        "{why}"
    );
    let p = Policy {
        kafka_servers: vec!["broker:x".into()],
        ..Policy::default()
    };
    let (_, key, why) = refused_with(
        &p,
        &inputs(
            json!({"kafka_enabled": true, "kafka_servers": "broker:x"}),
            &[],
        ),
        &[],
    );
    assert_eq!(key, "kafka_servers");
    assert!(why.contains("port 'x' is not a TCP port"), "{why}");
}

#[test]
fn workers_are_bounded() {
    for n in [5, -1] {
        let (src, key, why) = refused(&inputs(json!({"parallel_workers": n}), &[]));
        assert_eq!(
            (src.as_str(), key.as_str()),
            ("/repo/settings.json", "parallel_workers")
        );
        assert!(why.contains("allowed 0..=4"), "{why}");
    }
    check(
        &Policy::default(),
        &inputs(json!({"parallel_workers": 0}), &[]),
        &[],
    )
    .unwrap();
    let model = (
        PathBuf::from("/repo/m/model-settings.json"),
        json!({"name": "m", "parallel_workers": 99})
            .as_object()
            .cloned()
            .unwrap(),
    );
    let (src, key, _) = refused_with(&Policy::default(), &inputs(json!({}), &[]), &[model]);
    assert_eq!(
        (src.as_str(), key.as_str()),
        ("/repo/m/model-settings.json", "parallel_workers")
    );
}

#[test]
fn environment_tarballs_and_paths_are_refused() {
    for key in ["environment_tarball", "environment_path"] {
        let model = (
            PathBuf::from("/repo/m/model-settings.json"),
            json!({"name": "m", "parameters": { key: "./env.tar.gz" }})
                .as_object()
                .cloned()
                .unwrap(),
        );
        let (src, k, _) = refused_with(&Policy::default(), &inputs(json!({}), &[]), &[model]);
        assert_eq!(
            (src.as_str(), k),
            ("/repo/m/model-settings.json", format!("parameters.{key}"))
        );
        let var = format!("MLSERVER_MODEL_{}", key.to_ascii_uppercase());
        let (src, k, _) = refused(&inputs(json!({}), &[(&var, "/x.tgz")]));
        assert_eq!(
            (src, k.as_str()),
            (format!("environment variable {var}"), key)
        );
    }
    let (_, k, _) = refused(&inputs(
        json!({}),
        &[(
            "MLSERVER_MODEL_PARAMETERS",
            r#"{"environment_tarball": "/x.tgz"}"#,
        )],
    ));
    assert_eq!(k, "parameters");
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn dotenv_is_read_like_python_dotenv() {
    let d = tmp();
    std::fs::write(
        d.path().join(".env"),
        "# comment\nexport MLSERVER_HOST=0.0.0.0 # trailing\nMLSERVER_HTTP_PORT='9100'\nOTHER=\"a b\"\n\n",
    )
    .unwrap();
    let env = config::read_dotenv(d.path()).unwrap().unwrap();
    assert_eq!(
        env.vars,
        vec![
            ("MLSERVER_HOST".to_string(), "0.0.0.0".to_string()),
            ("MLSERVER_HTTP_PORT".to_string(), "9100".to_string()),
            ("OTHER".to_string(), "a b".to_string()),
        ]
    );
    assert!(
        config::read_dotenv(&d.path().join("none"))
            .unwrap()
            .is_none()
    );
}

#[test]
fn dotenv_lines_stockade_cannot_read_exactly_are_refused() {
    for text in [
        "MLSERVER_HOST=\"0.0.0.0\n\"\n",
        "MLSERVER_HOST=${ADDR}\n",
        "MLSERVER_HOST=\"a\\\"b\"\n",
        "'MLSERVER_HOST'=0.0.0.0\n",
        "MLSERVER_HOST\n",
    ] {
        let d = tmp();
        std::fs::write(d.path().join(".env"), text).unwrap();
        let r = config::read_dotenv(d.path()).expect_err(text);
        assert!(
            r.source.ends_with("/.env") && r.key.starts_with("line 1"),
            "{r:?}"
        );
    }
}

#[test]
fn settings_json_must_be_a_json_object() {
    let d = tmp();
    assert!(config::read_settings(d.path()).unwrap().is_none());
    std::fs::write(d.path().join("settings.json"), "{\"host\": ").unwrap();
    let r = config::read_settings(d.path()).unwrap_err();
    assert!(
        r.source.ends_with("/settings.json") && r.reason.contains("not valid JSON"),
        "{r:?}"
    );
    std::fs::write(d.path().join("settings.json"), "[1]").unwrap();
    let r = config::read_settings(d.path()).unwrap_err();
    assert!(r.reason.contains("not a JSON object"), "{r:?}");
}

#[test]
fn every_model_settings_file_is_found_hidden_and_symlinked_included() {
    let d = tmp();
    let root = d.path();
    for sub in ["a", "b/c", ".hidden", "outside"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    for sub in ["a", "b/c", ".hidden", "outside"] {
        std::fs::write(root.join(sub).join("model-settings.json"), "{}").unwrap();
    }
    // A loop back to the root and a link to a sibling directory.
    std::os::unix::fs::symlink(root, root.join("b/loop")).unwrap();
    let repo = root.join("b");
    std::os::unix::fs::symlink(root.join("outside"), repo.join("linked")).unwrap();
    // Each directory once (the loop is cut), every file reached, hidden ones included.
    let found = config::model_settings_files(&repo).unwrap();
    let mut real: Vec<PathBuf> = found.iter().map(|p| p.canonicalize().unwrap()).collect();
    real.sort();
    let root = root.canonicalize().unwrap();
    let mut want: Vec<PathBuf> = ["a", "b/c", ".hidden", "outside"]
        .iter()
        .map(|s| root.join(s).join("model-settings.json"))
        .collect();
    want.sort();
    assert_eq!(real, want, "{found:?}");
}

fn args(a: &[&str]) -> Vec<OsString> {
    a.iter().map(OsString::from).collect()
}

#[test]
fn only_start_folder_is_accepted() {
    let d = tmp();
    std::fs::create_dir(d.path().join("repo")).unwrap();
    let got = folder_of(&args(&["start", "repo"]), d.path()).unwrap();
    assert_eq!(got, d.path().join("repo").canonicalize().unwrap());
    for (a, code, want) in [
        (vec![], 78, "give `start FOLDER`"),
        (
            vec!["build", "repo"],
            78,
            "build: only `mlserver start FOLDER` serves",
        ),
        (
            vec!["start"],
            78,
            "start: needs the model repository FOLDER",
        ),
        (
            vec!["start", "--help"],
            78,
            "--help: mlserver start takes one FOLDER",
        ),
        (
            vec!["start", "repo", "x"],
            78,
            "x: mlserver start takes exactly one FOLDER",
        ),
        (vec!["start", "nope"], 66, "nope"),
    ] {
        let e = folder_of(&args(&a), d.path()).unwrap_err();
        assert_eq!(e.exit_code(), code, "{a:?}: {e}");
        assert!(e.to_string().contains(want), "{a:?}: {e}");
    }
}

#[test]
fn refusal_message_names_file_and_key() {
    let e = super::refusal(config::refuse(
        &Source::File("/r/settings.json".into()),
        "host",
        "why",
    ));
    assert_eq!(e.exit_code(), 78);
    assert_eq!(
        e.to_string(),
        "server configuration refused: /r/settings.json: host: why"
    );
}

#[test]
fn duplicate_json_keys_keep_the_last_like_python() {
    // Python's json keeps the last of two equal keys; so must the reader.
    let d = tmp();
    std::fs::write(
        d.path().join("settings.json"),
        r#"{"host": "127.0.0.1", "host": "0.0.0.0"}"#,
    )
    .unwrap();
    let (path, obj) = config::read_settings(d.path()).unwrap().unwrap();
    let i = Inputs {
        settings: Some((path, obj)),
        env: vec![("MLSERVER_DEBUG".into(), "false".into())],
        dotenv: None,
    };
    let (_, key, why) = refused(&i);
    assert_eq!(key, "host");
    assert!(why.contains("'0.0.0.0'"), "{why}");
}
