//! The server's mount namespace: fresh tmpfs directories, read-only noexec binds, noexec
//! writable paths, and (`fresh_root`) a new root that holds only what the profile lists.
//!
//! Landlock rules attach to inodes. A bind mount keeps the inode, so the rules the parent made on
//! the host paths still hold for the same paths in the server's view; a fresh tmpfs or /proc is a
//! new inode, so its rules are added in the child after the mount (`LandlockPlan::deferred`).
//!
//! Attributes are set with mount_setattr(AT_RECURSIVE): a bind is recursive, so a mount nested
//! inside a listed path (a tmpfs at REPO/sub) gets them too; afterwards /proc/self/mountinfo is
//! read back and the child stops if any mount in scope is still writable or executable.

use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount};
use nix::sched::CloneFlags;

use crate::error::{Error, Result};
use crate::landlock_policy::{Access3, PathRule};
use crate::profile::{Loaded, MountsSection, WhenUnprivileged};
use crate::sys::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};

/// The errno the child reports when a mount is not what the plan said after the attributes were
/// set (error.rs turns it into a sentence).
pub const VERIFY_ERRNO: Errno = Errno::ENOTRECOVERABLE;

/// Where the fresh root is assembled before pivot_root, inside the child's own mount namespace
/// (the host's /tmp is not touched; bind sources are held open before anything is mounted).
const STAGING: &str = "/tmp";

#[derive(Debug, Clone, serde::Serialize)]
pub struct Bind {
    pub path: PathBuf,
    pub writable: bool,
    pub exec: bool,
    /// A device node: bound without `nodev`.
    pub device: bool,
}

