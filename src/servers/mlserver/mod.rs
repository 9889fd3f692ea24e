//! Seldon MLServer 1.7.1 (`mlserver start FOLDER`) behind the server-kind seam.
//!
//! MLServer has no command-line options: everything comes from `FOLDER/settings.json`, the
//! `model-settings.json` files under FOLDER, `MLSERVER_*` / `MLSERVER_MODEL_*` variables and a
//! `.env` in the cwd (`config`). This kind reads the effective configuration the way MLServer
//! does and refuses, before anything starts, what widens exposure: a listener address not
//! listed, debug on, a custom repository class, private uvicorn/gRPC overrides, Kafka or tracing
//! egress the profile does not name, CORS, a logging config, environment tarballs, too many
//! workers. The effective ports become the Landlock bind set and the readiness URL.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::landlock_policy::Access3;
use crate::servers::{Kind, Prepared, Request};

pub mod config;
#[cfg(test)]
mod tests;

use config::{Found, Inputs, Refusal, Source, refuse};

/// The profile's `[mlserver]` section (all keys optional).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Addresses MLServer's `host` may name (it binds HTTP, gRPC and metrics on it).
    #[serde(default = "default_hosts")]
    pub listen_hosts: Vec<String>,
    /// Upper bound for `parallel_workers` (each worker is a process).
    #[serde(default = "default_max_workers")]
    pub max_parallel_workers: u32,
    /// `host:port` Kafka brokers MLServer may reach when `kafka_enabled` (none by default).
    #[serde(default)]
    pub kafka_servers: Vec<String>,
    /// `host:port` OpenTelemetry collectors `tracing_server` may name (none by default).
    #[serde(default)]
    pub tracing_servers: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            listen_hosts: default_hosts(),
            max_parallel_workers: default_max_workers(),
            kafka_servers: Vec::new(),
            tracing_servers: Vec::new(),
        }
    }
}

fn default_hosts() -> Vec<String> {
    vec!["127.0.0.1".into(), "::1".into()]
}
fn default_max_workers() -> u32 {
    4
}

/// What the checked configuration means for the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub host: String,
    pub http_port: u16,
    pub grpc_port: u16,
    /// `None` when `metrics_endpoint` is null or empty (no metrics server).
    pub metrics_port: Option<u16>,
    pub parallel_workers: i64,
    /// Outbound ports the profile's Kafka brokers / tracing collectors need.
    pub connect_ports: Vec<u16>,
    /// Where each egress comes from: (source, settings key, port).
    pub egress: Vec<(Source, &'static str, u16)>,
    pub notes: Vec<String>,
}

/// A model file and its top-level object.
pub type ModelFile = config::JsonFile;

fn setting(inputs: &Inputs, key: &str) -> std::result::Result<Option<Found>, Refusal> {
    inputs.server(key)
}

fn port(inputs: &Inputs, key: &str, default: u16) -> std::result::Result<(u16, Source), Refusal> {
    match setting(inputs, key)? {
        None => Ok((default, Source::Default)),
        Some(f) => {
            let n = config::as_int(&f, key)?;
            match u16::try_from(n) {
                Ok(p) if p != 0 => Ok((p, f.source)),
                _ => Err(refuse(
                    &f.source,
                    key,
                    format!("{n} is not a TCP port in 1..=65535 (0 would bind a random port)"),
                )),
            }
        }
    }
}

/// aiokafka's default broker port (`aiokafka.conn.DEFAULT_KAFKA_PORT`).
const KAFKA_DEFAULT_PORT: u16 = 9092;

fn tcp_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(n) if n != 0 => Ok(n),
        _ => Err(format!("port '{p}' is not a TCP port in 1..=65535")),
    }
}

/// The TCP port aiokafka connects to for one bootstrap entry, by its own rules
/// (`aiokafka.conn.get_ip_port_afi`): `[v6]:port` and `host:port` name it; `host`, `[v6]` and a
/// bare IPv6 literal mean 9092.
pub fn kafka_port(s: &str) -> Result<u16, String> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('[') {
        let (_, after) = rest
            .split_once(']')
            .ok_or_else(|| "an unclosed '[' (IPv6 literal)".to_string())?;
        return match after.strip_prefix(':') {
            None if after.is_empty() => Ok(KAFKA_DEFAULT_PORT),
            None => Err(format!("'{after}' after the IPv6 literal")),
            Some(p) => tcp_port(p),
        };
    }
    if !s.contains(':') || s.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok(KAFKA_DEFAULT_PORT);
    }
    let (_, p) = s.rsplit_once(':').unwrap_or_default();
    tcp_port(p)
}

