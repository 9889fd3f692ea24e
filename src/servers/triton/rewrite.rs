//! Applies the `[triton]` policy to tokenized argv and emits the final argv.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use super::grammar::{self, Kind, OPTIONS, Rep};
use super::policy::{Entry, Policy, Protocol, valid_header};
use super::secret::{self, Origin};
use super::{REDACTED, RewriteError, Rewritten};

/// Final values per canonical option id, in tritonserver's repetition semantics.
type Values = BTreeMap<&'static str, Vec<String>>;

fn spec(id: &str) -> Result<&'static grammar::OptSpec, RewriteError> {
    grammar::by_id(id).ok_or_else(|| RewriteError::new(id, "unknown flag"))
}

fn entry_value(id: &str, e: &Entry) -> Result<String, RewriteError> {
    let s = spec(id)?;
    if s.kind == Kind::NoArg {
        return Ok(String::new());
    }
    grammar::canonical(s, &e.value.raw()).map_err(|r| RewriteError::new(id, r))
}

fn single<'a>(values: &'a Values, id: &str) -> Option<&'a str> {
    values.get(id).and_then(|v| v.last()).map(String::as_str)
}

fn is_true(values: &Values, id: &str) -> bool {
    single(values, id) == Some("true")
}

/// Rewrites the operator's tritonserver argv (without argv[0]) under `policy`.
pub fn rewrite(
    policy: &Policy,
    args: &[OsString],
    dry_run: bool,
) -> Result<Rewritten, RewriteError> {
    policy.check()?;
    let tokens = grammar::tokenize(args)?;
    let mut notes = Vec::new();
    let mut values = Values::new();
    let mut operator_groups: Vec<(Protocol, grammar::Group)> = Vec::new();
    let mut strict_model_config = None;

    for t in &tokens {
        let id = t.spec.id;
        let given_as = if t.spelled == t.spec.name {
            String::new()
        } else {
            format!(" (given as --{})", t.spelled)
        };
        if let Some(d) = policy.denied.get(id) {
            return Err(RewriteError::new(
                id,
                format!("denied by profile{given_as}: {}", d.reason),
            ));
        }
        let raw = t.value.as_deref().unwrap_or("");
        let value = grammar::canonical(t.spec, raw).map_err(|r| RewriteError::new(id, r))?;
        if let Some(p) = policy.pinned.get(id) {
            let pinned = entry_value(id, p)?;
            if value != pinned {
                return Err(RewriteError::new(
                    id,
                    format!(
                        "pinned to '{pinned}' by profile{given_as}; refusing '{raw}': {}",
                        p.reason
                    ),
                ));
            }
            continue;
        }
        match id {
            "http-restricted-api" | "grpc-restricted-protocol" => {
                let proto = if id == "http-restricted-api" {
                    Protocol::Http
                } else {
                    Protocol::Grpc
                };
                let g = grammar::parse_restricted(&value).map_err(|r| RewriteError::new(id, r))?;
                operator_groups.push((proto, g));
                continue;
            }
            // Deprecated; translated so the final argv has one way to say it.
            "strict-model-config" => {
                strict_model_config = Some(value == "true");
                continue;
            }
            // Any value, even false, turns SSL on in 2.51 (research §1.4).
            "grpc-use-ssl-mutual" if value == "false" => {
                return Err(RewriteError::new(
                    id,
                    "'false' still enables SSL in tritonserver 2.51; omit the flag instead",
                ));
            }
            _ => {}
        }
        let slot = values.entry(id).or_default();
        match t.spec.rep {
            Rep::Last => *slot = vec![value],
            Rep::Set => {
                if !slot.contains(&value) {
                    slot.push(value);
                }
            }
            Rep::List | Rep::OrLevels => slot.push(value),
            Rep::MapFirst => {
                let device = value.split(':').next().unwrap_or_default();
                if !slot.iter().any(|v| v.split(':').next() == Some(device)) {
                    slot.push(value);
                }
            }
            Rep::Idempotent | Rep::UniqueCategory => *slot = vec![value],
        }
    }

    match strict_model_config {
        Some(true) => {
            values.insert("disable-auto-complete-config", vec![String::new()]);
            notes.push(
                "--strict-model-config=true translated to --disable-auto-complete-config".into(),
            );
        }
        Some(false) if !values.contains_key("disable-auto-complete-config") => {
            // Kept: 2.51 has no other spelling of "auto-complete on", and without it the final
            // argv, read again, would get the default --disable-auto-complete-config back.
            values.insert("strict-model-config", vec!["false".into()]);
            notes.push(
                "--strict-model-config=false: kept, and the default --disable-auto-complete-config is left out".into(),
            );
        }
        _ => {}
    }
    for (name, e) in &policy.defaults {
        let s = spec(name)?;
        let skip = s.id == "disable-auto-complete-config" && strict_model_config == Some(false);
        if !values.contains_key(s.id) && !skip {
            let v = entry_value(s.id, e)?;
            notes.push(format!("default {}: {}", emitted(s.id, &v), e.reason));
            values.insert(s.id, vec![v]);
        }
    }
    for (name, e) in &policy.pinned {
        let s = spec(name)?;
        let v = entry_value(s.id, e)?;
        notes.push(format!("pinned {}: {}", emitted(s.id, &v), e.reason));
        values.insert(s.id, vec![v]);
    }

    check_values(policy, &values)?;
    check_open_model_repository(policy, &values, &mut notes)?;
    let endpoints = listeners(policy, &values, &mut notes)?;
    let bind_ports = endpoints.iter().map(|(_, a)| a.port()).collect();
    let http_endpoint = endpoints
        .iter()
        .find(|(name, _)| *name == "http")
        .map(|(_, a)| *a);
    let model_repositories = model_repositories(policy, &mut values)?;
    let read_exec_dirs = code_dirs(policy, &mut values, &mut notes)?;
    check_backend_config(policy, &values)?;
    let (read_files, write_files) = files(policy, &mut values)?;
    check_tls(&values)?;
    check_dynamic_models(policy, &values)?;
    let secret_files_written =
        restricted(policy, operator_groups, &mut values, dry_run, &mut notes)?;

    let exit_timeout_secs = single(&values, "exit-timeout-secs")
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or_else(|| RewriteError::new("exit-timeout-secs", "missing final value"))?;

    let mut args = Vec::new();
    for s in OPTIONS.iter().filter(|s| s.name == s.id) {
        for v in values.get(s.id).into_iter().flatten() {
            args.push(emitted(s.id, v));
        }
    }
    let mut out = Rewritten {
        args,
        model_repositories,
        read_exec_dirs,
        read_files,
        write_files,
        bind_ports,
        http_endpoint,
        connect_ports: Vec::new(),
        exit_timeout_secs,
        secret_files_written,
        notes,
    };
    if dry_run {
        out.args = out.redacted_args();
    }
    Ok(out)
}