impl Bind {
    fn attrs(&self) -> u64 {
        let mut a = MOUNT_ATTR_NOSUID;
        if !self.writable {
            a |= MOUNT_ATTR_RDONLY;
        }
        if !self.exec {
            a |= MOUNT_ATTR_NOEXEC;
        }
        if !self.device {
            a |= MOUNT_ATTR_NODEV;
        }
        a
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FreshRoot {
    /// Parent before child, each bound at the same path.
    pub binds: Vec<Bind>,
    /// Symlinks on the listed paths (`/lib64 -> usr/lib64`), recreated as they are on the host.
    pub symlinks: Vec<(PathBuf, PathBuf)>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MountPlan {
    pub tmpfs: Vec<(PathBuf, u64)>,
    pub read_only_noexec: Vec<PathBuf>,
    /// Landlock read_write paths bound onto themselves noexec, nosuid, nodev (not fresh_root;
    /// there every bind carries its own attributes).
    pub writable_noexec: Vec<PathBuf>,
    /// A fresh /proc for the server's own PID namespace (hidepid=invisible): the host's process
    /// table, and other servers' command lines with their secrets, stay out of sight.
    pub proc: bool,
    pub fresh_root: Option<FreshRoot>,
    #[serde(skip)]
    want_writable_noexec: bool,
}

impl MountPlan {
    pub fn is_empty(&self) -> bool {
        self.tmpfs.is_empty()
            && self.read_only_noexec.is_empty()
            && !self.proc
            && self.fresh_root.is_none()
            && !self.want_writable_noexec
    }

    /// Paths that get a new filesystem (tmpfs, /proc): their Landlock rules are deferred.
    pub fn fresh_targets(&self) -> Vec<PathBuf> {
        let proc = self.proc.then(|| PathBuf::from("/proc"));
        self.tmpfs
            .iter()
            .map(|(p, _)| p.clone())
            .chain(proc)
            .collect()
    }

    /// Is `path` read-only at the mount for the server?
    pub fn mounted_read_only(&self, path: &Path) -> bool {
        match &self.fresh_root {
            Some(f) => f
                .binds
                .iter()
                .filter(|b| path.starts_with(&b.path))
                .max_by_key(|b| b.path.components().count())
                .is_some_and(|b| !b.writable),
            None => self.read_only_noexec.iter().any(|m| path.starts_with(m)),
        }
    }

    /// Fill in what depends on the resolved Landlock rules: the binds of a fresh root, or the
    /// writable paths to re-mount noexec. `written` holds the paths as given (profile entries,
    /// server flags, the executable, cwd): symlinks on them are recreated in a fresh root.
    pub fn complete(
        &mut self,
        rules: &[PathRule],
        written: &[PathBuf],
        exe: &Path,
        cwd: &Path,
        cwd_inherited: bool,
    ) -> Result<()> {
        let fresh = self.fresh_targets();
        let device = |p: &Path| {
            use std::os::unix::fs::FileTypeExt;
            std::fs::metadata(p)
                .is_ok_and(|m| m.file_type().is_char_device() || m.file_type().is_block_device())
        };
        let Some(root) = self.fresh_root.as_mut() else {
            if self.want_writable_noexec {
                for r in rules.iter().filter(|r| r.access.writes()) {
                    if !fresh.contains(&r.path)
                        && !device(&r.path)
                        && !self.writable_noexec.contains(&r.path)
                    {
                        self.writable_noexec.push(r.path.clone());
                    }
                }
            }
            return Ok(());
        };
        let mut binds: Vec<Bind> = Vec::new();
        for r in rules.iter().filter(|r| !fresh.contains(&r.path)) {
            let b = match binds.iter_mut().find(|b| b.path == r.path) {
                Some(b) => b,
                None => {
                    binds.push(Bind {
                        path: r.path.clone(),
                        writable: false,
                        exec: false,
                        device: device(&r.path),
                    });
                    binds
                        .last_mut()
                        .ok_or_else(|| Error::Internal("bind list".into()))?
                }
            };
            // Landlock rights add up over rules on one path; so do the mount's.
            b.writable |= r.access.writes();
            b.exec |= r.access == Access3::ReadExec;
        }
        for p in &self.read_only_noexec {
            match binds.iter_mut().find(|b| b.path == *p) {
                Some(b) => {
                    b.writable = false;
                    b.exec = false;
                }
                None => binds.push(Bind {
                    path: p.clone(),
                    writable: false,
                    exec: false,
                    device: false,
                }),
            }
        }
        binds.sort_by(|a, b| {
            (a.path.components().count(), &a.path).cmp(&(b.path.components().count(), &b.path))
        });
        // A bind below one with the same attributes adds nothing (the parent's bind is
        // recursive and shows the same files): one mount less per start.
        let mut kept: Vec<Bind> = Vec::new();
        for b in binds {
            let nearest = kept
                .iter()
                .filter(|k| b.path.starts_with(&k.path))
                .max_by_key(|k| k.path.components().count());
            let same = nearest.is_some_and(|k| {
                (k.writable, k.exec, k.device) == (b.writable, b.exec, b.device)
                    && !fresh
                        .iter()
                        .any(|t| t.starts_with(&k.path) && b.path.starts_with(t))
            });
            if !same {
                kept.push(b);
            }
        }
        let binds = kept;
        let in_view = |p: &Path| view_holds(&binds, &fresh, p);
        let absent = |what: &str, path: &Path| Error::Missing {
            what: format!("{what}, in the server's fresh root (mounts.fresh_root)"),
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not below a [landlock] path, so not in the server's view",
            ),
        };
        let canon_exe = std::fs::canonicalize(exe).unwrap_or_else(|_| exe.to_path_buf());
        if !binds
            .iter()
            .any(|b| b.exec && canon_exe.starts_with(&b.path))
        {
            return Err(absent("the server (needs a read_exec path)", exe));
        }
        // A profile's server.cwd must be in the view; stockade's own directory may not be (the
        // plan then starts the server in `/`, see `shows`).
        let canon_cwd = std::fs::canonicalize(cwd).unwrap_or_else(|_| cwd.to_path_buf());
        if !cwd_inherited && !in_view(&canon_cwd) {
            return Err(absent("server.cwd", cwd));
        }
        let mut symlinks = Vec::new();
        for w in written
            .iter()
            .chain([&exe.to_path_buf(), &cwd.to_path_buf()])
        {
            symlinks_on(w, &mut symlinks, 0);
        }
        root.binds = binds;
        root.symlinks = symlinks;
        Ok(())
    }
}

impl MountPlan {
    /// Does the server's filesystem view hold `path`? Always, without a fresh root.
    pub fn shows(&self, path: &Path) -> bool {
        let canon = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        self.fresh_root
            .as_ref()
            .is_none_or(|f| view_holds(&f.binds, &self.fresh_targets(), &canon))
    }
}

fn view_holds(binds: &[Bind], fresh: &[PathBuf], p: &Path) -> bool {
    p == Path::new("/")
        || binds.iter().any(|b| p.starts_with(&b.path))
        || fresh.iter().any(|t| p.starts_with(t))
}

/// Every symlink met while resolving `path` (and, in turn, its targets), as (link, contents).
fn symlinks_on(path: &Path, out: &mut Vec<(PathBuf, PathBuf)>, depth: u8) {
    if depth > 8 || !path.is_absolute() {
        return;
    }
    let mut cur = PathBuf::from("/");
    for c in path.components() {
        let Component::Normal(name) = c else {
            continue;
        };
        let next = cur.join(name);
        match std::fs::read_link(&next) {
            Ok(target) => {
                if !out.iter().any(|(l, _)| *l == next) {
                    out.push((next.clone(), target.clone()));
                }
                let abs = cur.join(&target);
                symlinks_on(&abs, out, depth + 1);
                match std::fs::canonicalize(&next) {
                    Ok(c) => cur = c,
                    Err(_) => return,
                }
            }
            Err(_) => cur = next,
        }
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
        writable_noexec: Vec::new(),
        proc: false,
        fresh_root: s.fresh_root.then(|| FreshRoot {
            binds: Vec::new(),
            symlinks: Vec::new(),
        }),
        want_writable_noexec: s.writable_noexec
            && !(loaded.profile.landlock.read_write.is_empty()
                && loaded.profile.landlock.make_dirs.is_empty()),
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
/// cannot; the warning then names what is missing and how to grant it, and what stays open.
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
                "no private mount namespace ({}): [mounts] not applied ({}); the server shares \
                 /tmp and /dev/shm, a file it writes can still be mapped executable (ld.so FILE: \
                 Landlock checks execve, not mmap), owner metadata (chmod, utime) changes where \
                 Landlock allows reading, and the host's pathname UNIX sockets are {}; the dry \
                 run says what stands in for each; to apply them, {}",
                blocked.reason(),
                plan.describe(),
                if crate::sys::landlock_abi() >= 9 {
                    "closed by Landlock resolve_unix"
                } else {
                    "reachable (Landlock resolve_unix needs ABI 9)"
                },
                blocked.remedy()
            ));
            Ok(None)
        }
    }
}

