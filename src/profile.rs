//! The TOML profile: schema, built-ins, and `file:line:col` errors.
//!
//! Every struct denies unknown fields, so a typo is an error instead of a silently ignored
//! protection. Values that are checked after parsing (users, paths, syscall names) are kept as
//! `Spanned` so the semantic error can still point at the line.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::error::{Error, Location, Result};

/// The profile version this stockade reads.
pub const VERSION: u32 = 1;

/// Built-in profiles, embedded from `profiles/`.
pub const BUILTIN: &[(&str, &str)] = &[
    ("minimal", include_str!("../profiles/minimal.toml")),
    ("triton", include_str!("../profiles/triton.toml")),
    (
        "triton-explicit",
        include_str!("../profiles/triton-explicit.toml"),
    ),
    (
        "triton-modelmesh",
        include_str!("../profiles/triton-modelmesh.toml"),
    ),
    ("mlserver", include_str!("../profiles/mlserver.toml")),
    ("bentoml", include_str!("../profiles/bentoml.toml")),
];

pub fn builtin_names() -> Vec<String> {
    BUILTIN.iter().map(|(n, _)| (*n).to_string()).collect()
}

pub fn builtin(name: &str) -> Option<&'static str> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub version: Spanned<u32>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub server: ServerSection,
    pub identity: IdentitySection,
    #[serde(default)]
    pub capabilities: CapabilitiesSection,
    pub landlock: LandlockSection,
    pub seccomp: SeccompSection,
    #[serde(default)]
    pub rlimits: RlimitsSection,
    #[serde(default)]
    pub env: EnvSection,
    #[serde(default)]
    pub supervise: SuperviseSection,
    #[serde(default)]
    pub mounts: MountsSection,
    /// Triton's argv policy; required when `server.kind = "triton"`.
    pub triton: Option<Spanned<crate::servers::triton::Policy>>,
    /// MLServer's configuration policy (`server.kind = "mlserver"`); defaults when absent.
    pub mlserver: Option<Spanned<crate::servers::mlserver::Policy>>,
    /// BentoML's argv policy (`server.kind = "bentoml"`); defaults when absent.
    pub bentoml: Option<Spanned<crate::servers::bentoml::Policy>>,
}

/// A private mount namespace for the server (needs CAP_SYS_ADMIN; see `when_unprivileged`).
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MountsSection {
    /// A fresh tmpfs per server instance (nosuid, nodev, noexec): what the server leaves there
    /// vanishes with it, and no other process sees it.
    #[serde(default)]
    pub tmpfs: Vec<TmpfsMount>,
    /// Bind-remounted read-only, noexec, nosuid, nodev for the server.
    #[serde(default)]
    pub read_only_noexec: Vec<Spanned<String>>,
    /// Also every model repository named by the server's flags (Triton): `noexec` stops
    /// `dlopen` of a library shipped inside a model, which Landlock alone cannot.
    #[serde(default)]
    pub model_repositories_noexec: bool,
    /// Build the server a fresh root (tmpfs, read-only, pivot_root) that holds only the
    /// Landlock paths, bound at the same place (read_only: ro,noexec; read_exec: ro; read_write:
    /// rw,noexec; connect_unix: the sockets), plus the tmpfs above and /proc. No /run, no host
    /// /tmp, no socket that is not listed; every read-only path is read-only at the mount.
    #[serde(default)]
    pub fresh_root: bool,
    /// Re-mount every Landlock read_write path noexec (recursively) for the server, so a file it
    /// writes cannot be mapped executable (`ld.so FILE`). On by default; applies whenever the
    /// mounts do (root start).
    #[serde(default = "yes")]
    pub writable_noexec: bool,
    /// When stockade cannot create a mount namespace (no effective CAP_SYS_ADMIN, or the
    /// runtime's seccomp filter or LSM refuses unshare/mount): `warn` and run without these
    /// mounts, or `refuse` to start (exit 77, naming the capability and the runtime flag).
    #[serde(default)]
    pub when_unprivileged: WhenUnprivileged,
}

fn yes() -> bool {
    true
}

