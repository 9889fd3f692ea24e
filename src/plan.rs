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
    let mut secret_exposure_line = None;
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
        if rw.args.iter().any(|a| {
            a.starts_with("--http-restricted-api=") || a.starts_with("--grpc-restricted-protocol=")
        }) {
            let hidepid = proc_hidepid(
                &std::fs::read_to_string("/proc/self/mountinfo")
                    .map_err(|e| Error::os("/proc/self/mountinfo", e))?,
            );
            let (exposure, warning) = secret_exposure(&hidepid, identity.uid);
            secret_exposure_line = Some(exposure);
            warnings.extend(warning);
        }
        display_tail = rw.redacted_args();
        args = rw.args.iter().map(OsString::from).collect();
    }

    // Namespaces from what this process can do (CAP_SYS_ADMIN, the runtime's filters), not uid.
    let request = crate::mounts::request(loaded, &p.mounts, &repositories)?;
    let ability = crate::ability::assess(&crate::ability::Wanted {
        mounts: !request.is_empty(),
        mount_target: request.probe_target(),
        pid_namespace: crate::pidns::requested(supervise.pid_namespace),
    })?;
    let own_pid_ns = crate::pidns::wanted_for(supervise.pid_namespace, &ability)?;
    let mounts_requested = (!request.is_empty()).then(|| request.clone());
    let mounts = crate::mounts::plan(
        &p.mounts,
        request,
        ability.mounts,
        own_pid_ns,
        &mut warnings,
    )?;
    // Rules on a path that gets a fresh mount are added in the child, after the mount.
    let tmpfs_targets: Vec<PathBuf> = mounts
        .iter()
        .flat_map(|m| {
            let proc = m.proc.then(|| PathBuf::from("/proc"));
            m.tmpfs.iter().map(|(p, _)| p.clone()).chain(proc)
        })
        .collect();
    let ro_mounts: Vec<PathBuf> = mounts
        .iter()
        .flat_map(|m| m.read_only_noexec.iter().cloned())
        .collect();
    let landlock = crate::landlock_policy::prepare(
        loaded,
        &p.landlock,
        &extra,
        &tmpfs_targets,
        &ro_mounts,
        !dry_run,
    )?;
    for f in landlock.missing_best_effort() {
        warnings.push(format!(
            "landlock feature '{}' (ABI {}) is not supported by this kernel ({}): running without it (best effort)",
            f.feature.name(),
            f.abi,
            crate::sys::kernel_release()
        ));
    }
    let seccomp = crate::seccomp_policy::compile(loaded, &p.seccomp)?;

    let exe = resolve_exe(argv0, env.get("PATH"))?;
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
    })
}

/// The `hidepid` and `gid` options of the /proc this process sees (the topmost mount on /proc
/// in /proc/self/mountinfo); `None` when /proc is not hidden (no hidepid, or hidepid=0/off).
#[derive(Debug, PartialEq, Eq)]
pub struct Hidepid {
    pub mode: String,
    pub gid: Option<String>,
}

pub fn proc_hidepid(mountinfo: &str) -> Option<Hidepid> {
    let line = mountinfo
        .lines()
        .rfind(|l| l.split_whitespace().nth(4) == Some("/proc"))?;
    // Fields after " - ": fstype, source, super options (where procfs keeps hidepid).
    let (_, tail) = line.split_once(" - ")?;
    let mut t = tail.split_whitespace();
    if t.next() != Some("proc") {
        return None;
    }
    let opts: Vec<&str> = t.nth(1)?.split(',').collect();
    let opt = |k: &str| {
        opts.iter()
            .find_map(|o| o.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .map(str::to_string)
    };
    let mode = opt("hidepid").filter(|m| m != "0" && m != "off")?;
    Some(Hidepid {
        mode,
        gid: opt("gid"),
    })
}

/// Who can read the server's command line, and the warning when that is every host user.
/// tritonserver takes the restricted-API secret only in argv; the server's own PID namespace
/// hides it from the server's side, not from the host's /proc.
fn secret_exposure(hidepid: &Option<Hidepid>, server_uid: u32) -> (String, Option<String>) {
    match hidepid {
        None => (
            "the restricted-API secret is in the server's argv: EVERY user on this host can \
             read it in /proc/<pid>/cmdline (this /proc has no hidepid); fix: \
             `mount -o remount,hidepid=invisible /proc` (persist it in /etc/fstab)"
                .to_string(),
            Some(
                "the restricted-API secret in the server's argv is readable by every user on \
                 this host (/proc has no hidepid): run `mount -o remount,hidepid=invisible /proc` \
                 (and persist it in /etc/fstab)"
                    .into(),
            ),
        ),
        Some(h) => (
            format!(
                "the restricted-API secret is in the server's argv: readable in \
                 /proc/<pid>/cmdline by root and by processes of uid {server_uid}{} (/proc has \
                 hidepid={})",
                h.gid
                    .as_ref()
                    .map_or(String::new(), |g| format!(" and of group {g}")),
                h.mode
            ),
            None,
        ),
    }
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

    #[test]
    fn hidepid_is_read_from_the_proc_mount() {
        let host = "22 27 0:21 / /proc rw,relatime - proc proc rw\n";
        assert_eq!(proc_hidepid(host), None);
        let hidden = "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
                      99 27 0:50 / /proc rw,nosuid - proc proc rw,gid=4,hidepid=invisible\n";
        assert_eq!(
            proc_hidepid(hidden),
            Some(Hidepid {
                mode: "invisible".into(),
                gid: Some("4".into())
            })
        );
        let off = "22 27 0:21 / /proc rw - proc proc rw,hidepid=off\n";
        assert_eq!(proc_hidepid(off), None);
        let other = "22 27 0:21 / /proc/sys rw - proc proc rw,hidepid=2\n";
        assert_eq!(proc_hidepid(other), None);
    }
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