impl MountPlan {
    /// "fresh root; private tmpfs /tmp, /dev/shm; read-only noexec /models" for messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.fresh_root.is_some() {
            parts.push("fresh root".to_string());
        }
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
        if self.want_writable_noexec {
            parts.push("noexec writable paths".to_string());
        }
        parts.join("; ")
    }
}

/// Warn when the serving uid owns something under a read-only path that is not read-only at the
/// mount: Landlock does not govern chmod/utime/xattr, the owner may change those. A bounded look,
/// breadth first, 16 entries per path: a full walk of /usr costs tens of milliseconds per start.
pub fn server_owned(
    rules: &[PathRule],
    mounts: Option<&MountPlan>,
    uid: u32,
    warnings: &mut Vec<String>,
) {
    use std::os::unix::fs::MetadataExt;
    let tops = rules
        .iter()
        .filter(|r| matches!(r.access, Access3::ReadOnly | Access3::ReadExec))
        .filter(|r| {
            !mounts.is_some_and(|m| {
                m.mounted_read_only(&r.path)
                    || m.fresh_targets().iter().any(|t| r.path.starts_with(t))
            })
        });
    for r in tops {
        let mut budget: usize = 16;
        let mut queue = std::collections::VecDeque::from([r.path.clone()]);
        while let Some(p) = queue.pop_front() {
            if budget == 0 {
                break;
            }
            budget -= 1;
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.uid() == uid {
                warnings.push(format!(
                    "{} (under read-only path {}) is owned by the server's uid {uid}: Landlock \
                     does not stop the owner's chmod/utime/xattr there; chown it to another \
                     user, or start as root with mounts.fresh_root",
                    p.display(),
                    r.path.display()
                ));
                return;
            }
            let room = budget.saturating_sub(queue.len());
            if meta.is_dir()
                && room > 0
                && let Ok(d) = std::fs::read_dir(&p)
            {
                queue.extend(d.take(room).filter_map(|e| e.ok().map(|e| e.path())));
            }
        }
    }
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO))
}

/// Create what a mount needs at `at`: a directory, or an empty file for a file or device.
fn mountpoint(at: &Path, dir: bool) -> nix::Result<()> {
    if std::fs::symlink_metadata(at).is_ok() {
        return Ok(());
    }
    if dir {
        return std::fs::create_dir_all(at).map_err(io_errno);
    }
    if let Some(parent) = at.parent() {
        std::fs::create_dir_all(parent).map_err(io_errno)?;
    }
    std::fs::File::create(at).map(drop).map_err(io_errno)
}