impl Default for MountsSection {
    fn default() -> Self {
        MountsSection {
            tmpfs: Vec::new(),
            read_only_noexec: Vec::new(),
            model_repositories_noexec: false,
            fresh_root: false,
            writable_noexec: true,
            when_unprivileged: WhenUnprivileged::Warn,
        }
    }
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TmpfsMount {
    pub path: Spanned<String>,
    pub size_mb: u64,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenUnprivileged {
    #[default]
    Warn,
    Refuse,
}

/// `server.kind`: defined by the registry of server kinds (`src/servers/mod.rs`).
pub use crate::servers::ServerKind;

#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    #[serde(default)]
    pub kind: ServerKind,
    /// Working directory of the server; `/` by default.
    pub cwd: Option<Spanned<String>>,
}

/// A user or group given by name or by number.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum NameOrId {
    Id(u32),
    Name(String),
}

impl std::fmt::Display for NameOrId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameOrId::Id(n) => write!(f, "{n}"),
            NameOrId::Name(s) => f.write_str(s),
        }
    }
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySection {
    pub user: Spanned<NameOrId>,
    /// Defaults to the user's primary group.
    pub group: Option<Spanned<NameOrId>>,
    /// Supplementary groups; none by default.
    #[serde(default)]
    pub groups: Vec<Spanned<NameOrId>>,
}

#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilitiesSection {
    /// Capabilities the server keeps (ambient); none by default.
    #[serde(default)]
    pub keep: Vec<Spanned<String>>,
}

/// A path, or `{ path = "...", optional = true }` for one that may be absent on some hosts.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum PathValue {
    Plain(String),
    Detailed(DetailedPath),
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DetailedPath {
    pub path: String,
    /// Skip the rule when the path does not exist (e.g. `/lib64` on some distributions).
    #[serde(default)]
    pub optional: bool,
}

/// Spanned on the outside: serde's untagged enums buffer their input and lose the span.
pub type PathEntry = Spanned<PathValue>;

impl PathValue {
    pub fn path(&self) -> &str {
        match self {
            PathValue::Plain(p) => p,
            PathValue::Detailed(d) => &d.path,
        }
    }
    pub fn optional(&self) -> bool {
        matches!(self, PathValue::Detailed(d) if d.optional)
    }
}

