//! Profile + command line → `Plan`: every fallible, input-dependent step happens here, before
//! anything irreversible, so bad input fails with nothing started.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use caps::Capability;
use nix::sys::resource::Resource;

use crate::env::EnvPlan;
use crate::error::{Error, Result};
use crate::identity::{IdentityPlan, Mode};
use crate::landlock_policy::{Access3, ExtraRules, LandlockPlan};
use crate::profile::{Limit, Loaded, ServerKind, SuperviseSection};
use crate::seccomp_policy::SeccompPlan;

#[derive(Debug, Clone, serde::Serialize)]
pub struct RlimitPlan {
    pub name: &'static str,
    #[serde(skip)]
    pub resource: Resource,
    /// `None` is unlimited.
    pub value: Option<u64>,
}

#[derive(Debug)]
pub struct Plan {
    pub profile: String,
    pub origin: String,
    pub kind: ServerKind,
    pub identity: IdentityPlan,
    pub keep_caps: Vec<Capability>,
    pub landlock: LandlockPlan,
    pub seccomp: SeccompPlan,
    pub rlimits: Vec<RlimitPlan>,
    pub env: EnvPlan,
    pub exe: PathBuf,
    /// argv as exec'd; `display_argv` is the same with secrets redacted.
    pub argv: Vec<OsString>,
    pub display_argv: Vec<String>,
    pub cwd: PathBuf,
    pub supervise: SuperviseSection,
    pub mounts: Option<crate::mounts::MountPlan>,
    /// Supervise from PID 1 of a new PID namespace (decided once, here: the mounts depend on it).
    pub pid_namespace: bool,
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
    /// Pre-built C strings so the child does not convert after fork.
    pub c_exe: CString,
    pub c_argv: Vec<CString>,
    pub c_env: Vec<CString>,
}

fn cstring(bytes: &[u8], what: &str) -> Result<CString> {
    CString::new(bytes).map_err(|_| Error::Usage(format!("{what} contains a NUL byte")))
}

/// Find the server: a path with a slash is taken as is, a bare name is searched in PATH.
fn resolve_exe(name: &OsString, path_var: Option<&str>) -> Result<PathBuf> {
    let n = Path::new(name);
    let candidate = if name.as_bytes().contains(&b'/') {
        Some(n.to_path_buf())
    } else {
        let search = path_var
            .map(str::to_string)
            .or_else(|| std::env::var("PATH").ok())
            .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        search
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(n))
            .find(|p| p.is_file())
    };
    let path = candidate
        .filter(|p| p.exists())
        .ok_or_else(|| Error::ServerNotFound(name.to_string_lossy().into_owned()))?;
    let meta =
        std::fs::metadata(&path).map_err(|_| Error::ServerNotFound(path.display().to_string()))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(Error::ServerNotExecutable(path));
    }
    std::path::absolute(&path).map_err(|e| Error::os("server path", e))
}