fn bind(tree: &OwnedFd, at: &Path, attrs: u64) -> nix::Result<()> {
    let dir = nix::sys::stat::fstat(tree)
        .is_ok_and(|s| s.st_mode & nix::libc::S_IFMT == nix::libc::S_IFDIR);
    mountpoint(at, dir)?;
    crate::sys::attach_tree(tree, at)?;
    crate::sys::mount_setattr(at, attrs, true)
}

fn tmpfs(at: &Path, size_mb: u64) -> nix::Result<()> {
    mountpoint(at, true)?;
    let opts = format!("mode=1777,size={size_mb}m");
    mount(
        Some("tmpfs"),
        at,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(opts.as_str()),
    )
}

fn proc(at: &Path) -> nix::Result<()> {
    mountpoint(at, true)?;
    mount(
        Some("proc"),
        at,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("hidepid=invisible"),
    )
}

const FRESH_FS: u64 = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;

/// One mount the child makes, at its path in the server's view.
enum Item<'a> {
    Bind(&'a Path, u64),
    Tmpfs(&'a Path, u64),
    Proc,
}

impl Item<'_> {
    fn path(&self) -> &Path {
        match self {
            Item::Bind(p, _) | Item::Tmpfs(p, _) => p,
            Item::Proc => Path::new("/proc"),
        }
    }
    fn attrs(&self) -> u64 {
        match self {
            Item::Bind(_, a) => *a,
            Item::Tmpfs(..) | Item::Proc => FRESH_FS,
        }
    }
}

/// Under `root` (the staging directory, or `/`): `root` joined with the absolute `p`.
fn under(root: &Path, p: &Path) -> PathBuf {
    root.join(p.strip_prefix("/").unwrap_or(p))
}

/// Child, as root: new mount namespace, no propagation back to the host, then the mounts.
pub fn apply(plan: &MountPlan) -> nix::Result<()> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNS)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )?;
    let mut items: Vec<Item> = Vec::new();
    match &plan.fresh_root {
        Some(f) => items.extend(f.binds.iter().map(|b| Item::Bind(&b.path, b.attrs()))),
        None => {
            let ro = MOUNT_ATTR_RDONLY | FRESH_FS;
            items.extend(plan.read_only_noexec.iter().map(|p| Item::Bind(p, ro)));
            items.extend(plan.writable_noexec.iter().map(|p| Item::Bind(p, FRESH_FS)));
        }
    }
    // Every bind source is cloned (a detached copy of its mount tree, as it is now) before
    // anything is mounted: a source below a tmpfs path (a repository under /tmp) would be
    // hidden by it, and a source above the fresh root's staging directory would carry it along.
    let held = items
        .iter()
        .map(|i| match i {
            Item::Bind(p, _) => crate::sys::clone_tree(p).map(Some),
            _ => Ok(None),
        })
        .collect::<nix::Result<Vec<_>>>()?;
    items.extend(plan.tmpfs.iter().map(|(p, mb)| Item::Tmpfs(p, *mb)));
    if plan.proc {
        items.push(Item::Proc);
    }
    let depth = |i: &Item| i.path().components().count();
    let mut order: Vec<usize> = (0..items.len()).collect();
    match plan.fresh_root {
        // Parent before child, so a child lands on top of its parent's bind.
        Some(_) => order.sort_by_key(|i| depth(&items[*i])),
        // Today's order: the new filesystems first, then the binds (parent first) on top.
        None => order.sort_by_key(|i| (matches!(items[*i], Item::Bind(..)), depth(&items[*i]))),
    }
    let root = match plan.fresh_root {
        Some(_) => {
            mount(
                Some("stockade-root"),
                STAGING,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("mode=0755,size=1m"),
            )?;
            PathBuf::from(STAGING)
        }
        None => PathBuf::from("/"),
    };
    for i in order {
        let at = under(&root, items[i].path());
        match (&items[i], &held.get(i)) {
            (Item::Bind(_, attrs), Some(Some(fd))) => bind(fd, &at, *attrs)?,
            (Item::Tmpfs(_, mb), _) => tmpfs(&at, *mb)?,
            (Item::Proc, _) => proc(&at)?,
            _ => return Err(Errno::EINVAL),
        }
    }
    drop(held);
    let Some(f) = &plan.fresh_root else {
        return verify(&root, &items, false);
    };
    for (link, target) in &f.symlinks {
        let at = under(&root, link);
        if std::fs::symlink_metadata(&at).is_err() {
            if let Some(parent) = at.parent() {
                std::fs::create_dir_all(parent).map_err(io_errno)?;
            }
            std::os::unix::fs::symlink(target, &at).map_err(io_errno)?;
        }
    }
    // The root itself: read-only, nothing can be added beside the listed paths.
    crate::sys::mount_setattr(&root, MOUNT_ATTR_RDONLY | FRESH_FS, false)?;
    // pivot_root(".", "."): the old root ends up stacked on the new one, and is detached.
    nix::unistd::chdir(&root)?;
    nix::unistd::pivot_root(".", ".")?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH)?;
    nix::unistd::chdir("/")?;
    // Read back once the host's mounts are gone from this namespace: the kernel then formats a
    // dozen lines instead of every host mount (most of the read's cost). The server execs only
    // after this passes.
    verify(Path::new("/"), &items, true)
}