fn emitted(id: &str, v: &str) -> String {
    match grammar::by_id(id) {
        Some(s) if s.kind == Kind::NoArg => format!("--{id}"),
        _ => format!("--{id}={v}"),
    }
}

/// Applies `[triton.validate]` and the checks that need a profile decision.
fn check_values(policy: &Policy, values: &Values) -> Result<(), RewriteError> {
    for (name, c) in &policy.validate {
        let s = spec(name)?;
        for v in values.get(s.id).into_iter().flatten() {
            if let Some(one_of) = &c.one_of
                && !one_of.contains(v)
            {
                return Err(RewriteError::new(
                    s.id,
                    format!(
                        "'{v}' is not allowed by profile (one of {}): {}",
                        one_of.join(", "),
                        c.reason
                    ),
                ));
            }
            if c.min.is_some() || c.max.is_some() {
                let n = v.parse::<u64>().map_err(|_| {
                    RewriteError::new(s.id, format!("profile bounds need an integer, got '{v}'"))
                })?;
                if c.min.is_some_and(|m| n < m) || c.max.is_some_and(|m| n > m) {
                    let lo = c.min.map_or(String::new(), |m| m.to_string());
                    let hi = c.max.map_or(String::new(), |m| m.to_string());
                    return Err(RewriteError::new(
                        s.id,
                        format!(
                            "{n} is outside the profile's range {lo}..={hi}: {}",
                            c.reason
                        ),
                    ));
                }
            }
        }
    }
    // Free-form patterns are accepted only from an explicit allow-list.
    for s in OPTIONS.iter().filter(|s| s.kind == Kind::Regex) {
        if values.contains_key(s.id)
            && policy
                .validate
                .get(s.id)
                .and_then(|c| c.one_of.as_ref())
                .is_none()
        {
            return Err(RewriteError::new(
                s.id,
                "allowed only with a [triton.validate] one_of list in the profile",
            ));
        }
    }
    if values.contains_key("load-model") {
        if single(values, "model-control-mode") != Some("explicit") {
            return Err(RewriteError::new(
                "load-model",
                "requires --model-control-mode=explicit (tritonserver refuses it otherwise)",
            ));
        }
        let n = values.get("load-model").map_or(0, Vec::len);
        if n > 1
            && values
                .get("load-model")
                .is_some_and(|v| v.iter().any(|m| m == "*"))
        {
            return Err(RewriteError::new(
                "load-model",
                "'*' must be the only startup model",
            ));
        }
    }
    Ok(())
}