fn rlimits(loaded: &Loaded) -> Vec<RlimitPlan> {
    let r = &loaded.profile.rlimits;
    let all: [(&'static str, Resource, Option<Limit>); 9] = [
        ("as", Resource::RLIMIT_AS, r.address_space),
        ("core", Resource::RLIMIT_CORE, r.core),
        ("cpu", Resource::RLIMIT_CPU, r.cpu),
        ("data", Resource::RLIMIT_DATA, r.data),
        ("fsize", Resource::RLIMIT_FSIZE, r.fsize),
        ("memlock", Resource::RLIMIT_MEMLOCK, r.memlock),
        ("nofile", Resource::RLIMIT_NOFILE, r.nofile),
        ("nproc", Resource::RLIMIT_NPROC, r.nproc),
        ("stack", Resource::RLIMIT_STACK, r.stack),
    ];
    all.into_iter()
        .filter_map(|(name, resource, l)| {
            l.map(|l| RlimitPlan {
                name,
                resource,
                value: match l {
                    Limit::Value(v) => Some(v),
                    Limit::Word(_) => None,
                },
            })
        })
        .collect()
}

/// Build the plan. `dry_run` builds no Landlock ruleset and writes nothing.
pub fn build(loaded: &Loaded, command: &[OsString], dry_run: bool) -> Result<Plan> {
    let p = &loaded.profile;
    let Some(argv0) = command.first() else {
        return Err(Error::Usage(
            "no server command: put it after '--', e.g. stockade --profile minimal -- /bin/true"
                .into(),
        ));
    };
    let identity = crate::identity::resolve(loaded, &p.identity)?;
    let keep_caps = crate::capabilities::parse_keep(loaded, &p.capabilities)?;
    if identity.mode == Mode::Rootless && !keep_caps.is_empty() {
        return Err(Error::Privilege(
            "the profile keeps capabilities, which an unprivileged start cannot grant".into(),
        ));
    }
    let env = crate::env::build(loaded, &p.env)?;
    let cwd = match &p.server.cwd {
        Some(c) => {
            let path = PathBuf::from(c.get_ref());
            if !path.is_absolute() {
                return Err(loaded.err(
                    c.span(),
                    format!("server.cwd '{}' must be absolute", c.get_ref()),
                ));
            }
            if !path.is_dir() {
                return Err(Error::Missing {
                    what: format!("server.cwd (at {})", loaded.at(c.span())),
                    path,
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                });
            }
            path
        }
        None => PathBuf::from("/"),
    };

    let mut warnings = Vec::new();
    let mut notes = Vec::new();
    let mut supervise = p.supervise.clone();
    if p.server.kind != ServerKind::Triton
        && let Some(r) = supervise.ready.as_ref().filter(|r| r.from_server_flags)
    {
        return Err(loaded.err(
            r.http_get.span(),
            "supervise.ready.from_server_flags needs a server kind whose flags stockade reads \
             (server.kind = \"triton\")",
        ));
    }
    let mut extra = ExtraRules::default();
    let mut repositories = Vec::new();
    let mut args: Vec<OsString> = command[1..].to_vec();
    let mut display_tail: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if p.server.kind == ServerKind::Triton {
        let policy = p
            .triton
            .as_ref()
            .ok_or_else(|| Error::Internal("triton profile without policy".into()))?;
        let rw = crate::triton::rewrite(policy.get_ref(), &args, dry_run).map_err(|e| {
            if e.missing {
                Error::MissingFlagPath(e.to_string())
            } else {
                Error::ServerFlag {
                    flag: e.flag.clone(),
                    reason: e.reason.clone(),
                }
            }
        })?;
        if u64::from(rw.exit_timeout_secs) >= p.supervise.stop_grace_secs {
            return Err(Error::ServerFlag {
                flag: "--exit-timeout-secs".into(),
                reason: format!(
                    "{}s must be shorter than the profile's supervise.stop_grace_secs ({}s), or \
                     Triton is killed while it drains",
                    rw.exit_timeout_secs, p.supervise.stop_grace_secs
                ),
            });
        }
        repositories.extend(rw.model_repositories.iter().cloned());
        for d in &rw.model_repositories {
            extra
                .rules
                .push((d.clone(), Access3::ReadOnly, "--model-repository".into()));
        }
        for d in &rw.read_exec_dirs {
            extra
                .rules
                .push((d.clone(), Access3::ReadExec, "triton directory flag".into()));
        }
        for f in &rw.read_files {
            extra
                .rules
                .push((f.clone(), Access3::ReadOnly, "triton file flag".into()));
        }
        for f in &rw.write_files {
            if dry_run && !f.exists() {
                notes.push(format!("would create {} for the server", f.display()));
                continue;
            }
            if !dry_run {
                precreate_file(f, &identity)?;
            }
            extra
                .rules
                .push((f.clone(), Access3::ReadWrite, "--log-file".into()));
        }
        if let Some(ready) = supervise.ready.as_mut().filter(|r| r.from_server_flags) {
            let Some(addr) = rw.http_endpoint else {
                return Err(Error::ServerFlag {
                    flag: "--allow-http".into(),
                    reason: "the profile's readiness probe (supervise.ready.from_server_flags) \
                             needs the HTTP endpoint, which the final flags disable"
                        .into(),
                });
            };
            // A wildcard listener is probed on loopback: the probe never leaves this host.
            let addr = match addr.ip() {
                std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
                    std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, addr.port()))
                }
                std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
                    std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
                }
                _ => addr,
            };
            let url = format!("http://{addr}{}", ready.http_get.get_ref().path);
            let probe = crate::ready::HttpGet::parse(&url).map_err(|e| {
                Error::profile(
                    loaded.at(ready.http_get.span()),
                    format!("readiness probe: {e}"),
                )
            })?;
            ready.http_get = toml::Spanned::new(ready.http_get.span(), probe);
        }
        extra.bind_tcp.extend(&rw.bind_ports);
        extra.connect_tcp.extend(&rw.connect_ports);
        notes.extend(rw.notes.iter().cloned());
        display_tail = rw.redacted_args();
        args = rw.args.iter().map(OsString::from).collect();
    }

    let own_pid_ns = crate::pidns::wanted_for(supervise.pid_namespace, identity.mode)?;
    let mut mounts = crate::mounts::plan(
        loaded,
        &p.mounts,
        &repositories,
        identity.mode == Mode::Root,
        own_pid_ns,
        &mut warnings,
    )?;
    // Rules on a path that gets a fresh mount are added in the child, after the mount.
    let tmpfs_targets: Vec<PathBuf> = mounts
        .iter()
        .flat_map(crate::mounts::MountPlan::fresh_targets)
        .collect();
    // In a fresh root every read-only path is read-only at the mount ("/" covers them all).
    let ro_mounts: Vec<PathBuf> = match &mounts {
        Some(m) if m.fresh_root.is_some() => vec![PathBuf::from("/")],
        _ => mounts
            .iter()
            .flat_map(|m| m.read_only_noexec.iter().cloned())
            .collect(),
    };
    let landlock = crate::landlock_policy::prepare(
        loaded,
        &p.landlock,
        &extra,
        &tmpfs_targets,
        &ro_mounts,
        !dry_run,
    )?;
    for f in landlock.missing_best_effort() {
        // A missing feature newer than ABI 6 (best effort unless required) is a note, not a warning.
        let list = if f.abi > crate::landlock_policy::BASELINE_ABI {
            &mut notes
        } else {
            &mut warnings
        };
        list.push(format!(
            "landlock feature '{}' (ABI {}) is not supported by this kernel ({}): running without it (best effort)",
            f.feature.name(),
            f.abi,
            crate::sys::kernel_release()
        ));
    }
    let seccomp = crate::seccomp_policy::compile(loaded, &p.seccomp)?;

    let exe = resolve_exe(argv0, env.get("PATH"))?;
    if let Some(m) = mounts.as_mut() {
        let mut written: Vec<PathBuf> = [&p.landlock.read_only, &p.landlock.read_exec]
            .into_iter()
            .chain([&p.landlock.read_write, &p.landlock.connect_unix])
            .flatten()
            .map(|e| PathBuf::from(e.get_ref().path()))
            .collect();
        written.extend(extra.rules.iter().map(|(p, _, _)| p.clone()));
        m.complete(&landlock.rules, &written, &exe, &cwd)?;
    }
    crate::mounts::server_owned(
        &landlock.rules,
        mounts.as_ref(),
        identity.uid,
        &mut warnings,
    );
    if identity.mode == Mode::Rootless {
        let bounding = crate::capabilities::bounding_now();
        if !bounding.is_empty() && !crate::capabilities::has_setpcap() {
            warnings.push(format!(
                "rootless: the bounding set cannot be cleared without CAP_SETPCAP and keeps {} \
                 capabilities; no_new_privs stops exec from gaining them",
                bounding.len()
            ));
        }
        if identity.uid != identity.profile_uid {
            notes.push(format!(
                "rootless: running as uid {} (the profile names uid {}); ids are kept as started",
                identity.uid, identity.profile_uid
            ));
        }
        if !identity.groups.is_empty() {
            warnings.push(format!(
                "rootless: supplementary groups {:?} cannot be cleared without CAP_SETGID",
                identity.groups
            ));
        }
    }

    let mut argv = vec![argv0.clone()];
    argv.extend(args);
    let mut display_argv = vec![argv0.to_string_lossy().into_owned()];
    display_argv.extend(display_tail);
    let c_exe = cstring(exe.as_os_str().as_bytes(), "server path")?;
    let c_argv = argv
        .iter()
        .map(|a| cstring(a.as_bytes(), "server argument"))
        .collect::<Result<Vec<_>>>()?;
    let c_env = env
        .vars
        .iter()
        .map(|(k, v)| cstring(format!("{k}={v}").as_bytes(), "environment"))
        .collect::<Result<Vec<_>>>()?;

    Ok(Plan {
        profile: loaded.name.clone(),
        origin: loaded.origin.clone(),
        kind: p.server.kind,
        identity,
        keep_caps,
        landlock,
        seccomp,
        rlimits: rlimits(loaded),
        env,
        exe,
        argv,
        display_argv,
        cwd,
        supervise,
        mounts,
        pid_namespace: own_pid_ns,
        warnings,
        notes,
        c_exe,
        c_argv,
        c_env,
    })
}

/// A file the server writes (e.g. Triton's --log-file) must exist for its Landlock rule; create
/// it empty, owned by the server's user, mode 0640, without following a symlink.
fn precreate_file(path: &Path, id: &IdentityPlan) -> Result<()> {
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
