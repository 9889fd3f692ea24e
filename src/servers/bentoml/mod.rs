//! BentoML 1.4 (`bentoml serve BENTO [options]`) behind the server-kind seam.
//!
//! An argv policy for click's grammar (`--name value`, `--name=value`, `-p3000`, `--` ends
//! options; click does not abbreviate): loopback `--host` and an explicit `--port` always
//! emitted, `--reload`, `--development`, `--env`, `--context`, `--arg-file` and
//! `--ssl-keyfile-password` refused, the working directory inside the profile's service roots
//! (read-only), workers bounded, TLS files read-only rules, telemetry off, `BENTOML_*` variables
//! outside a short allow-list refused (`BENTOML_CONFIG*` rewrite listeners), `BENTOML_HOME` under
//! the private /tmp unless the profile sets it.
//!
//! BentoML's process manager (a vendored circus) binds its zmq controller and pubsub endpoints
//! on ports picked at random from the ephemeral range (`reserve_free_port()`, no setting), so
//! the bind rules must cover that range: Landlock (ABI <= 6) has no port ranges. The dry run
//! states the residual risk.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::landlock_policy::Access3;
use crate::servers::{Kind, Prepared, Request};

#[cfg(test)]
mod tests;

/// The profile's `[bentoml]` section (all keys optional).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Addresses `--host` may name; the first is emitted when the argv gives none.
    #[serde(default = "default_hosts")]
    pub listen_hosts: Vec<String>,
    /// `--port` when the argv gives none.
    #[serde(default = "default_port")]
    pub default_port: u16,
    /// Upper bound for `--api-workers` / `BENTOML_API_WORKERS`.
    #[serde(default = "default_max_workers")]
    pub max_api_workers: u32,
    /// The working directory (the service code) must lie under one of these.
    #[serde(default)]
    pub service_roots: Vec<String>,
    /// Allow binds on the whole ephemeral port range for circus's zmq endpoints (BentoML does
    /// not start without them).
    #[serde(default)]
    pub circus_ephemeral_binds: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            listen_hosts: default_hosts(),
            default_port: default_port(),
            max_api_workers: default_max_workers(),
            service_roots: Vec::new(),
            circus_ephemeral_binds: false,
        }
    }
}

fn default_hosts() -> Vec<String> {
    vec!["127.0.0.1".into(), "::1".into()]
}
fn default_port() -> u16 {
    3000
}
fn default_max_workers() -> u32 {
    4
}

/// How click reads an option.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Arity {
    Flag,
    Value,
}

/// `bentoml serve`'s options (bentoml_cli/serve.py, utils.py, env_manager.py in 1.4.40).
const OPTIONS: &[(&str, Option<char>, Arity)] = &[
    ("development", None, Arity::Flag),
    ("production", None, Arity::Flag),
    ("reload", None, Arity::Flag),
    ("quiet", Some('q'), Arity::Flag),
    ("verbose", None, Arity::Flag),
    ("debug", None, Arity::Flag),
    ("do-not-track", None, Arity::Flag),
    ("port", Some('p'), Arity::Value),
    ("host", None, Arity::Value),
    ("api-workers", None, Arity::Value),
    ("timeout", None, Arity::Value),
    ("backlog", None, Arity::Value),
    ("working-dir", None, Arity::Value),
    ("ssl-certfile", None, Arity::Value),
    ("ssl-keyfile", None, Arity::Value),
    ("ssl-keyfile-password", None, Arity::Value),
    ("ssl-version", None, Arity::Value),
    ("ssl-cert-reqs", None, Arity::Value),
    ("ssl-ca-certs", None, Arity::Value),
    ("ssl-ciphers", None, Arity::Value),
    ("timeout-keep-alive", None, Arity::Value),
    ("timeout-graceful-shutdown", None, Arity::Value),
    ("arg", None, Arity::Value),
    ("arg-file", None, Arity::Value),
    ("env", None, Arity::Value),
    ("context", None, Arity::Value),
];

const DENIED: &[(&str, &str)] = &[
    (
        "reload",
        "watches files and restarts the service on change (development only)",
    ),
    (
        "development",
        "development mode: one process, reload, debug behaviour",
    ),
    (
        "env",
        "runs the service in a conda environment it creates (downloads, new interpreter)",
    ),
    (
        "context",
        "BentoCloud context: network access to BentoCloud",
    ),
    (
        "arg-file",
        "reads arguments from a file outside the policy; pass them with --arg",
    ),
    (
        "ssl-keyfile-password",
        "a password on the command line is readable in /proc/<pid>/cmdline; use an unencrypted \
         key file readable only by the server",
    ),
];

