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

/// The section as asked for, checked (absolute, existing directories, sizes); no fresh /proc yet.
pub fn request(loaded: &Loaded, s: &MountsSection, repositories: &[PathBuf]) -> Result<MountPlan> {
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
    Ok(MountPlan {
        tmpfs,
        read_only_noexec: ro,
        proc: false,
    })
}

impl MountPlan {
    /// Where the namespace probe mounts its throw-away tmpfs: a path this plan mounts over.
    pub fn probe_target(&self) -> &Path {
        self.tmpfs
            .first()
            .map(|(p, _)| p.as_path())
            .or(self.read_only_noexec.first().map(PathBuf::as_path))
            .unwrap_or(Path::new("/"))
    }
}

/// Decide from what stockade can do (`blocked`: why it cannot create a private mount namespace,
/// see `ability`), not from its uid. `None` when there is nothing to mount or, with `warn`, it
/// cannot; the warning then names what is missing and how to grant it.
pub fn plan(
    s: &MountsSection,
    request: MountPlan,
    blocked: Option<crate::ability::Blocked>,
    own_pid_namespace: bool,
    warnings: &mut Vec<String>,
) -> Result<Option<MountPlan>> {
    let plan = MountPlan {
        proc: own_pid_namespace,
        ..request
    };
    if plan.is_empty() {
        return Ok(None);
    }
    let Some(blocked) = blocked else {
        return Ok(Some(plan));
    };
    match s.when_unprivileged {
        WhenUnprivileged::Refuse => Err(Error::Privilege(format!(
            "the profile's [mounts] need a private mount namespace, and {}: {}, or set \
             mounts.when_unprivileged = \"warn\" to start without them",
            blocked.reason(),
            blocked.remedy()
        ))),
        WhenUnprivileged::Warn => {
            warnings.push(format!(
                "no private mount namespace ({}): [mounts] not applied ({}); the dry run says \
                 what stands in for each; to apply them, {}",
                blocked.reason(),
                plan.describe(),
                blocked.remedy()
            ));
            Ok(None)
        }
    }
}

impl MountPlan {
    /// "tmpfs /tmp, /dev/shm; read-only noexec /models" for messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.tmpfs.is_empty() {
            let t: Vec<String> = self
                .tmpfs
                .iter()
                .map(|(p, _)| p.display().to_string())
                .collect();
            parts.push(format!("private tmpfs {}", t.join(", ")));
        }
        if !self.read_only_noexec.is_empty() {
            let r: Vec<String> = self
                .read_only_noexec
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            parts.push(format!("read-only noexec {}", r.join(", ")));
        }
        parts.join("; ")
    }
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