/// The TCP port MLServer's OTLP gRPC exporter dials for `tracing_server`: a URL's `host:port`
/// (`scheme://host:port/...`, as opentelemetry's `urlparse(...).netloc`), else the value itself
/// as a gRPC target. Without a port gRPC picks its own default (443): refused, so that the connect
/// rule stockade adds is the port the endpoint names.
pub fn otlp_port(s: &str) -> Result<u16, String> {
    let s = s.trim();
    let target = match s.split_once("://") {
        Some((_, rest)) if !rest.starts_with('/') => {
            rest.split(['/', '?', '#']).next().unwrap_or_default()
        }
        _ => s,
    };
    let no_port = || {
        "names no port: gRPC would dial its default (443), which the endpoint does not say; give \
         host:port"
            .to_string()
    };
    if target.contains(['/', '@']) || target.is_empty() {
        return Err("is not host:port (a gRPC target stockade cannot map to one TCP port)".into());
    }
    if let Some(rest) = target.strip_prefix('[') {
        return match rest.split_once("]:") {
            Some((_, p)) => tcp_port(p),
            None => Err(no_port()),
        };
    }
    match target.split_once(':') {
        Some((host, p)) if !host.is_empty() && !p.contains(':') => tcp_port(p),
        Some(_) => Err("is not host:port (a bare IPv6 literal needs [brackets])".into()),
        None => Err(no_port()),
    }
}