fn flag_err(flag: &str, reason: impl Into<String>) -> Error {
    Error::ServerFlag {
        flag: flag.into(),
        reason: reason.into(),
    }
}

/// `serve` + (canonical option name, value) pairs + the BENTO target.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub opts: Vec<(String, Option<String>)>,
    pub bento: Option<String>,
}

/// Tokenize like click: `--name=value`, `--name value`, `-p3000`, `-p 3000`, `--` ends options.
pub fn parse(args: &[OsString]) -> Result<Parsed> {
    let args: Vec<&str> = args
        .iter()
        .map(|a| {
            a.to_str()
                .ok_or_else(|| flag_err("bentoml argv", "arguments must be UTF-8"))
        })
        .collect::<Result<_>>()?;
    let mut it = args.iter().copied();
    match it.next() {
        Some("serve") => {}
        Some(cmd) => {
            return Err(flag_err(
                cmd,
                "only `bentoml serve BENTO` serves under this kind (serve-grpc, start-*, build, \
                 containerize and the rest are not run)",
            ));
        }
        None => return Err(flag_err("bentoml", "give `serve BENTO [options]`")),
    }
    let mut out = Parsed::default();
    let mut only_positional = false;
    while let Some(a) = it.next() {
        let (name, inline) = if only_positional || !a.starts_with('-') || a == "-" {
            if out.bento.is_some() {
                return Err(flag_err(a, "bentoml serve takes one BENTO"));
            }
            out.bento = Some(a.to_string());
            continue;
        } else if a == "--" {
            only_positional = true;
            continue;
        } else if let Some(long) = a.strip_prefix("--") {
            match long.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (long.to_string(), None),
            }
        } else {
            let mut c = a[1..].chars();
            let short = c.next().unwrap_or('-');
            let rest: String = c.collect();
            let Some((n, _, _)) = OPTIONS.iter().find(|(_, s, _)| *s == Some(short)) else {
                return Err(flag_err(a, "unknown option of bentoml serve"));
            };
            (n.to_string(), (!rest.is_empty()).then_some(rest))
        };
        let Some((canon, _, arity)) = OPTIONS.iter().find(|(n, _, _)| *n == name) else {
            return Err(flag_err(
                a,
                "unknown option of bentoml serve (click does not abbreviate)",
            ));
        };
        let value = match (arity, inline) {
            (Arity::Flag, None) => None,
            (Arity::Flag, Some(_)) => return Err(flag_err(canon, "takes no value")),
            (Arity::Value, Some(v)) => Some(v),
            (Arity::Value, None) => Some(
                it.next()
                    .ok_or_else(|| flag_err(canon, "needs a value"))?
                    .to_string(),
            ),
        };
        out.opts.push((canon.to_string(), value));
    }
    Ok(out)
}

fn last<'a>(p: &'a Parsed, name: &str) -> Option<&'a str> {
    p.opts
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.as_deref())
}

fn int(flag: &str, v: &str) -> Result<i64> {
    v.trim()
        .parse::<i64>()
        .map_err(|_| flag_err(flag, format!("'{v}' is not an integer")))
}

/// What the checked argv means for the sandbox.
#[derive(Debug)]
pub struct Checked {
    pub args: Vec<String>,
    pub host: String,
    pub port: u16,
    pub working_dir: PathBuf,
    pub read_files: Vec<PathBuf>,
    pub notes: Vec<String>,
}

