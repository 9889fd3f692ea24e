//! Serde schema of the `[triton]` profile section and its load-time checks.
//!
//! The grammar (which flags exist, how values parse and repeat) lives in code;
//! what is pinned, defaulted, validated or denied lives in the profile, every
//! entry with a `reason` that is quoted back when a launch is refused.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::RewriteError;
use super::grammar::{self, CATEGORIES, Kind, Rep};

/// The `[triton]` section of a profile.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Always emitted; an operator value that differs is refused.
    #[serde(default)]
    pub pinned: BTreeMap<String, Entry>,
    /// Emitted when the operator gave none; operator values pass `validate`.
    #[serde(default)]
    pub defaults: BTreeMap<String, Entry>,
    /// Extra bounds on final values (operator's or defaults).
    #[serde(default)]
    pub validate: BTreeMap<String, Check>,
    /// Refused in any spelling or abbreviation.
    #[serde(default)]
    pub denied: BTreeMap<String, Denied>,
    pub listen: Listen,
    pub model_repository: ModelRepository,
    pub code_dirs: CodeDirs,
    pub backend_config: BackendConfig,
    pub cache: Cache,
    #[serde(default)]
    pub log_file: Option<LogFile>,
    /// Restricted API groups merged into `--http-restricted-api` / `--grpc-restricted-protocol`.
    #[serde(default)]
    pub restricted: Vec<RestrictedGroup>,
    /// The model-repository API answers without a header on gRPC, on a loopback listener only
    /// (ModelMesh's adapter sends no metadata).
    #[serde(default)]
    pub open_model_repository: Option<OpenModelRepository>,
}

/// `[triton.open_model_repository]`: leave the `model-repository` category (load, unload,
/// index) unrestricted on gRPC. Accepted only with every other admin category, and
/// `model-repository` on HTTP, in a restricted group; at run time only with `--grpc-address` on
/// loopback.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpenModelRepository {
    /// Must be `"grpc"`: the one protocol ModelMesh's adapter uses.
    pub protocol: Protocol,
    pub reason: String,
}

/// Admin categories that stay behind a restricted group even when the model-repository API is
/// open on gRPC: runtime log/trace settings, shared-memory registration (maps any named
/// region), per-model configuration and statistics.
pub const ADMIN_CATEGORIES: &[&str] = &[
    "model-config",
    "statistics",
    "trace",
    "logging",
    "shared-memory",
];

/// A flag value in TOML: `true`, `30` or `"none"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum FlagValue {
    Bool(bool),
    Int(i64),
    Str(String),
}