#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LandlockSection {
    /// Read files and list directories.
    #[serde(default)]
    pub read_only: Vec<PathEntry>,
    /// Read and execute.
    #[serde(default)]
    pub read_exec: Vec<PathEntry>,
    /// Read, write, create, remove, truncate (no execute).
    #[serde(default)]
    pub read_write: Vec<PathEntry>,
    /// Read, list, create and remove directories; no regular file may be created or written
    /// below (Triton's /tmp under `triton-modelmesh`: its python backend needs
    /// `/tmp/python_env_XXXXXX`, a load's `file:` override needs files in `/tmp/folderXXXXXX`).
    #[serde(default)]
    pub make_dirs: Vec<PathEntry>,
    /// TCP ports the server may bind.
    #[serde(default)]
    pub bind_tcp: Vec<Spanned<u16>>,
    /// TCP ports the server may connect to.
    #[serde(default)]
    pub connect_tcp: Vec<Spanned<u16>>,
    /// Pathname UNIX sockets (or directories of them) the server may connect to. Enforced by
    /// Landlock from ABI 9 (feature `resolve_unix`); with a fresh root they are also the only
    /// sockets in the server's view.
    #[serde(default)]
    pub connect_unix: Vec<PathEntry>,
    /// UDP ports the server may bind (Landlock ABI 10, feature `udp`; port 0 for autobind).
    #[serde(default)]
    pub bind_udp: Vec<Spanned<u16>>,
    /// UDP ports the server may connect or send to (Landlock ABI 10, feature `udp`).
    #[serde(default)]
    pub connect_udp: Vec<Spanned<u16>>,
    /// IPC scopes: `signal`, `abstract_unix_socket`. Both by default.
    pub scopes: Option<Vec<Spanned<String>>>,
    /// Features up to ABI 6 that may be missing on an older kernel (reported, never silent).
    /// Every ABI 1-6 feature not listed is required: stockade refuses to start without it.
    #[serde(default)]
    pub best_effort: Vec<Spanned<String>>,
    /// Features from ABI 7 on (`audit_log`, `resolve_unix`, `udp`) that are required. Unlisted,
    /// they are best effort: used where the kernel has them, reported where it does not.
    #[serde(default)]
    pub require: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeccompSection {
    /// Action for syscalls not allowed: `errno:ENOSYS`, `errno:EPERM`, `kill_process`, `log`.
    pub default_action: Spanned<String>,
    /// Syscall names and `@group` names.
    pub allow: Vec<Spanned<String>>,
    /// Syscalls (or `@groups`) that kill the process, on top of stockade's fixed set.
    #[serde(default)]
    pub kill: Vec<Spanned<String>>,
    /// Syscalls allowed only when an argument matches.
    #[serde(default)]
    pub allow_if: Vec<ArgRule>,
    /// Ordered argument rules with their own action (first match wins), checked after
    /// stockade's fixed rules and before `allow_if`.
    #[serde(default)]
    pub rules: Vec<SeccompRule>,
    /// Let the server create UDP sockets (AF_INET/AF_INET6 SOCK_DGRAM); refused by default.
    #[serde(default)]
    pub allow_udp: bool,
    /// Let the server open NETLINK_ROUTE sockets (getifaddrs; libzmq needs it); refused by
    /// default.
    #[serde(default)]
    pub allow_netlink_route: bool,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeccompRule {
    pub syscall: Spanned<String>,
    /// Every condition must hold (AND); none means always.
    #[serde(default)]
    pub when: Vec<ArgCondition>,
    /// `allow`, `errno:NAME`, `kill_process` or `default` (the profile's default action).
    pub action: Spanned<String>,
}

/// `(arg & mask) == value` for one of `eq`/`any_of`, or `bits_clear`/`bits_set`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ArgCondition {
    pub arg: Spanned<u8>,
    /// 32 (an `int` argument: only the low half is compared, as the kernel reads it) or 64.
    /// Required: a 64-bit compare of an `int` lets a deny be bypassed through the high bits.
    pub width: Spanned<u8>,
    #[serde(default)]
    pub mask: Option<u64>,
    #[serde(default)]
    pub eq: Option<u64>,
    #[serde(default)]
    pub any_of: Option<Vec<u64>>,
    #[serde(default)]
    pub bits_clear: Option<u64>,
    #[serde(default)]
    pub bits_set: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ArgRule {
    pub syscall: Spanned<String>,
    /// Argument index, 0..=5.
    pub arg: Spanned<u8>,
    /// Allowed only if the argument equals one of these.
    #[serde(default)]
    pub any_of: Option<Vec<u64>>,
    /// Allowed only if none of these bits are set in the argument.
    #[serde(default)]
    pub bits_clear: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Limit {
    Value(u64),
    Word(LimitWord),
}

#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LimitWord {
    Unlimited,
}

/// Resource limits applied to the server (soft = hard).
#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RlimitsSection {
    #[serde(rename = "as")]
    pub address_space: Option<Limit>,
    pub core: Option<Limit>,
    pub cpu: Option<Limit>,
    pub data: Option<Limit>,
    pub fsize: Option<Limit>,
    pub memlock: Option<Limit>,
    pub nofile: Option<Limit>,
    pub nproc: Option<Limit>,
    pub stack: Option<Limit>,
}