/// Checks addresses and ports; returns the ports of the enabled endpoints.
fn listeners(
    policy: &Policy,
    values: &Values,
    notes: &mut Vec<String>,
) -> Result<Vec<(&'static str, SocketAddr)>, RewriteError> {
    let allowed: Vec<IpAddr> = policy
        .listen
        .allowed_addresses
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    let mut ports: Vec<(&str, SocketAddr)> = Vec::new();
    for (endpoint, allow, addr, port) in [
        ("http", "allow-http", "http-address", "http-port"),
        ("grpc", "allow-grpc", "grpc-address", "grpc-port"),
        (
            "metrics",
            "allow-metrics",
            "metrics-address",
            "metrics-port",
        ),
    ] {
        // All three addresses are emitted even for disabled endpoints:
        // --metrics-address inherits --http-address (research §1.4).
        let a = single(values, addr).unwrap_or_default();
        let ip: IpAddr = a
            .parse()
            .map_err(|_| RewriteError::new(addr, "missing or invalid final address"))?;
        if !allowed.contains(&ip) {
            return Err(RewriteError::new(
                addr,
                format!(
                    "'{a}' is not in the profile's allowed addresses ({}): {}",
                    policy.listen.allowed_addresses.join(", "),
                    policy.listen.reason
                ),
            ));
        }
        let p: u16 = single(values, port)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| RewriteError::new(port, "missing final port"))?;
        if is_true(values, allow) {
            if let Some((other, _)) = ports.iter().find(|(_, q)| q.port() == p) {
                return Err(RewriteError::new(
                    port,
                    format!("port {p} is already used by the {other} endpoint"),
                ));
            }
            ports.push((endpoint, SocketAddr::new(ip, p)));
            notes.push(format!("{endpoint} endpoint on {a}:{p}"));
        } else {
            notes.push(format!("{endpoint} endpoint off"));
        }
    }
    Ok(ports)
}

/// `^/[A-Za-z0-9._/-]+$`: the python backend pastes these paths into `bash -c`.
fn is_safe_path(p: &str) -> bool {
    p.len() > 1
        && p.starts_with('/')
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'))
}

/// Why a path flag's value was refused; `missing` keeps "does not exist" apart (exit 66).
struct PathErr {
    msg: String,
    missing: bool,
}

impl From<String> for PathErr {
    fn from(msg: String) -> Self {
        PathErr {
            msg,
            missing: false,
        }
    }
}

impl PathErr {
    /// `suffix` (the policy's reason) explains a refusal; a missing path needs none.
    fn for_flag(self, flag: &str, suffix: &str) -> RewriteError {
        let msg = if self.missing {
            self.msg
        } else {
            format!("{}{suffix}", self.msg)
        };
        RewriteError {
            missing: self.missing,
            ..RewriteError::new(flag, msg)
        }
    }
}