/// Check the effective configuration against the policy.
pub fn check(
    policy: &Policy,
    inputs: &Inputs,
    models: &[ModelFile],
) -> std::result::Result<Effective, Refusal> {
    let mut notes = Vec::new();

    // Listeners: one host for all three servers.
    let (host, host_src) = match setting(inputs, "host")? {
        None => ("0.0.0.0".to_string(), Source::Default),
        Some(f) => match config::as_opt_str(&f, "host")? {
            Some(h) => (h, f.source),
            None => return Err(refuse(&f.source, "host", "null is not an address")),
        },
    };
    let listed = policy.listen_hosts.iter().any(|l| {
        l == &host
            || matches!((l.parse::<IpAddr>(), host.parse::<IpAddr>()), (Ok(a), Ok(b)) if a == b)
    });
    if !listed {
        return Err(refuse(
            &host_src,
            "host",
            format!(
                "'{host}' is not a listed address (mlserver.listen_hosts = {:?}); MLServer binds \
                 HTTP, gRPC and metrics on it, and Landlock limits ports, not addresses{}",
                policy.listen_hosts,
                if host_src == Source::Default {
                    " (set MLSERVER_HOST in env.set, or \"host\" in settings.json)"
                } else {
                    ""
                }
            ),
        ));
    }
    let (http, http_src) = port(inputs, "http_port", 8080)?;
    let (grpc, grpc_src) = port(inputs, "grpc_port", 8081)?;
    let metrics_on = match setting(inputs, "metrics_endpoint")? {
        None => true,
        Some(f) => config::as_opt_str(&f, "metrics_endpoint")?.is_some_and(|s| !s.is_empty()),
    };
    let metrics = if metrics_on {
        let (m, m_src) = port(inputs, "metrics_port", 8082)?;
        Some((m, m_src))
    } else {
        None
    };
    let mut ports = vec![
        ("http_port", http, &http_src),
        ("grpc_port", grpc, &grpc_src),
    ];
    if let Some((m, src)) = &metrics {
        ports.push(("metrics_port", *m, src));
    }
    for (i, (k, p, src)) in ports.iter().enumerate() {
        if let Some((k2, _, _)) = ports[..i].iter().find(|(_, p2, _)| p2 == p) {
            return Err(refuse(
                src,
                k,
                format!("port {p} is also {k2}: MLServer would fail to bind one listener"),
            ));
        }
    }
    notes.push(format!(
        "mlserver listeners: http {host}:{http} ({http_src}), grpc {host}:{grpc} ({grpc_src}), \
         metrics {}; host from {host_src}",
        metrics
            .as_ref()
            .map_or("off (metrics_endpoint null)".to_string(), |(m, s)| format!(
                "{host}:{m} ({s})"
            ))
    ));

    // debug: tracebacks with paths in HTTP 500 answers, access logs. Default true.
    match setting(inputs, "debug")? {
        None => {
            return Err(refuse(
                &Source::Default,
                "debug",
                "MLServer defaults to debug = true (tracebacks in error answers): set \
                 MLSERVER_DEBUG=false in env.set, or \"debug\": false in settings.json",
            ));
        }
        Some(f) => {
            if config::as_bool(&f, "debug")? {
                return Err(refuse(
                    &f.source,
                    "debug",
                    "debug must be false (it returns Python tracebacks with file paths to clients)",
                ));
            }
        }
    }

    // Workers: one process each.
    let workers = match setting(inputs, "parallel_workers")? {
        None => 1,
        Some(f) => {
            let n = config::as_int(&f, "parallel_workers")?;
            bound_workers(policy, n, &f.source, "parallel_workers")?;
            n
        }
    };

    // Keys that load code, widen listeners or open egress.
    for (key, why) in [
        (
            "model_repository_implementation",
            "imports an arbitrary Python class as the model repository",
        ),
        (
            "_custom_rest_server_settings",
            "private uvicorn overrides (can move the HTTP listener)",
        ),
        (
            "_custom_grpc_server_settings",
            "private gRPC server options",
        ),
        (
            "_custom_metrics_server_settings",
            "private uvicorn overrides for the metrics server (can move its listener)",
        ),
        (
            "cors_settings",
            "lets web pages of other origins call the unauthenticated API from a browser",
        ),
        (
            "logging_settings",
            "a logging config can name files and network handlers the server would open",
        ),
    ] {
        if let Some(f) = setting(inputs, key)?
            && f.value != serde_json::Value::Null
        {
            return Err(refuse(&f.source, key, format!("refused: {why}")));
        }
    }

    let mut connect_ports = Vec::new();
    let mut egress = Vec::new();
    if let Some(f) = setting(inputs, "kafka_enabled")?
        && config::as_bool(&f, "kafka_enabled")?
    {
        let (servers, src) = match setting(inputs, "kafka_servers")? {
            None => ("localhost:9092".to_string(), Source::Default),
            Some(s) => (
                config::as_opt_str(&s, "kafka_servers")?.unwrap_or_default(),
                s.source,
            ),
        };
        for srv in servers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if !policy.kafka_servers.iter().any(|k| k == srv) {
                return Err(refuse(
                    &src,
                    "kafka_servers",
                    format!(
                        "Kafka broker '{srv}' (kafka_enabled from {}) is not listed in \
                         mlserver.kafka_servers: no egress unless the profile names it",
                        f.source
                    ),
                ));
            }
            let port = kafka_port(srv).map_err(|why| {
                refuse(
                    &src,
                    "kafka_servers",
                    format!(
                        "Kafka broker '{srv}': {why}; stockade allows the connect by port \
                         (landlock connect_tcp) and cannot tell which"
                    ),
                )
            })?;
            connect_ports.push(port);
            egress.push((src.clone(), "kafka_servers", port));
        }
        notes.push(format!(
            "mlserver: Kafka to {servers}: landlock connect_tcp gets port(s) {} (by port: Landlock \
             cannot limit the host; brokers the cluster metadata names on other ports stay \
             unreachable)",
            connect_ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(f) = setting(inputs, "tracing_server")?
        && let Some(t) = config::as_opt_str(&f, "tracing_server")?
    {
        if !policy.tracing_servers.iter().any(|k| k == &t) {
            return Err(refuse(
                &f.source,
                "tracing_server",
                format!(
                    "OpenTelemetry export to '{t}' is not listed in mlserver.tracing_servers: \
                     no egress unless the profile names it"
                ),
            ));
        }
        let port = otlp_port(&t).map_err(|why| {
            refuse(
                &f.source,
                "tracing_server",
                format!(
                    "OpenTelemetry collector '{t}' {why}; stockade allows the connect by port \
                     (landlock connect_tcp)"
                ),
            )
        })?;
        connect_ports.push(port);
        egress.push((f.source.clone(), "tracing_server", port));
        notes.push(format!(
            "mlserver: tracing to {t}: landlock connect_tcp gets port {port} (by port: Landlock \
             cannot limit the host)"
        ));
    }

    // Models: environment tarballs are unpacked without an extraction filter and run the packed
    // interpreter; an environment path runs another interpreter.
    for key in ["environment_tarball", "environment_path"] {
        let var = format!("MLSERVER_MODEL_{}", key.to_ascii_uppercase());
        if let Some(f) = inputs.variable(&var)? {
            return Err(refuse(&f.source, key, env_reason(key)));
        }
        if let Some(f) = inputs.variable("MLSERVER_MODEL_PARAMETERS")?
            && config::as_object(&f).is_none_or(|o| {
                o.iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case(key) && !v.is_null())
            })
        {
            return Err(refuse(
                &f.source,
                "parameters",
                format!("unreadable or sets {key}: {}", env_reason(key)),
            ));
        }
    }
    let mut names = Vec::new();
    for (path, obj) in models {
        let src = Source::File(path.clone());
        if let Some(params) = config::get_ci(obj, "parameters", &src)?.filter(|v| !v.is_null()) {
            let Some(p) = params.as_object() else {
                return Err(refuse(&src, "parameters", "is not a JSON object"));
            };
            for key in ["environment_tarball", "environment_path"] {
                if config::get_ci(p, key, &src)?.is_some_and(|v| !v.is_null()) {
                    return Err(refuse(&src, &format!("parameters.{key}"), env_reason(key)));
                }
            }
        }
        if let Some(v) = config::get_ci(obj, "parallel_workers", &src)?.filter(|v| !v.is_null()) {
            let f = Found {
                value: v.clone(),
                source: src.clone(),
            };
            let n = config::as_int(&f, "parallel_workers")?;
            bound_workers(policy, n, &src, "parallel_workers")?;
        }
        let name = config::get_ci(obj, "name", &src)?
            .and_then(|v| v.as_str())
            .unwrap_or("?");
        let imp = config::get_ci(obj, "implementation", &src)?
            .and_then(|v| v.as_str())
            .unwrap_or("?");
        names.push(format!("{name} ({imp})"));
    }
    notes.push(if names.is_empty() {
        "mlserver: no model-settings.json under the repository (a default model may come from \
         MLSERVER_MODEL_* variables)"
            .to_string()
    } else {
        format!(
            "mlserver: {} model(s): {}; an `implementation` is Python code imported from the \
             model's folder",
            names.len(),
            names.join(", ")
        )
    });

    Ok(Effective {
        host,
        http_port: http,
        grpc_port: grpc,
        metrics_port: metrics.map(|(m, _)| m),
        parallel_workers: workers,
        connect_ports,
        egress,
        notes,
    })
}

fn env_reason(key: &str) -> String {
    match key {
        "environment_tarball" => "environment tarballs are refused: MLServer unpacks them with no \
                                  extraction filter (path traversal) and runs the packed \
                                  interpreter"
            .into(),
        _ => "a custom environment runs another Python interpreter and its packages".into(),
    }
}

fn bound_workers(
    policy: &Policy,
    n: i64,
    src: &Source,
    key: &str,
) -> std::result::Result<(), Refusal> {
    if n < 0 || n > i64::from(policy.max_parallel_workers) {
        return Err(refuse(
            src,
            key,
            format!(
                "{n} workers: allowed 0..={} (mlserver.max_parallel_workers)",
                policy.max_parallel_workers
            ),
        ));
    }
    Ok(())
}

fn refusal(r: Refusal) -> Error {
    Error::ServerConfig {
        source: r.source,
        key: r.key,
        reason: r.reason,
    }
}

/// Kafka and tracing egress is a TCP connect: the Landlock rule comes from the endpoint, but the
/// profile's seccomp filter must allow `connect` too (the built-in `mlserver` profile does not:
/// no egress by default), or MLServer's clients fail at run time with ENOSYS
/// ("connect failed: ... Function not implemented", measured with the OTLP exporter). Refused
/// before start instead, naming the settings key.
fn egress_needs_connect(req: &Request<'_>, eff: &Effective) -> Result<()> {
    let Some((source, key, port)) = eff.egress.first() else {
        return Ok(());
    };
    let seccomp = crate::seccomp_policy::compile(req.loaded, &req.loaded.profile.seccomp)?;
    // connect(fd, sockaddr *, sizeof(struct sockaddr_in)); no argument rule in stockade looks at
    // more than the number.
    if seccomp.allows("connect", [3, 0, 16, 0, 0, 0]) {
        return Ok(());
    }
    Err(Error::ServerConfig {
        source: source.to_string(),
        key: (*key).to_string(),
        reason: format!(
            "MLServer would connect to TCP port {port} (landlock connect_tcp allows it), but the \
             profile's [seccomp] does not allow `connect`: the client would fail with ENOSYS at \
             run time; add \"connect\" to seccomp.allow in a profile that allows this egress"
        ),
    })
}

/// `mlserver start FOLDER` and nothing else; FOLDER resolved against the server's cwd.
fn folder_of(args: &[std::ffi::OsString], cwd: &Path) -> Result<PathBuf> {
    let flag = |flag: &str, reason: &str| Error::ServerFlag {
        flag: flag.into(),
        reason: reason.into(),
    };
    let args: Vec<&str> = args
        .iter()
        .map(|a| {
            a.to_str()
                .ok_or_else(|| flag("mlserver argv", "arguments must be UTF-8"))
        })
        .collect::<Result<_>>()?;
    let folder = match args.as_slice() {
        ["start", f] if !f.starts_with('-') => *f,
        [] => {
            return Err(flag(
                "mlserver",
                "give `start FOLDER` (the model repository) after the executable",
            ));
        }
        ["start"] => return Err(flag("start", "needs the model repository FOLDER")),
        ["start", f] => {
            return Err(flag(
                f,
                "mlserver start takes one FOLDER and no options (its settings are files and \
                 MLSERVER_* variables)",
            ));
        }
        ["start", _, extra, ..] => {
            return Err(flag(extra, "mlserver start takes exactly one FOLDER"));
        }
        [cmd, ..] => {
            return Err(flag(
                cmd,
                "only `mlserver start FOLDER` serves; other commands (build, dockerfile, init, \
                 infer) are not run under this kind",
            ));
        }
    };
    let path = cwd.join(folder);
    if !path.is_dir() {
        return Err(Error::Missing {
            what: "mlserver start FOLDER (the model repository)".into(),
            path,
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    std::fs::canonicalize(&path).map_err(|source| Error::Missing {
        what: "mlserver start FOLDER".into(),
        path,
        source,
    })
}

pub struct MlServer;

impl Kind for MlServer {
    fn prepare(&self, req: &Request<'_>) -> Result<Prepared> {
        let policy = req
            .loaded
            .profile
            .mlserver
            .as_ref()
            .map(|s| s.get_ref().clone())
            .unwrap_or_default();
        let repo = folder_of(req.args, req.cwd)?;
        let inputs = Inputs {
            settings: config::read_settings(&repo).map_err(refusal)?,
            env: req.env.vars.clone(),
            dotenv: config::read_dotenv(req.cwd).map_err(refusal)?,
        };
        let models = config::model_settings_files(&repo)
            .map_err(refusal)?
            .into_iter()
            .map(|p| config::read_model(&p).map(|o| (p, o)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(refusal)?;
        let eff = check(&policy, &inputs, &models).map_err(refusal)?;

        let mut out = Prepared::default();
        let repo_s = repo.to_string_lossy().into_owned();
        out.args = vec!["start".into(), repo.clone().into_os_string()];
        out.display_args = vec!["start".into(), repo_s];
        out.repositories.push(repo.clone());
        out.extra.rules.push((
            repo.clone(),
            Access3::ReadOnly,
            "mlserver model repository".into(),
        ));
        out.extra.bind_tcp.extend([eff.http_port, eff.grpc_port]);
        out.extra.bind_tcp.extend(eff.metrics_port);
        out.extra.connect_tcp.extend(&eff.connect_ports);
        egress_needs_connect(req, &eff)?;
        if let Some(d) = &inputs.dotenv {
            out.notes.push(format!(
                "mlserver reads {} (MLSERVER_* keys there apply where neither settings.json nor \
                 the environment sets them)",
                d.path.display()
            ));
        }
        out.notes.extend(eff.notes.iter().cloned());
        out.notes.push(format!(
            "mlserver model-repository API: POST /v2/repository/index and \
             /v2/repository/models/{{name}}/load|unload on the HTTP port {http} (and \
             ModelRepositoryService and GRPCInferenceService's Repository* methods on gRPC {grpc}) \
             have NO authentication and no switch: any \
             process that reaches {host}:{http} can unload every model or reload one; the \
             repository is read-only to the server (Landlock), so a load brings back only what is \
             already there; block them at the gateway \
             (packaging/kubernetes/mlserver-istio-authz.yaml)",
            http = eff.http_port,
            grpc = eff.grpc_port,
            host = eff.host
        ));
        match req.supervise.ready.as_ref() {
            Some(ready) if ready.from_server_flags => {
                let ip = match eff.host.as_str() {
                    "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    h => h.parse::<IpAddr>().map_err(|_| {
                        req.loaded.err(
                            ready.http_get.span(),
                            format!(
                                "supervise.ready.from_server_flags needs an IP address as \
                                 MLServer's host, not '{h}'"
                            ),
                        )
                    })?,
                };
                out.ready = Some(crate::servers::ready_from(
                    req.loaded,
                    ready,
                    SocketAddr::new(ip, eff.http_port),
                )?);
            }
            Some(_) => {}
            None => out.warnings.push(
                "mlserver without supervise.ready: when a listener cannot bind, MLServer keeps \
                 running unready and ignores SIGTERM; only a readiness timeout ends that"
                    .into(),
            ),
        }
        Ok(out)
    }
}