#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvSection {
    /// Variables copied from stockade's environment when present.
    #[serde(default)]
    pub pass: Vec<Spanned<String>>,
    /// Variables set to fixed values.
    #[serde(default)]
    pub set: BTreeMap<Spanned<String>, String>,
    /// Prefixes that never reach the server (a `pass`/`set` naming one is an error).
    #[serde(default)]
    pub deny_prefixes: Vec<String>,
    /// Let `pass`/`set` name loader variables (`LD_*`). Off by default.
    #[serde(default)]
    pub allow_loader_variables: bool,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SignalTarget {
    /// The server process only.
    Server,
    /// The server's whole process group.
    #[default]
    Group,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    #[default]
    Never,
    OnFailure,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RestartSection {
    #[serde(default)]
    pub mode: RestartMode,
    #[serde(default = "default_max_restarts")]
    pub max_restarts: u32,
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
}

impl Default for RestartSection {
    fn default() -> Self {
        RestartSection {
            mode: RestartMode::Never,
            max_restarts: default_max_restarts(),
            backoff_initial_ms: default_backoff_initial_ms(),
            backoff_max_ms: default_backoff_max_ms(),
        }
    }
}

fn default_max_restarts() -> u32 {
    3
}
fn default_backoff_initial_ms() -> u64 {
    500
}
fn default_backoff_max_ms() -> u64 {
    30_000
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReadySection {
    /// An `http://127.0.0.1:PORT/PATH` URL that answers 2xx once the server is ready; loopback
    /// only (checked when the profile is parsed).
    pub http_get: Spanned<crate::supervise::ready::HttpGet>,
    /// Take the address and port from the server's final flags (Triton: `--http-address`,
    /// `--http-port`), keeping the URL's path: the operator may move the port.
    #[serde(default)]
    pub from_server_flags: bool,
    #[serde(default = "default_ready_timeout")]
    pub timeout_secs: u64,
    #[serde(default = "default_ready_interval")]
    pub interval_ms: u64,
}

fn default_ready_timeout() -> u64 {
    300
}
fn default_ready_interval() -> u64 {
    500
}

/// Whether the supervisor runs as PID 1 of its own PID namespace (see docs/SUPERVISION.md).
#[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PidNamespace {
    /// When stockade can create one (effective CAP_SYS_ADMIN, not refused by the runtime's
    /// seccomp filter or LSM) and is not already PID 1.
    #[default]
    Auto,
    /// Always; refuse to start if the namespace cannot be created.
    Always,
    /// Never: the no-orphan guarantee is then PDEATHSIG and the process group only.
    Never,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SuperviseSection {
    #[serde(default)]
    pub signal_target: SignalTarget,
    /// After the first stop signal, how long the server may drain before SIGKILL.
    #[serde(default = "default_grace")]
    pub stop_grace_secs: u64,
    /// Wait this long before forwarding the first stop signal (load balancer deregistration).
    #[serde(default)]
    pub pre_stop_delay_secs: u64,
    /// After the server exits, how long leftovers get between TERM and KILL.
    #[serde(default = "default_leftover")]
    pub leftover_grace_ms: u64,
    /// File descriptors (besides 0, 1, 2) that reach the server.
    #[serde(default)]
    pub pass_fds: Vec<i32>,
    #[serde(default)]
    pub restart: RestartSection,
    pub ready: Option<ReadySection>,
    /// Hold a stop signal that arrives before the readiness probe passed, and forward it once
    /// the server is ready (or SIGKILL at the grace deadline). For servers such as Triton that
    /// install their signal handlers only after start-up.
    #[serde(default)]
    pub defer_stop_until_ready: bool,
    #[serde(default)]
    pub pid_namespace: PidNamespace,
}

impl Default for SuperviseSection {
    fn default() -> Self {
        SuperviseSection {
            signal_target: SignalTarget::Group,
            stop_grace_secs: default_grace(),
            pre_stop_delay_secs: 0,
            leftover_grace_ms: default_leftover(),
            pass_fds: Vec::new(),
            restart: RestartSection::default(),
            ready: None,
            defer_stop_until_ready: false,
            pid_namespace: PidNamespace::Auto,
        }
    }
}

fn default_grace() -> u64 {
    10
}
fn default_leftover() -> u64 {
    2000
}

/// A parsed profile and where it came from, for error locations.
#[derive(Debug)]
pub struct Loaded {
    pub name: String,
    /// `builtin:NAME` or the file path.
    pub origin: String,
    pub source: String,
    pub profile: Profile,
}

impl Loaded {
    /// The `file:line:col` of a byte span in this profile.
    pub fn at(&self, span: std::ops::Range<usize>) -> Location {
        location(&self.origin, &self.source, span.start)
    }
    pub fn err(&self, span: std::ops::Range<usize>, msg: impl Into<String>) -> Error {
        Error::profile(self.at(span), msg)
    }
}

fn location(origin: &str, source: &str, offset: usize) -> Location {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Location {
        file: origin.to_string(),
        line,
        col,
    }
}

/// Load a built-in profile by name, or a file when `spec` looks like a path.
pub fn load(spec: &str) -> Result<Loaded> {
    let is_path = spec.contains('/') || spec.ends_with(".toml");
    if !is_path {
        return match builtin(spec) {
            Some(src) => parse(spec, &format!("builtin:{spec}"), src),
            None => Err(Error::ProfileNotFound {
                name: spec.to_string(),
                known: builtin_names(),
            }),
        };
    }
    let path = Path::new(spec);
    let src = std::fs::read_to_string(path).map_err(|source| Error::Missing {
        what: "profile".into(),
        path: path.to_path_buf(),
        source,
    })?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| spec.to_string());
    parse(&name, spec, &src)
}

/// Parse and check the parts that need no system access (version, names, enums).
pub fn parse(name: &str, origin: &str, src: &str) -> Result<Loaded> {
    let profile: Profile = toml::from_str(src).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        // toml's message is multi-line with a snippet; keep its first line, we print the location.
        let msg = e.message().lines().next().unwrap_or("invalid TOML").trim();
        Error::profile(location(origin, src, offset), msg.to_string())
    })?;
    let loaded = Loaded {
        name: name.to_string(),
        origin: origin.to_string(),
        source: src.to_string(),
        profile,
    };
    let v = &loaded.profile.version;
    if *v.get_ref() != VERSION {
        return Err(loaded.err(
            v.span(),
            format!(
                "unsupported profile version {} (this stockade reads version {VERSION})",
                v.get_ref()
            ),
        ));
    }
    if loaded.profile.server.kind == ServerKind::Triton && loaded.profile.triton.is_none() {
        return Err(Error::profile(
            location(origin, src, 0),
            "server.kind = \"triton\" needs a [triton] section",
        ));
    }
    if let Some(m) = &loaded.profile.mlserver
        && loaded.profile.server.kind != ServerKind::Mlserver
    {
        return Err(loaded.err(
            m.span(),
            "[mlserver] applies only with server.kind = \"mlserver\"",
        ));
    }
    if let Some(b) = &loaded.profile.bentoml
        && loaded.profile.server.kind != ServerKind::Bentoml
    {
        return Err(loaded.err(
            b.span(),
            "[bentoml] applies only with server.kind = \"bentoml\"",
        ));
    }
    Ok(loaded)
}