/// Absolute, safe characters, no `..`, resolves (through symlinks) to a safe path.
fn resolve_path(raw: &str) -> Result<PathBuf, PathErr> {
    if raw.contains("://") {
        return Err(format!("'{raw}': URLs are refused; give a local path").into());
    }
    if !is_safe_path(raw) {
        return Err(
            format!("'{raw}' must be an absolute path matching ^/[A-Za-z0-9._/-]+$").into(),
        );
    }
    if Path::new(raw)
        .components()
        .any(|c| c == Component::ParentDir)
    {
        return Err(format!("'{raw}' must not contain '..'").into());
    }
    let canon = fs::canonicalize(raw).map_err(|e| PathErr {
        msg: format!("'{raw}': {e}"),
        missing: e.kind() == std::io::ErrorKind::NotFound,
    })?;
    if !canon.to_str().is_some_and(is_safe_path) {
        return Err(format!("'{raw}' resolves to an unsafe path {}", canon.display()).into());
    }
    Ok(canon)
}

fn within(path: &Path, roots: &[PathBuf]) -> bool {
    roots
        .iter()
        .filter_map(|r| fs::canonicalize(r).ok())
        .any(|r| path.starts_with(r))
}

fn model_repositories(policy: &Policy, values: &mut Values) -> Result<Vec<PathBuf>, RewriteError> {
    const ID: &str = "model-repository";
    let reason = &policy.model_repository.reason;
    let given = values.remove(ID).unwrap_or_default();
    if given.is_empty() {
        return Err(RewriteError::new(
            ID,
            "at least one local model repository is required",
        ));
    }
    let mut out: Vec<PathBuf> = Vec::new();
    for raw in &given {
        let canon = resolve_path(raw).map_err(|r| r.for_flag(ID, &format!(": {reason}")))?;
        if !canon.is_dir() {
            return Err(RewriteError::new(ID, format!("'{raw}' is not a directory")));
        }
        if !policy.model_repository.roots.is_empty()
            && !within(&canon, &policy.model_repository.roots)
        {
            return Err(RewriteError::new(
                ID,
                format!(
                    "{} is outside the profile's repository roots: {reason}",
                    canon.display()
                ),
            ));
        }
        // Model directory names end up in the stub's `bash -c` string too. A symlink counts as
        // a model directory (Triton follows it), whatever it points to now: its name is
        // checked, and so is the name of its target.
        let entries =
            fs::read_dir(&canon).map_err(|e| RewriteError::new(ID, format!("'{raw}': {e}")))?;
        for entry in entries {
            let entry = entry.map_err(|e| RewriteError::new(ID, format!("'{raw}': {e}")))?;
            let name = entry.file_name();
            let kind = entry
                .file_type()
                .map_err(|e| RewriteError::new(ID, format!("'{raw}': {name:?}: {e}")))?;
            let unsafe_name = |n: &std::ffi::OsStr| !n.to_str().is_some_and(grammar::is_safe_word);
            if (kind.is_dir() || kind.is_symlink()) && unsafe_name(&name) {
                return Err(RewriteError::new(
                    ID,
                    format!(
                        "model {} {:?} in {} must match [A-Za-z0-9._-]+",
                        if kind.is_symlink() {
                            "symlink"
                        } else {
                            "directory"
                        },
                        name,
                        canon.display()
                    ),
                ));
            }
            if kind.is_symlink() {
                let target = fs::canonicalize(entry.path()).ok();
                if let Some(t) = target.as_ref().filter(|t| t.is_dir()) {
                    if t.file_name().is_some_and(unsafe_name) {
                        return Err(RewriteError::new(
                            ID,
                            format!(
                                "model symlink {:?} in {} points to {}, whose name must match \
                                 [A-Za-z0-9._-]+",
                                name,
                                canon.display(),
                                t.display()
                            ),
                        ));
                    }
                }
            }
        }
        if !out.contains(&canon) {
            out.push(canon);
        }
    }
    out.sort();
    let canon_strings = out.iter().map(|p| p.display().to_string()).collect();
    values.insert(ID, canon_strings);
    Ok(out)
}