/// Check the parsed argv against the policy; the final argv is canonical `--name=value`.
pub fn check(policy: &Policy, p: &Parsed, cwd: &Path, env: &[(String, String)]) -> Result<Checked> {
    for (name, _) in &p.opts {
        if let Some((_, why)) = DENIED.iter().find(|(d, _)| d == name) {
            return Err(flag_err(&format!("--{name}"), format!("refused: {why}")));
        }
    }
    // BentoML reads many BENTOML_* variables (1.4.40); only these reach it. BENTOML_CONFIG,
    // BENTOML_CONFIG_OPTIONS and BENTOML_CONFIG_OVERRIDES rewrite listeners, metrics, tracing
    // and runners; BENTOML_DEBUG, *_RUNNER_MAP, BENTOML_SERVE_* are internal or widen exposure.
    const ALLOWED: &[&str] = &[
        "BENTOML_HOME",
        "BENTOML_DO_NOT_TRACK",
        "BENTOML_API_WORKERS",
        "BENTOML_TIMEOUT",
        "BENTOML_NUM_THREAD",
        "BENTOML_VERBOSITY",
        "BENTOML_QUIET",
        "BENTOML_DISABLE_GPU_ALLOCATION",
    ];
    if let Some((var, _)) = env
        .iter()
        .find(|(k, _)| k.starts_with("BENTOML_") && !ALLOWED.contains(&k.as_str()))
    {
        let why = if var.starts_with("BENTOML_CONFIG") {
            "BentoML configuration overrides (listeners, metrics, tracing, runners) are refused: \
             the kind derives host, port and workers from the argv"
        } else {
            "not among the BentoML variables this kind lets through (BENTOML_HOME, \
             BENTOML_API_WORKERS, BENTOML_TIMEOUT, BENTOML_NUM_THREAD, BENTOML_VERBOSITY, \
             BENTOML_QUIET, BENTOML_DISABLE_GPU_ALLOCATION)"
        };
        return Err(Error::ServerConfig {
            source: format!("environment variable {var}"),
            key: var.clone(),
            reason: why.into(),
        });
    }
    let host = last(p, "host")
        .map(str::to_string)
        .or_else(|| policy.listen_hosts.first().cloned())
        .ok_or_else(|| flag_err("--host", "bentoml.listen_hosts is empty"))?;
    let listed = policy.listen_hosts.iter().any(|l| {
        l == &host
            || matches!((l.parse::<IpAddr>(), host.parse::<IpAddr>()), (Ok(a), Ok(b)) if a == b)
    });
    if !listed {
        return Err(flag_err(
            "--host",
            format!(
                "'{host}' is not a listed address (bentoml.listen_hosts = {:?})",
                policy.listen_hosts
            ),
        ));
    }
    let port = match last(p, "port") {
        None => policy.default_port,
        Some(v) => match u16::try_from(int("--port", v)?) {
            Ok(n) if n != 0 => n,
            _ => {
                return Err(flag_err(
                    "--port",
                    format!("{v} is not a TCP port in 1..=65535"),
                ));
            }
        },
    };
    let workers = match last(p, "api-workers") {
        Some(v) => Some(("--api-workers".to_string(), int("--api-workers", v)?)),
        None => env
            .iter()
            .find(|(k, _)| k == "BENTOML_API_WORKERS")
            .map(|(_, v)| int("BENTOML_API_WORKERS", v).map(|n| ("BENTOML_API_WORKERS".into(), n)))
            .transpose()?,
    };
    if let Some((what, n)) = workers
        && !(1..=i64::from(policy.max_api_workers)).contains(&n)
    {
        return Err(flag_err(
            &what,
            format!(
                "{n} workers: allowed 1..={} (bentoml.max_api_workers)",
                policy.max_api_workers
            ),
        ));
    }
    for name in [
        "timeout",
        "backlog",
        "timeout-keep-alive",
        "timeout-graceful-shutdown",
        "ssl-version",
        "ssl-cert-reqs",
    ] {
        if let Some(v) = last(p, name) {
            int(&format!("--{name}"), v)?;
        }
    }
    let bento = p
        .bento
        .clone()
        .ok_or_else(|| flag_err("serve", "needs the BENTO to serve (e.g. service:Svc)"))?;

    // The working directory (the service's code): explicit, a BENTO directory, or the cwd.
    let wd_arg = last(p, "working-dir").map(str::to_string).or_else(|| {
        let b = cwd.join(&bento);
        b.is_dir().then(|| bento.clone())
    });
    let wd_raw = cwd.join(wd_arg.as_deref().unwrap_or("."));
    let wd = std::fs::canonicalize(&wd_raw).map_err(|source| Error::Missing {
        what: "bentoml --working-dir".into(),
        path: wd_raw.clone(),
        source,
    })?;
    let roots: Vec<PathBuf> = policy
        .service_roots
        .iter()
        .filter_map(|r| std::fs::canonicalize(r).ok())
        .collect();
    if !roots.iter().any(|r| wd.starts_with(r)) {
        return Err(flag_err(
            "--working-dir",
            format!(
                "{} is outside bentoml.service_roots {:?}",
                wd.display(),
                policy.service_roots
            ),
        ));
    }

    let mut read_files = Vec::new();
    for name in ["ssl-certfile", "ssl-keyfile", "ssl-ca-certs"] {
        if let Some(v) = last(p, name) {
            let f = cwd.join(v);
            if !f.is_file() {
                return Err(Error::MissingFlagPath(format!(
                    "--{name}: {} does not exist",
                    f.display()
                )));
            }
            read_files.push(f);
        }
    }

    // Canonical argv: serve, every option as --name=value (host, port, working dir explicit).
    let mut args = vec!["serve".to_string()];
    for (name, v) in &p.opts {
        if matches!(name.as_str(), "host" | "port" | "working-dir") {
            continue;
        }
        args.push(match v {
            Some(v) => format!("--{name}={v}"),
            None => format!("--{name}"),
        });
    }
    args.push(format!("--host={host}"));
    args.push(format!("--port={port}"));
    args.push(format!("--working-dir={}", wd.display()));
    args.push("--".into());
    args.push(bento);
    Ok(Checked {
        args,
        host,
        port,
        working_dir: wd,
        read_files,
        notes: Vec::new(),
    })
}