/// Read /proc/self/mountinfo back: every mount at or below a planned path must carry the flags
/// of the nearest planned path above it; with a fresh root every mount in it must be planned,
/// and the root read-only. Only mounts in the tree that is visible at each path count (the
/// parent-id chain): mounts a new tmpfs hides keep their old flags and do not matter.
fn verify(root: &Path, items: &[Item], fresh: bool) -> nix::Result<()> {
    let info = crate::sys::read_proc("/proc/self/mountinfo").map_err(io_errno)?;
    check(&info, root, items, fresh)
}

fn check(info: &str, root: &Path, items: &[Item], fresh: bool) -> nix::Result<()> {
    struct M {
        id: u64,
        parent: u64,
        point: PathBuf,
        opts: String,
    }
    let mut all = Vec::new();
    for line in info.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
        let (Some(id), Some(parent), Some(point), Some(opts)) =
            (num(0), num(1), f.get(4), f.get(5))
        else {
            return Err(VERIFY_ERRNO);
        };
        all.push(M {
            id,
            parent,
            point: unescape(point),
            opts: (*opts).to_string(),
        });
    }
    // The mount on top at `at`: one at that point with no mount stacked on it.
    let top = |at: &Path| {
        all.iter()
            .filter(|m| m.point == at)
            .find(|m| !all.iter().any(|c| c.parent == m.id && c.point == at))
            .map(|m| m.id)
    };
    let below = |id: u64| {
        let mut ids = vec![id];
        let mut i = 0;
        while i < ids.len() {
            let cur = ids[i];
            ids.extend(
                all.iter()
                    .filter(|m| m.parent == cur && m.id != cur)
                    .map(|m| m.id),
            );
            i += 1;
        }
        ids
    };
    let mut scope: Vec<u64> = Vec::new();
    let starts: Vec<PathBuf> = if fresh {
        vec![root.to_path_buf()]
    } else {
        items.iter().map(|i| under(root, i.path())).collect()
    };
    for at in &starts {
        scope.extend(below(top(at).ok_or(VERIFY_ERRNO)?));
    }
    // Hidden: something is stacked on it, or a sibling sits on one of its ancestors (it was
    // mounted first), or its parent is hidden. Nothing can reach a hidden mount.
    let covered = |m: &M| {
        all.iter().any(|n| n.parent == m.id && n.point == m.point)
            || all.iter().any(|n| {
                n.parent == m.parent
                    && n.id != m.id
                    && n.point != m.point
                    && m.point.starts_with(&n.point)
            })
    };
    let hidden = |m: &M| {
        let mut cur = Some(m);
        let mut hops = 0;
        while let Some(c) = cur {
            if covered(c) {
                return true;
            }
            hops += 1;
            cur = all
                .iter()
                .find(|p| p.id == c.parent && p.id != c.id)
                .filter(|_| hops < 64);
        }
        false
    };
    for m in all.iter().filter(|m| scope.contains(&m.id) && !hidden(m)) {
        let Ok(rel) = m.point.strip_prefix(root) else {
            return Err(VERIFY_ERRNO);
        };
        let rel = Path::new("/").join(rel);
        let want = items
            .iter()
            .filter(|i| rel.starts_with(i.path()))
            .max_by_key(|i| i.path().components().count())
            .map(Item::attrs);
        let want = match want {
            Some(a) => a,
            None if fresh && rel == Path::new("/") => MOUNT_ATTR_RDONLY | FRESH_FS,
            None => return Err(VERIFY_ERRNO),
        };
        let has = |o: &str| m.opts.split(',').any(|x| x == o);
        let ok = (want & MOUNT_ATTR_RDONLY == 0 || has("ro"))
            && (want & MOUNT_ATTR_NOEXEC == 0 || has("noexec"))
            && (want & MOUNT_ATTR_NOSUID == 0 || has("nosuid"))
            && (want & MOUNT_ATTR_NODEV == 0 || has("nodev"));
        if !ok {
            return Err(VERIFY_ERRNO);
        }
    }
    Ok(())
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape(r"/a\040b\134c"), PathBuf::from("/a b\\c"));
        assert_eq!(unescape(r"/plain"), PathBuf::from("/plain"));
        assert_eq!(unescape(r"/end\04"), PathBuf::from(r"/end\04"));
    }

    const RO: u64 = MOUNT_ATTR_RDONLY | FRESH_FS;

    fn line(id: u64, parent: u64, point: &str, opts: &str) -> String {
        format!("{id} {parent} 0:1 / {point} {opts} - tmpfs tmpfs rw\n")
    }

    #[test]
    fn a_nested_mount_that_kept_rw_or_exec_is_refused() {
        let repo = Path::new("/models");
        let items = [Item::Bind(repo, RO)];
        let ok = line(1, 0, "/", "rw") + &line(2, 1, "/models", "ro,nosuid,nodev,noexec");
        assert!(check(&ok, Path::new("/"), &items, false).is_ok());
        for opts in ["rw,nosuid,nodev,noexec", "ro,nosuid,nodev"] {
            let bad = ok.clone() + &line(3, 2, "/models/sub", opts);
            assert_eq!(
                check(&bad, Path::new("/"), &items, false),
                Err(VERIFY_ERRNO),
                "{opts}"
            );
        }
        // Outside every planned path, the host's mounts are not ours to judge (no fresh root).
        let other = ok.clone() + &line(3, 1, "/srv", "rw");
        assert!(check(&other, Path::new("/"), &items, false).is_ok());
    }

    #[test]
    fn hidden_mounts_do_not_count_and_unplanned_ones_in_a_fresh_root_do() {
        let stage = Path::new("/tmp");
        let items = [
            Item::Bind(Path::new("/data"), FRESH_FS),
            Item::Bind(Path::new("/data/ro"), RO),
        ];
        let base = line(1, 0, "/", "rw")
            + &line(10, 1, "/tmp", "ro,nosuid,nodev,noexec")
            + &line(11, 10, "/tmp/data", "rw,nosuid,nodev,noexec")
            + &line(12, 11, "/tmp/data/ro", "ro,nosuid,nodev,noexec");
        assert!(check(&base, stage, &items, true).is_ok());
        // A writable mount the rw bind brought along at data/ro/sub, hidden by the ro bind.
        let hidden = base.clone() + &line(13, 11, "/tmp/data/ro/sub", "rw");
        assert!(check(&hidden, stage, &items, true).is_ok());
        // The same mount visible (inside the ro bind) is refused.
        let visible = base.clone() + &line(13, 12, "/tmp/data/ro/sub", "rw");
        assert_eq!(check(&visible, stage, &items, true), Err(VERIFY_ERRNO));
        // Something nobody planned in the new root.
        let stray = base.clone() + &line(14, 10, "/tmp/run", "ro,nosuid,nodev,noexec");
        assert_eq!(check(&stray, stage, &items, true), Err(VERIFY_ERRNO));
        // A root that is still writable.
        let rw_root = base.replace("10 1 0:1 / /tmp ro,", "10 1 0:1 / /tmp rw,");
        assert_eq!(check(&rw_root, stage, &items, true), Err(VERIFY_ERRNO));
    }

    #[test]
    fn symlinks_on_merged_usr_paths_are_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("usr/lib64")).unwrap();
        std::os::unix::fs::symlink("usr/lib64", dir.path().join("lib64")).unwrap();
        let mut out = Vec::new();
        symlinks_on(&dir.path().join("lib64"), &mut out, 0);
        assert!(
            out.contains(&(dir.path().join("lib64"), PathBuf::from("usr/lib64"))),
            "{out:?}"
        );
    }
}
