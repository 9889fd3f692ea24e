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
use crate::landlock_policy::LandlockPlan;
use crate::profile::{Limit, Loaded, PidNamespace, ServerKind, SuperviseSection};
use crate::seccomp_policy::SeccompPlan;

#[derive(Debug, Clone, serde::Serialize)]
pub struct RlimitPlan {
    pub name: &'static str,
    #[serde(skip)]
    pub resource: Resource,
    /// `None` is unlimited.
    pub value: Option<u64>,
}

/// A value that may hold a secret (Triton's restricted-API header is in argv): `Debug` prints
/// `[redacted]`, so a `debug!(?plan)` cannot leak it. Deref gives the value.
pub struct Redacted<T>(pub T);

impl<T> std::fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> std::ops::Deref for Redacted<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
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
    pub argv: Redacted<Vec<OsString>>,
    pub display_argv: Vec<String>,
    pub cwd: PathBuf,
    /// `cwd` is stockade's own (no `server.cwd`): the child falls back to `/` if it cannot
    /// enter it, where a profile's directory is an error.
    pub cwd_inherited: bool,
    pub supervise: SuperviseSection,
    pub mounts: Option<crate::mounts::MountPlan>,
    /// What the profile's [mounts] asked for (before the decision), for the dry run's account of
    /// what stands in for a mount stockade cannot make.
    pub mounts_requested: Option<crate::mounts::MountPlan>,
    /// Supervise from PID 1 of a new PID namespace (decided once, here: the mounts depend on it).
    pub pid_namespace: bool,
    /// What this process can do with namespaces, and where it runs (`ability`).
    pub ability: crate::ability::Ability,
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
    /// Who can read a secret on the server's command line (Triton's restricted-API header).
    pub secret_exposure: Option<String>,
    /// Pre-built C strings so the child does not convert after fork.
    pub c_exe: CString,
    pub c_argv: Redacted<Vec<CString>>,
    pub c_env: Vec<CString>,
    /// Set by `stockade learn`: the server runs traced (and in Record, without Landlock).
    pub learn: Option<LearnMode>,
}

/// How `stockade learn` runs the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LearnMode {
    /// Every syscall stops for the recorder; Landlock is not applied (it has no permissive
    /// mode, and a denial would hide what comes after it).
    Record,
    /// The profile enforced; the tracer sees refused calls and path operations.
    Replay,
}

fn cstring(bytes: &[u8], what: &str) -> Result<CString> {
    CString::new(bytes).map_err(|_| Error::Usage(format!("{what} contains a NUL byte")))
}

/// A regular file with an execute bit, as execvp wants before it stops searching.
fn executable_file(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Find the server: a path with a slash is taken as is, a bare name is searched in PATH like
/// execvp does (a non-executable match is skipped; if nothing executable is found, the first
/// match is reported as not executable).
fn resolve_exe(name: &OsString, path_var: Option<&str>) -> Result<PathBuf> {
    let n = Path::new(name);
    let candidate = if name.as_bytes().contains(&b'/') {
        Some(n.to_path_buf())
    } else {
        let search = path_var
            .map(str::to_string)
            .or_else(|| std::env::var("PATH").ok())
            .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        let found: Vec<PathBuf> = search
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(n))
            .filter(|p| p.is_file())
            .collect();
        found
            .iter()
            .find(|p| executable_file(p))
            .or(found.first())
            .cloned()
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
    check_pass_fds(&p.supervise.pass_fds)?;
    let identity = crate::identity::resolve(loaded, &p.identity)?;
    let keep_caps = crate::capabilities::parse_keep(loaded, &p.capabilities)?;
    if identity.mode == Mode::Rootless && !keep_caps.is_empty() {
        return Err(Error::Privilege(
            "the profile keeps capabilities, which an unprivileged start cannot grant".into(),
        ));
    }
    let mut env = crate::env::build(loaded, &p.env)?;
    let mut cwd = match &p.server.cwd {
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
        // Like tini and every peer: the directory stockade was started in (a Dockerfile's
        // WORKDIR, systemd's WorkingDirectory=). The child enters it by path as the server's
        // user, after the mounts; when it cannot (an operator's 0700 home, a directory outside
        // the server's filesystem view) it starts in `/` instead, with a warning below.
        None => std::env::current_dir().map_err(|e| {
            Error::os(
                "the directory stockade was started in (the server's working directory when the \
                 profile sets no server.cwd)",
                e,
            )
        })?,
    };
    let cwd_inherited = p.server.cwd.is_none();

    let mut warnings = Vec::new();
    let mut notes = Vec::new();
    if cwd_inherited && !traversable(&cwd, &identity) {
        warnings.push(format!(
            "the server (uid {}) cannot enter {}, the directory stockade was started in: it \
             starts in / (set server.cwd to choose another directory)",
            identity.uid,
            cwd.display()
        ));
    }
    let mut supervise = p.supervise.clone();
    // The server kind (src/servers/): final argv and environment, the paths and ports Landlock
    // needs, readiness, notes, refusals.
    let kind = crate::servers::prepare(&crate::servers::Request {
        loaded,
        args: &command[1..],
        env: &env,
        cwd: &cwd,
        identity: &identity,
        supervise: &supervise,
        dry_run,
    })?;
    crate::servers::apply_env(&mut env, &kind.env_set);
    if let (Some(url), Some(ready)) = (kind.ready, supervise.ready.as_mut()) {
        ready.http_get = toml::Spanned::new(ready.http_get.span(), url);
    }
    let extra = kind.extra;
    let repositories = kind.repositories;
    warnings.extend(kind.warnings);
    notes.extend(kind.notes);
    let secret_exposure_line = kind.secret_exposure;
    let args = kind.args;
    let display_tail = kind.display_args;

    // Namespaces from what this process can do (CAP_SYS_ADMIN, the runtime's filters), not uid.
    let request = crate::mounts::request(loaded, &p.mounts, &repositories)?;
    let ability = crate::ability::assess(&crate::ability::Wanted {
        mounts: !request.is_empty(),
        mount_target: request.probe_target(),
        pid_namespace: pid_namespace_requested(supervise.pid_namespace),
    })?;
    let own_pid_ns = own_pid_namespace(supervise.pid_namespace, &ability)?;
    let mounts_requested = (!request.is_empty()).then(|| request.clone());
    let mut mounts = crate::mounts::plan(
        &p.mounts,
        request,
        ability.mounts,
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
            .chain([
                &p.landlock.read_write,
                &p.landlock.make_dirs,
                &p.landlock.connect_unix,
            ])
            .flatten()
            .map(|e| PathBuf::from(e.get_ref().path()))
            .collect();
        written.extend(extra.rules.iter().map(|(p, _, _)| p.clone()));
        m.complete(&landlock.rules, &written, &exe, &cwd, cwd_inherited)?;
        if cwd_inherited && !m.shows(&cwd) {
            warnings.push(format!(
                "{}, the directory stockade was started in, is not in the server's fresh root \
                 (mounts.fresh_root): it starts in / (set server.cwd to a listed directory)",
                cwd.display()
            ));
            cwd = PathBuf::from("/");
        }
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
        argv: Redacted(argv),
        display_argv,
        cwd,
        cwd_inherited,
        supervise,
        mounts,
        mounts_requested,
        pid_namespace: own_pid_ns,
        ability,
        warnings,
        notes,
        secret_exposure: secret_exposure_line,
        c_exe,
        c_argv: Redacted(c_argv),
        c_env,
        learn: None,
    })
}