/// Backend, repoagent and cache directories: the profile's path, or an
/// operator path that resolves inside `allowed_roots`.
fn code_dirs(
    policy: &Policy,
    values: &mut Values,
    notes: &mut Vec<String>,
) -> Result<Vec<PathBuf>, RewriteError> {
    let cd = &policy.code_dirs;
    let cache_on = values.contains_key("cache-config");
    let mut out = Vec::new();
    for (id, default, required) in [
        ("backend-directory", &cd.backend_directory, true),
        ("repoagent-directory", &cd.repoagent_directory, false),
        ("cache-directory", &cd.cache_directory, cache_on),
    ] {
        // Naming the profile's own directory (as written, or as stockade emits it) restates the
        // default: the canonical argv must read back the same even when that directory is absent.
        let emitted = fs::canonicalize(default).unwrap_or_else(|_| default.clone());
        let operator = single(values, id)
            .filter(|raw| Path::new(raw) != default.as_path() && Path::new(raw) != emitted)
            .map(str::to_string);
        let path = match &operator {
            Some(raw) => {
                let canon = resolve_path(raw).map_err(|r| r.for_flag(id, ""))?;
                if !within(&canon, &cd.allowed_roots) {
                    return Err(RewriteError::new(
                        id,
                        format!(
                            "{} is not inside the profile's allowed_roots: {}",
                            canon.display(),
                            cd.reason
                        ),
                    ));
                }
                canon
            }
            None => {
                let s = default.to_str().unwrap_or_default();
                if !is_safe_path(s) {
                    return Err(RewriteError::new(
                        id,
                        "profile [triton.code_dirs] path is unsafe",
                    ));
                }
                fs::canonicalize(default).unwrap_or_else(|_| default.clone())
            }
        };
        match fs::metadata(&path) {
            Ok(m) if m.is_dir() => {
                // deploy.md: adding files there is code execution.
                if m.permissions().mode() & 0o002 != 0 {
                    return Err(RewriteError::new(
                        id,
                        format!("{} is world-writable: {}", path.display(), cd.reason),
                    ));
                }
                out.push(path.clone());
            }
            _ if required || operator.is_some() => {
                return Err(RewriteError::new(
                    id,
                    format!("{} is not an existing directory", path.display()),
                ));
            }
            _ => notes.push(format!(
                "--{id}={} does not exist; nothing can be loaded from it",
                path.display()
            )),
        }
        values.insert(id, vec![path.display().to_string()]);
    }
    Ok(out)
}

/// `--backend-config` keys are allow-listed; `backend-directory` in any form
/// would override the pinned `--backend-directory` (research §0.5).
fn check_backend_config(policy: &Policy, values: &Values) -> Result<(), RewriteError> {
    const ID: &str = "backend-config";
    for v in values.get(ID).into_iter().flatten() {
        let (name, key, _) = grammar::split_name_kv(v).map_err(|r| RewriteError::new(ID, r))?;
        if key.to_ascii_lowercase().replace('_', "-") == "backend-directory" {
            return Err(RewriteError::new(
                ID,
                "key backend-directory would override the pinned --backend-directory",
            ));
        }
        let entry = if name.is_empty() {
            key.clone()
        } else {
            format!("{name},{key}")
        };
        if !policy.backend_config.allowed.contains(&entry) {
            return Err(RewriteError::new(
                ID,
                format!(
                    "'{entry}' is not an allowed backend setting: {}",
                    policy.backend_config.reason
                ),
            ));
        }
    }
    const CACHE: &str = "cache-config";
    for v in values.get(CACHE).into_iter().flatten() {
        let (name, key, value) =
            grammar::split_name_kv(v).map_err(|r| RewriteError::new(CACHE, r))?;
        let size = grammar::parse_uint(&value, policy.cache.max_local_bytes);
        if name != "local" || key != "size" || size.is_err() || policy.cache.max_local_bytes == 0 {
            return Err(RewriteError::new(
                CACHE,
                format!(
                    "only local,size=<n> with n <= {} is allowed: {}",
                    policy.cache.max_local_bytes, policy.cache.reason
                ),
            ));
        }
    }
    Ok(())
}