/// Canonical TOML for a parsed profile (`toml` renders every value; spans are dropped). Parsing
/// the render gives a profile that renders the same: fuzz/ checks it on arbitrary input.
pub fn render(profile: &Profile) -> std::result::Result<String, String> {
    toml::to_string(profile).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_parses() {
        for (name, src) in BUILTIN {
            parse(name, &format!("builtin:{name}"), src).unwrap();
        }
    }

    #[test]
    fn triton_variants_share_their_confinement() {
        // Everything above [triton] but the header comments and description is the same.
        let body = |name: &str| -> String {
            let src = builtin(name).unwrap();
            let head = src.split("# --- triton argv policy").next().unwrap();
            head.lines()
                .filter(|l| !l.starts_with('#') && !l.starts_with("description"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(body("triton"), body("triton-explicit"));
        // triton-modelmesh: /tmp moves from read_write to make_dirs, nothing else.
        let mm = body("triton-modelmesh").replace(
            "read_write = [\"/dev/shm\", \"/dev/null\"]\nmake_dirs = [\"/tmp\"]",
            "read_write = [\"/tmp\", \"/dev/shm\", \"/dev/null\"]",
        );
        assert_eq!(body("triton"), mm);
    }

    #[test]
    fn every_builtin_renders_to_a_fixed_point() {
        for (name, src) in BUILTIN {
            let first = render(&parse(name, "a", src).unwrap().profile).unwrap();
            let again = render(&parse(name, "b", &first).unwrap().profile).unwrap();
            assert_eq!(first, again, "{name}");
        }
    }

    #[test]
    fn refusals_escape_control_characters() {
        // fuzz/ target profile: a refused value was quoted raw, control characters included.
        let src = "version = 1\n[supervise.ready]\nhttp_get = \"ht\\tp://127.0.0.1/\\u001b[2J\"\n";
        let err = parse("t", "t.toml", src).unwrap_err().to_string();
        assert!(!err.chars().any(char::is_control), "{err:?}");
        assert!(
            err.starts_with("t.toml:3:12: 'ht\\tp://127.0.0.1/\\u{1b}[2J'"),
            "{err}"
        );
    }

    #[test]
    fn location_counts_lines_and_columns_from_one() {
        let l = location("f", "ab\ncd\nef", 4);
        assert_eq!((l.line, l.col), (2, 2));
        let l = location("f", "x", 0);
        assert_eq!((l.line, l.col), (1, 1));
    }

    #[test]
    fn unknown_key_is_reported_with_its_position() {
        let src = "version = 1\n[identity]\nuser = \"nobody\"\nusr = 1\n";
        let err = parse("t", "t.toml", src).unwrap_err().to_string();
        assert!(err.starts_with("t.toml:4:1: unknown field `usr`"), "{err}");
    }
}
