//! Server kinds: one seam between the generic launcher and what stockade knows about a server.
//!
//! A kind turns the profile, the operator's command line, the server's environment and the
//! server's own configuration files into what the rest of the plan needs ([`Prepared`]): the final
//! argv and extra environment, the paths (with their access) and ports Landlock must allow, the
//! repositories a private mount may cover, the readiness endpoint, and notes and warnings for the
//! dry run. Anything it refuses is an error before anything starts.
//!
//! Each kind lives in its own folder under `src/servers/` and implements [`Kind`]. Adding one
//! touches that folder, its built-in profile (`profiles/NAME.toml` + its line in
//! `profile::BUILTIN`), and one line in [`register!`] below (plus, when the kind reads a policy
//! section, that section's field in `profile::Profile`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::env::EnvPlan;
use crate::error::{Error, Result};
use crate::identity::{IdentityPlan, Mode};
use crate::landlock_policy::ExtraRules;
use crate::profile::{Loaded, SuperviseSection};

pub mod bentoml;
pub mod generic;
pub mod mlserver;
pub mod triton;

/// What a kind gets: everything resolved so far, read-only.
pub struct Request<'a> {
    pub loaded: &'a Loaded,
    /// The operator's argv without argv[0].
    pub args: &'a [OsString],
    /// The server's environment as the profile builds it.
    pub env: &'a EnvPlan,
    /// The server's working directory.
    pub cwd: &'a Path,
    pub identity: &'a IdentityPlan,
    pub supervise: &'a SuperviseSection,
    /// Build only what the dry run shows: write nothing.
    pub dry_run: bool,
}

/// What a kind hands back to the plan.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Final argv without argv[0] (may hold secrets: the plan keeps it redacted).
    pub args: Vec<OsString>,
    /// The same with secrets replaced, for logs and the dry run.
    pub display_args: Vec<String>,
    /// Variables the kind sets (or overrides) in the server's environment.
    pub env_set: Vec<(String, String)>,
    /// Paths (with access) and ports Landlock must allow on top of the profile's.
    pub extra: ExtraRules,
    /// Model repositories (read-only; `mounts.model_repositories_noexec` covers them).
    pub repositories: Vec<PathBuf>,
    /// The readiness probe's final URL, when the kind derives it (`from_server_flags`).
    pub ready: Option<crate::supervise::ready::HttpGet>,
    pub notes: Vec<String>,
    pub warnings: Vec<String>,
    /// Who can read a secret on the server's command line.
    pub secret_exposure: Option<String>,
}

impl Prepared {
    /// The argv unchanged: what a kind that does not rewrite flags returns.
    pub fn passthrough(args: &[OsString]) -> Prepared {
        Prepared {
            args: args.to_vec(),
            display_args: args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            ..Prepared::default()
        }
    }
}

/// One server kind.
pub trait Kind: Sync {
    /// Profile + argv + environment + the server's config files → [`Prepared`], or a refusal.
    fn prepare(&self, req: &Request<'_>) -> Result<Prepared>;
}

/// The registry: `Variant = "name" => implementation;`, one line per kind. It defines
/// [`ServerKind`] (the profile's `server.kind`) and [`lookup`]. The first line is the default.
macro_rules! register {
    ($dv:ident = $dn:literal => $di:expr; $($v:ident = $n:literal => $i:expr;)*) => {
        /// `server.kind` in a profile.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
        pub enum ServerKind {
            #[default]
            #[serde(rename = $dn)]
            $dv,
            $(#[serde(rename = $n)] $v,)*
        }

        impl ServerKind {
            pub fn name(self) -> &'static str {
                match self {
                    ServerKind::$dv => $dn,
                    $(ServerKind::$v => $n,)*
                }
            }
        }

        /// The implementation of a kind.
        pub fn lookup(kind: ServerKind) -> &'static dyn Kind {
            match kind {
                ServerKind::$dv => &$di,
                $(ServerKind::$v => &$i,)*
            }
        }
    };
}

register! {
    Generic = "generic" => generic::Generic;
    Triton = "triton" => triton::Triton;
    Mlserver = "mlserver" => mlserver::MlServer;
    Bentoml = "bentoml" => bentoml::BentoMl;
}

/// Run the kind the profile names.
pub fn prepare(req: &Request<'_>) -> Result<Prepared> {
    lookup(req.loaded.profile.server.kind).prepare(req)
}

/// Put a kind's variables into the environment (replacing a same-named one).
pub fn apply_env(env: &mut EnvPlan, set: &[(String, String)]) {
    for (k, v) in set {
        match env.vars.iter_mut().find(|(n, _)| n == k) {
            Some(slot) => slot.1 = v.clone(),
            None => env.vars.push((k.clone(), v.clone())),
        }
    }
}

/// A listener address as the readiness probe reaches it: a wildcard is probed on loopback, so
/// the probe never leaves this host.
pub fn probe_addr(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, addr.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

/// The profile's readiness URL with its address replaced by the server's effective listener
/// (`supervise.ready.from_server_flags`), keeping the profile's path.
pub fn ready_from(
    loaded: &Loaded,
    ready: &crate::profile::ReadySection,
    addr: std::net::SocketAddr,
) -> Result<crate::supervise::ready::HttpGet> {
    let url = format!(
        "http://{}{}",
        probe_addr(addr),
        ready.http_get.get_ref().path
    );
    crate::supervise::ready::HttpGet::parse(&url).map_err(|e| {
        Error::profile(
            loaded.at(ready.http_get.span()),
            format!("readiness probe: {e}"),
        )
    })
}

/// A file the server writes (e.g. Triton's --log-file) must exist for its Landlock rule; create
/// it empty, owned by the server's user, mode 0640, without following a symlink.
pub fn precreate_file(path: &Path, id: &IdentityPlan) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(());
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|source| Error::Missing {
            what: "server output file".into(),
            path: path.to_path_buf(),
            source,
        })?;
    if id.mode == Mode::Root {
        std::os::unix::fs::fchown(&f, Some(id.uid), Some(id.gid))
            .map_err(|e| Error::os(format!("chown {}", path.display()), e))?;
    }
    Ok(())
}