/// `--log-file` (written) and the gRPC TLS files (read).
fn files(
    policy: &Policy,
    values: &mut Values,
) -> Result<(Vec<PathBuf>, Vec<PathBuf>), RewriteError> {
    let mut read = Vec::new();
    for id in ["grpc-server-cert", "grpc-server-key", "grpc-root-cert"] {
        if let Some(raw) = single(values, id).map(str::to_string) {
            let canon = resolve_path(&raw).map_err(|r| r.for_flag(id, ""))?;
            if !canon.is_file() {
                return Err(RewriteError::new(
                    id,
                    format!("'{raw}' is not a regular file"),
                ));
            }
            values.insert(id, vec![canon.display().to_string()]);
            read.push(canon);
        }
    }
    let mut write = Vec::new();
    const LOG: &str = "log-file";
    if let Some(raw) = single(values, LOG).map(str::to_string) {
        let Some(lf) = &policy.log_file else {
            return Err(RewriteError::new(
                LOG,
                "the profile has no [triton.log_file] table",
            ));
        };
        let path = Path::new(&raw);
        let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
        else {
            return Err(RewriteError::new(LOG, format!("'{raw}' names no file")));
        };
        if !grammar::is_safe_word(name) {
            return Err(RewriteError::new(
                LOG,
                format!("file name '{name}' must match [A-Za-z0-9._-]+"),
            ));
        }
        let dir =
            resolve_path(parent.to_str().unwrap_or_default()).map_err(|r| r.for_flag(LOG, ""))?;
        if !lf
            .allowed_dirs
            .iter()
            .filter_map(|d| fs::canonicalize(d).ok())
            .any(|d| d == dir)
        {
            return Err(RewriteError::new(
                LOG,
                format!(
                    "{} is not one of the profile's log directories: {}",
                    dir.display(),
                    lf.reason
                ),
            ));
        }
        let target = dir.join(name);
        // An existing symlink would redirect the server's O_CREAT|O_APPEND open.
        if let Ok(m) = fs::symlink_metadata(&target)
            && !m.is_file()
        {
            return Err(RewriteError::new(
                LOG,
                format!("{} exists and is not a regular file", target.display()),
            ));
        }
        values.insert(LOG, vec![target.display().to_string()]);
        write.push(target);
    }
    Ok((read, write))
}

fn check_tls(values: &Values) -> Result<(), RewriteError> {
    let mutual = values.contains_key("grpc-use-ssl-mutual");
    if mutual && single(values, "grpc-use-ssl") == Some("false") {
        return Err(RewriteError::new(
            "grpc-use-ssl",
            "'false' contradicts --grpc-use-ssl-mutual=true (which turns SSL on)",
        ));
    }
    if is_true(values, "grpc-use-ssl") || mutual {
        for need in ["grpc-server-cert", "grpc-server-key"] {
            if !values.contains_key(need) {
                return Err(RewriteError::new(need, "required when gRPC SSL is on"));
            }
        }
    }
    if mutual && !values.contains_key("grpc-root-cert") {
        return Err(RewriteError::new(
            "grpc-root-cert",
            "required for mutual TLS",
        ));
    }
    Ok(())
}

/// Dynamic model control (poll/explicit) executes whatever the load API or the
/// repository supplies (research §0.7), so it needs the admin lock and loopback.
fn check_dynamic_models(policy: &Policy, values: &Values) -> Result<(), RewriteError> {
    const ID: &str = "model-control-mode";
    let mode = single(values, ID).unwrap_or("none");
    if mode == "none" {
        return Ok(());
    }
    for (allow, proto) in [
        ("allow-http", Protocol::Http),
        ("allow-grpc", Protocol::Grpc),
    ] {
        // Open on gRPC only with --grpc-address on loopback (check_open_model_repository).
        let open = proto == Protocol::Grpc && policy.open_model_repository.is_some();
        let locked = open || policy.locks(proto, "model-repository");
        if is_true(values, allow) && !locked {
            return Err(RewriteError::new(
                ID,
                format!(
                    "mode {mode} requires a profile restricted group with model-repository on {}",
                    proto.flag()
                ),
            ));
        }
    }
    for addr in ["http-address", "grpc-address", "metrics-address"] {
        let loopback = single(values, addr)
            .and_then(|a| a.parse::<IpAddr>().ok())
            .is_some_and(|ip| ip.is_loopback());
        if !loopback {
            return Err(RewriteError::new(
                ID,
                format!("mode {mode} requires --{addr} on loopback"),
            ));
        }
    }
    Ok(())
}