/// The ephemeral port range of this network namespace.
fn ephemeral_range() -> Result<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .map_err(|e| Error::os("/proc/sys/net/ipv4/ip_local_port_range", e))?;
    let mut it = text
        .split_whitespace()
        .filter_map(|s| s.parse::<u16>().ok());
    match (it.next(), it.next()) {
        (Some(a), Some(b)) if a <= b => Ok((a, b)),
        _ => Err(Error::Internal(format!(
            "cannot read ip_local_port_range: {text:?}"
        ))),
    }
}

pub struct BentoMl;

impl Kind for BentoMl {
    fn prepare(&self, req: &Request<'_>) -> Result<Prepared> {
        let policy = req
            .loaded
            .profile
            .bentoml
            .as_ref()
            .map(|s| s.get_ref().clone())
            .unwrap_or_default();
        let parsed = parse(req.args)?;
        let c = check(&policy, &parsed, req.cwd, &req.env.vars)?;
        let mut out = Prepared {
            display_args: c.args.clone(),
            args: c.args.iter().map(OsString::from).collect(),
            ..Prepared::default()
        };
        out.env_set
            .push(("BENTOML_DO_NOT_TRACK".into(), "true".into()));
        if !req.env.vars.iter().any(|(k, _)| k == "BENTOML_HOME") {
            out.env_set
                .push(("BENTOML_HOME".into(), "/tmp/bentoml-home".into()));
        }
        out.repositories.push(c.working_dir.clone());
        out.extra.rules.push((
            c.working_dir.clone(),
            Access3::ReadOnly,
            "bentoml --working-dir".into(),
        ));
        for f in &c.read_files {
            out.extra
                .rules
                .push((f.clone(), Access3::ReadOnly, "bentoml TLS file".into()));
        }
        out.extra.bind_tcp.push(c.port);
        if policy.circus_ephemeral_binds {
            let (lo, hi) = ephemeral_range()?;
            // reserve_free_port() first binds port 0, then zmq binds the port it got.
            out.extra.bind_tcp.push(0);
            out.extra.bind_tcp.extend(lo..=hi);
            out.warnings.push(format!(
                "bentoml: circus (its process manager) binds its zmq controller and pubsub \
                 endpoints on random ports, so every ephemeral port {lo}-{hi} ({} ports) and \
                 port 0 are bindable: a compromised service can listen on any of them, on any \
                 address, and the circus controller answers unauthenticated commands from any \
                 local user (research: list/options measured from another uid)",
                u32::from(hi) - u32::from(lo) + 1
            ));
        } else {
            out.notes.push(
                "bentoml: bentoml.circus_ephemeral_binds is off: circus's zmq endpoints cannot \
                 bind and BentoML 1.4 will not start"
                    .into(),
            );
        }
        out.notes.push(format!(
            "bentoml: listener {}:{}; service code {} (read-only); telemetry off \
             (BENTOML_DO_NOT_TRACK=true); /metrics and /docs.json on the same port have no \
             authentication",
            c.host,
            c.port,
            c.working_dir.display()
        ));
        out.notes.extend(c.notes);
        match req.supervise.ready.as_ref() {
            Some(ready) if ready.from_server_flags => {
                let ip = match c.host.as_str() {
                    "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    h => h.parse::<IpAddr>().map_err(|_| {
                        req.loaded.err(
                            ready.http_get.span(),
                            format!(
                                "supervise.ready.from_server_flags needs an IP address as \
                                 --host, not '{h}'"
                            ),
                        )
                    })?,
                };
                out.ready = Some(crate::servers::ready_from(
                    req.loaded,
                    ready,
                    SocketAddr::new(ip, c.port),
                )?);
            }
            Some(_) => {}
            None => out
                .warnings
                .push("bentoml without supervise.ready: READY=1 is never sent".into()),
        }
        Ok(out)
    }
}
