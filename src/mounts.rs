//! The server's private mount namespace: fresh tmpfs directories and read-only, noexec binds.
//!
//! Landlock rules are attached to the directories the parent opened; a tmpfs mounted on the same
//! path is reached through that mountpoint, so the rules still apply inside it.

use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};
use nix::sched::CloneFlags;

use crate::error::{Error, Result};
use crate::profile::{Loaded, MountsSection, WhenUnprivileged};

#[derive(Debug, Clone, serde::Serialize)]
pub struct MountPlan {
    pub tmpfs: Vec<(PathBuf, u64)>,
    pub read_only_noexec: Vec<PathBuf>,
    /// A fresh /proc for the server's own PID namespace (hidepid=invisible): the host's process
    /// table, and other servers' command lines with their secrets, stay out of sight.
    pub proc: bool,
}

impl MountPlan {
    pub fn is_empty(&self) -> bool {
        self.tmpfs.is_empty() && self.read_only_noexec.is_empty() && !self.proc
    }
}

fn existing_dir(loaded: &Loaded, p: &toml::Spanned<String>) -> Result<PathBuf> {
    let path = Path::new(p.get_ref());
    if !path.is_absolute() {
        return Err(loaded.err(
            p.span(),
            format!("mount path '{}' must be absolute", p.get_ref()),
        ));
    }
    std::fs::canonicalize(path).map_err(|source| Error::Missing {
        what: format!("mount path (at {})", loaded.at(p.span())),
        path: path.to_path_buf(),
        source,
    })
}

/// Resolve the section. `None` when there is nothing to mount or (rootless, `warn`) no
/// privilege to do it; the caller reports the warning.
pub fn plan(
    loaded: &Loaded,
    s: &MountsSection,
    repositories: &[PathBuf],
    privileged: bool,
    own_pid_namespace: bool,
    warnings: &mut Vec<String>,
) -> Result<Option<MountPlan>> {
    let mut tmpfs = Vec::new();
    for t in &s.tmpfs {
        if t.size_mb == 0 {
            return Err(loaded.err(t.path.span(), "tmpfs size_mb must be at least 1"));
        }
        tmpfs.push((existing_dir(loaded, &t.path)?, t.size_mb));
    }
    let mut ro = Vec::new();
    for p in &s.read_only_noexec {
        ro.push(existing_dir(loaded, p)?);
    }
    if s.model_repositories_noexec {
        ro.extend(repositories.iter().cloned());
    }
    let plan = MountPlan {
        tmpfs,
        read_only_noexec: ro,
        proc: own_pid_namespace && privileged,
    };
    if plan.is_empty() {
        return Ok(None);
    }
    if !privileged {
        return match s.when_unprivileged {
            WhenUnprivileged::Refuse => Err(Error::Privilege(
                "the profile's [mounts] need a private mount namespace, which an unprivileged \
                 start cannot create (mounts.when_unprivileged = \"refuse\")"
                    .into(),
            )),
            WhenUnprivileged::Warn => {
                warnings.push(
                    "rootless: no private mount namespace; [mounts] (private tmpfs, noexec \
                     repositories) not applied, the server shares /tmp and /dev/shm"
                        .into(),
                );
                Ok(None)
            }
        };
    }
    Ok(Some(plan))
}

/// Child, as root: new mount namespace, no propagation back to the host, then the mounts.
///
/// A read-only path below a tmpfs path (a repository under /tmp) would be hidden by the tmpfs, so
/// every such path is held open first and bound back at the same place afterwards.
pub fn apply(plan: &MountPlan) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    nix::sched::unshare(CloneFlags::CLONE_NEWNS)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )?;
    // Opened inside the new namespace: a bind source must belong to it.
    let held = plan
        .read_only_noexec
        .iter()
        .map(|p| {
            nix::fcntl::open(
                p,
                nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
        })
        .collect::<nix::Result<Vec<_>>>()?;
    let safe = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    for (path, size_mb) in &plan.tmpfs {
        let opts = format!("mode=1777,size={size_mb}m");
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            safe,
            Some(opts.as_str()),
        )?;
    }
    if plan.proc {
        mount(
            Some("proc"),
            "/proc",
            Some("proc"),
            safe,
            Some("hidepid=invisible"),
        )?;
    }
    for (path, fd) in plan.read_only_noexec.iter().zip(&held) {
        if !path.exists() {
            std::fs::create_dir_all(path).map_err(|e| {
                nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO))
            })?;
        }
        let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
        mount(
            Some(source.as_str()),
            path,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )?;
        mount(
            None::<&str>,
            path,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | safe,
            None::<&str>,
        )?;
    }
    Ok(())
}