/// `[triton.open_model_repository]`: the load/unload/index API answers without a header on
/// gRPC, so gRPC must listen on loopback only; checked before the address allow-list so the
/// refusal says why.
fn check_open_model_repository(
    policy: &Policy,
    values: &Values,
    notes: &mut Vec<String>,
) -> Result<(), RewriteError> {
    const ID: &str = "grpc-address";
    let Some(open) = &policy.open_model_repository else {
        return Ok(());
    };
    if !is_true(values, "allow-grpc") {
        notes.push(
            "gRPC is off: the model-repository API the profile opens on gRPC is not served".into(),
        );
        return Ok(());
    }
    let a = single(values, ID).unwrap_or_default();
    if !a.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
        return Err(RewriteError::new(
            ID,
            format!(
                "'{a}' is not a loopback address: the profile leaves the model-repository API \
                 (load, unload, index) open without a header on gRPC \
                 ([triton.open_model_repository]), so gRPC may listen on 127.0.0.1 or ::1 only: {}",
                open.reason
            ),
        ));
    }
    let port = single(values, "grpc-port").unwrap_or_default();
    notes.push(format!(
        "model-repository API (RepositoryIndex, RepositoryModelLoad, RepositoryModelUnload) open \
         WITHOUT a header on gRPC {a}:{port} only: any process that can reach this loopback \
         address (the pod's network namespace) can load and unload models from the read-only \
         repository; on HTTP it stays restricted; {}",
        open.reason
    ));
    Ok(())
}

/// Emits the profile's restricted groups (with their secrets) and the
/// operator's own groups, refusing categories the profile already locks.
fn restricted(
    policy: &Policy,
    operator_groups: Vec<(Protocol, grammar::Group)>,
    values: &mut Values,
    dry_run: bool,
    notes: &mut Vec<String>,
) -> Result<Vec<PathBuf>, RewriteError> {
    let mut written = Vec::new();
    let mut taken: Vec<(Protocol, String, String)> = Vec::new();
    for g in &policy.restricted {
        let (secret, origin) = secret::obtain(g, dry_run)?;
        let value = if dry_run { REDACTED } else { secret.expose() };
        let cats = g.categories.join(",");
        for p in &g.protocols {
            values
                .entry(p.flag())
                .or_default()
                .push(format!("{cats}:{}={value}", g.header));
            for c in &g.categories {
                taken.push((*p, c.clone(), g.name.clone()));
            }
        }
        let source = match origin {
            Origin::File(p) => format!("read from {}", p.display()),
            Origin::Fd(fd) => format!("read from fd {fd}"),
            Origin::Generated {
                path,
                written: true,
            } => {
                let s = format!("generated and written to {} (0600)", path.display());
                written.push(path);
                s
            }
            Origin::Generated {
                path,
                written: false,
            } => {
                format!(
                    "would be generated and written to {} (0600; dry run: nothing written)",
                    path.display()
                )
            }
        };
        notes.push(format!(
            "restricted group '{}' [{cats}]: HTTP header '{}', gRPC metadata 'triton-grpc-protocol-{}'; secret {source}; {}",
            g.name, g.header, g.header, g.reason
        ));
    }
    if !policy.restricted.is_empty() {
        notes.push(
            "the restricted-API secrets are visible in the server's /proc/<pid>/cmdline".into(),
        );
    }
    for (proto, g) in operator_groups {
        let flag = proto.flag();
        if !valid_header(&g.key) {
            return Err(RewriteError::new(
                flag,
                "header key must match [a-z0-9-]{1,64}",
            ));
        }
        if g.value.len() < 16 || !g.value.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(RewriteError::new(
                flag,
                "secret must be 16+ printable ASCII characters without spaces",
            ));
        }
        for c in &g.categories {
            if let Some((_, _, owner)) = taken.iter().find(|(p, tc, _)| *p == proto && tc == c) {
                let by = if owner.is_empty() {
                    "another operator group".to_string()
                } else {
                    format!("profile group '{owner}'")
                };
                return Err(RewriteError::new(
                    flag,
                    format!(
                        "category '{c}' is already restricted by {by} (tritonserver rejects a category given twice)"
                    ),
                ));
            }
            taken.push((proto, c.clone(), String::new()));
        }
        values.entry(flag).or_default().push(format!(
            "{}:{}={}",
            g.categories.join(","),
            g.key,
            g.value
        ));
        notes.push(format!(
            "operator restricted group [{}] on {flag}",
            g.categories.join(",")
        ));
    }
    Ok(written)
}