impl FlagValue {
    pub fn raw(&self) -> String {
        match self {
            FlagValue::Bool(b) => b.to_string(),
            FlagValue::Int(i) => i.to_string(),
            FlagValue::Str(s) => s.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// For no-argument flags `true` means "present".
    pub value: FlagValue,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// Numeric lower bound (integer-valued flags).
    #[serde(default)]
    pub min: Option<u64>,
    /// Numeric upper bound (integer-valued flags).
    #[serde(default)]
    pub max: Option<u64>,
    /// Exact canonical values allowed.
    #[serde(default)]
    pub one_of: Option<Vec<String>>,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Denied {
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Literal IPs accepted for `--{http,grpc,metrics}-address`.
    pub allowed_addresses: Vec<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRepository {
    /// If non-empty, every repository must resolve inside one of these.
    #[serde(default)]
    pub roots: Vec<PathBuf>,
    pub reason: String,
}

/// Directories tritonserver loads shared libraries from (deploy.md: adding
/// untrusted files there is code execution). The profile's paths are emitted
/// unless the operator names one that resolves inside `allowed_roots`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CodeDirs {
    pub backend_directory: PathBuf,
    pub repoagent_directory: PathBuf,
    pub cache_directory: PathBuf,
    #[serde(default)]
    pub allowed_roots: Vec<PathBuf>,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// `"<backend>,<key>"` or `"<key>"` (backend-agnostic), as on the command line.
    pub allowed: Vec<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cache {
    /// Upper bound for `--cache-config=local,size=<n>`; 0 refuses the cache.
    pub max_local_bytes: u64,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    /// `--log-file` must name a file directly inside one of these directories.
    pub allowed_dirs: Vec<PathBuf>,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Grpc,
}

impl Protocol {
    pub fn flag(self) -> &'static str {
        match self {
            Protocol::Http => "http-restricted-api",
            Protocol::Grpc => "grpc-restricted-protocol",
        }
    }
}

/// One restricted group: these categories answer only to requests carrying
/// header `<header>: <secret>` (gRPC metadata `triton-grpc-protocol-<header>`).
/// Exactly one secret source must be set.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RestrictedGroup {
    pub name: String,
    pub categories: Vec<String>,
    pub header: String,
    pub protocols: Vec<Protocol>,
    /// Read the secret from this file (trailing newline stripped).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Read the secret once from this inherited file descriptor.
    #[serde(default)]
    pub secret_fd: Option<u32>,
    /// Generate a fresh secret each launch and write it here (0600, parent 0700).
    #[serde(default)]
    pub generate_secret_file: Option<PathBuf>,
    pub reason: String,
}

/// Flags always present in the final argv, so the profile must pin or default
/// them: the Landlock port list and the supervisor timeout derive from them,
/// and tritonserver's own defaults are unsafe (0.0.0.0, metrics on).
pub const REQUIRED_EXPLICIT: &[&str] = &[
    "model-control-mode",
    "exit-timeout-secs",
    "allow-http",
    "allow-grpc",
    "allow-metrics",
    "allow-sagemaker",
    "allow-vertex-ai",
    "http-address",
    "grpc-address",
    "metrics-address",
    "http-port",
    "grpc-port",
    "metrics-port",
];

/// Flags whose values are handled by dedicated tables, never by pinned/defaults.
pub const STRUCTURAL: &[&str] = &[
    "model-repository",
    "backend-directory",
    "repoagent-directory",
    "cache-directory",
    "backend-config",
    "cache-config",
    "log-file",
    "grpc-server-cert",
    "grpc-server-key",
    "grpc-root-cert",
    "grpc-use-ssl-mutual",
    "strict-model-config",
    "http-restricted-api",
    "grpc-restricted-protocol",
    "load-model",
];

fn err(flag: &str, reason: impl Into<String>) -> RewriteError {
    RewriteError::new(flag, format!("profile [triton]: {}", reason.into()))
}

fn known(section: &str, name: &str) -> Result<&'static grammar::OptSpec, RewriteError> {
    match grammar::by_id(name) {
        Some(s) => Ok(s),
        None => Err(err(
            name,
            format!(
                "[triton.{section}] names no tritonserver 2.51 flag (use full canonical names)"
            ),
        )),
    }
}

/// Header names become HTTP header names and gRPC metadata keys, which must be lowercase.
pub fn valid_header(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 64
        && h.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Policy {
    /// Load-time consistency checks; `rewrite` runs them first.
    pub fn check(&self) -> Result<(), RewriteError> {
        for (section, map) in [("pinned", &self.pinned), ("defaults", &self.defaults)] {
            for (name, entry) in map {
                let spec = known(section, name)?;
                if STRUCTURAL.contains(&spec.id) {
                    return Err(err(
                        name,
                        format!("[triton.{section}] cannot set this flag; it has its own table"),
                    ));
                }
                if !matches!(spec.rep, Rep::Last | Rep::Idempotent | Rep::OrLevels) {
                    return Err(err(
                        name,
                        format!("[triton.{section}] supports only single-valued flags"),
                    ));
                }
                if self.denied.contains_key(name) {
                    return Err(err(name, format!("both {section} and denied")));
                }
                if entry.reason.trim().is_empty() {
                    return Err(err(name, "every entry needs a reason"));
                }
                if spec.kind == Kind::NoArg {
                    if entry.value != FlagValue::Bool(true) {
                        return Err(err(name, "a no-argument flag takes value = true"));
                    }
                } else {
                    grammar::canonical(spec, &entry.value.raw())
                        .map_err(|e| err(name, format!("[triton.{section}] value: {e}")))?;
                }
            }
        }
        for (name, d) in &self.denied {
            known("denied", name)?;
            if d.reason.trim().is_empty() {
                return Err(err(name, "every entry needs a reason"));
            }
        }
        for name in self.pinned.keys() {
            if self.defaults.contains_key(name) {
                return Err(err(name, "both pinned and defaults"));
            }
        }
        for (name, c) in &self.validate {
            let spec = known("validate", name)?;
            let integer = matches!(
                spec.kind,
                Kind::Int | Kind::Int64 | Kind::Port | Kind::IntOrBool
            );
            if (c.min.is_some() || c.max.is_some()) && !integer {
                return Err(err(
                    name,
                    "[triton.validate] min/max apply to integer flags only",
                ));
            }
            if c.reason.trim().is_empty() {
                return Err(err(name, "every entry needs a reason"));
            }
        }
        for name in REQUIRED_EXPLICIT {
            if !self.pinned.contains_key(*name) && !self.defaults.contains_key(*name) {
                return Err(err(
                    name,
                    "must be pinned or defaulted (always emitted explicitly)",
                ));
            }
        }
        // SageMaker and Vertex AI bind 0.0.0.0 and ignore the restricted APIs
        // (research §0.4), so this launcher supports them only switched off.
        for name in ["allow-sagemaker", "allow-vertex-ai"] {
            if self.pinned.get(name).map(|e| &e.value) != Some(&FlagValue::Bool(false)) {
                return Err(err(name, "must be pinned to false"));
            }
        }
        if self.listen.allowed_addresses.is_empty() {
            return Err(err(
                "http-address",
                "[triton.listen] allowed_addresses is empty",
            ));
        }
        for a in &self.listen.allowed_addresses {
            if a.parse::<std::net::IpAddr>().is_err() {
                return Err(err(
                    "http-address",
                    format!("[triton.listen] '{a}' is not a literal IP"),
                ));
            }
        }
        for entry in &self.backend_config.allowed {
            let (_, key) = match entry.split_once(',') {
                Some((b, k)) => (b, k),
                None => ("", entry.as_str()),
            };
            if key.to_ascii_lowercase().replace('_', "-") == "backend-directory" {
                return Err(err(
                    "backend-config",
                    "the key backend-directory can never be allowed: it overrides the pinned --backend-directory (research §0.5)",
                ));
            }
        }
        self.check_restricted()?;
        self.check_open_model_repository()
    }

    /// Is `category` in a restricted group on `proto`?
    pub fn locks(&self, proto: Protocol, category: &str) -> bool {
        self.restricted
            .iter()
            .any(|g| g.protocols.contains(&proto) && g.categories.iter().any(|c| c == category))
    }

    fn check_open_model_repository(&self) -> Result<(), RewriteError> {
        let Some(open) = &self.open_model_repository else {
            return Ok(());
        };
        let flag = Protocol::Grpc.flag();
        if open.protocol != Protocol::Grpc {
            return Err(err(
                Protocol::Http.flag(),
                "[triton.open_model_repository] protocol must be \"grpc\": the HTTP \
                 model-repository API stays behind a restricted group",
            ));
        }
        if open.reason.trim().is_empty() {
            return Err(err(flag, "every entry needs a reason"));
        }
        if self.locks(Protocol::Grpc, "model-repository") {
            return Err(err(
                flag,
                "[triton.open_model_repository] and a restricted group both name \
                 model-repository on grpc",
            ));
        }
        if !self.locks(Protocol::Http, "model-repository") {
            return Err(err(
                Protocol::Http.flag(),
                "[triton.open_model_repository] needs model-repository in a restricted group \
                 on http (only gRPC on loopback may be open)",
            ));
        }
        for c in ADMIN_CATEGORIES {
            for p in [Protocol::Http, Protocol::Grpc] {
                if !self.locks(p, c) {
                    return Err(err(
                        p.flag(),
                        format!(
                            "[triton.open_model_repository] needs '{c}' in a restricted group on \
                             {} (only the model-repository API may be open)",
                            match p {
                                Protocol::Http => "http",
                                Protocol::Grpc => "grpc",
                            }
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_restricted(&self) -> Result<(), RewriteError> {
        let mut seen: Vec<(Protocol, &str)> = Vec::new();
        for g in &self.restricted {
            let flag = g
                .protocols
                .first()
                .map_or("http-restricted-api", |p| p.flag());
            if !valid_header(&g.header) {
                return Err(err(
                    flag,
                    format!("group '{}': header must match [a-z0-9-]{{1,64}}", g.name),
                ));
            }
            if g.protocols.is_empty() || g.categories.is_empty() {
                return Err(err(
                    flag,
                    format!("group '{}': needs protocols and categories", g.name),
                ));
            }
            let sources = usize::from(g.secret_file.is_some())
                + usize::from(g.secret_fd.is_some())
                + usize::from(g.generate_secret_file.is_some());
            if sources != 1 {
                return Err(err(
                    flag,
                    format!(
                        "group '{}': set exactly one of secret_file, secret_fd, generate_secret_file",
                        g.name
                    ),
                ));
            }
            for p in [&g.secret_file, &g.generate_secret_file]
                .into_iter()
                .flatten()
            {
                if !p.is_absolute() {
                    return Err(err(
                        flag,
                        format!("group '{}': secret path must be absolute", g.name),
                    ));
                }
            }
            for c in &g.categories {
                if !CATEGORIES.contains(&c.as_str()) {
                    return Err(err(
                        flag,
                        format!("group '{}': unknown category '{c}'", g.name),
                    ));
                }
                for p in &g.protocols {
                    if seen.contains(&(*p, c.as_str())) {
                        return Err(err(
                            p.flag(),
                            format!(
                                "category '{c}' appears in two groups (tritonserver rejects that)"
                            ),
                        ));
                    }
                    seen.push((*p, c.as_str()));
                }
            }
        }
        Ok(())
    }
}