/// Every `pass_fds` entry must be open now, given by whoever started stockade: an fd stockade
/// opens itself later (its report pipe, its signal pipe) must never reach the server.
fn check_pass_fds(fds: &[i32]) -> Result<()> {
    for &fd in fds {
        if fd < 3 {
            return Err(Error::PassFd {
                fd,
                reason: "fds 0, 1 and 2 always reach the server; list only fds above 2".into(),
            });
        }
        if !crate::sys::fd_is_open(fd) {
            return Err(Error::PassFd {
                fd,
                reason: "not open in stockade at start: the caller must open it (e.g. `3<file` \
                         in a shell, or systemd's socket activation)"
                    .into(),
            });
        }
    }
    Ok(())
}

/// Can the server's ids search every directory on the way to `dir`, by mode bits? (A
/// prediction for the warning; the child's chdir is what decides.)
fn traversable(dir: &Path, id: &IdentityPlan) -> bool {
    use std::os::unix::fs::MetadataExt;
    dir.ancestors().all(|d| {
        std::fs::metadata(d).is_ok_and(|m| {
            let mode = m.mode();
            if m.uid() == id.uid {
                mode & 0o100 != 0
            } else if m.gid() == id.gid || id.groups.contains(&m.gid()) {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            }
        })
    })
}

/// Would this start use a PID namespace if it can? Not with `never`, and not when stockade is
/// already PID 1 (a container's init is in its own namespace already).
fn pid_namespace_requested(mode: PidNamespace) -> bool {
    mode != PidNamespace::Never && nix::unistd::getpid().as_raw() != 1
}

/// Should this start use a PID namespace? Decided once, here, from what the process can do
/// (`ability`: effective CAP_SYS_ADMIN and the runtime's filters), not from its uid.
fn own_pid_namespace(mode: PidNamespace, ability: &crate::ability::Ability) -> Result<bool> {
    if !pid_namespace_requested(mode) {
        if mode != PidNamespace::Never {
            tracing::debug!("already PID 1 of a namespace");
        }
        return Ok(false);
    }
    match (mode, ability.pid_namespace) {
        (_, None) => Ok(true),
        (PidNamespace::Always, Some(b)) => Err(Error::Privilege(format!(
            "supervise.pid_namespace = \"always\" needs a PID namespace, and {}: {}, or use \
             \"auto\"",
            b.reason(),
            b.remedy()
        ))),
        (_, Some(b)) => {
            tracing::debug!(reason = %b.reason(), "no PID namespace (auto)");
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The raw argv (which carries Triton's restricted-API secret) never shows in `Debug`: only
    /// the display copy, which the Triton rewriter redacts, does.
    #[test]
    fn plan_debug_does_not_print_the_raw_argv() {
        let loaded = crate::profile::load("minimal").unwrap();
        let cmd: Vec<OsString> = ["/bin/true", "--stand-in-for-a-secret"]
            .iter()
            .map(OsString::from)
            .collect();
        let plan = build(&loaded, &cmd, true).unwrap();
        let dbg = format!("{plan:?}");
        assert_eq!(dbg.matches("--stand-in-for-a-secret").count(), 1, "{dbg}");
        assert!(dbg.contains("argv: [redacted]") && dbg.contains("c_argv: [redacted]"));
        assert_eq!(plan.c_argv.len(), 2);
    }
}
