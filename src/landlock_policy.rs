//! Landlock: profile → ruleset (created in the parent), restriction (in the child).
//!
//! Rights are grouped into features by the ABI that introduced them. A feature the profile does
//! not list as best-effort is a hard requirement: if the kernel lacks it, stockade refuses to
//! start and says which right and which kernel. Best-effort features that are missing are
//! reported at start and by the dry run.

use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath,
    PathFd, RestrictionStatus, Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr,
    RulesetStatus, Scope,
};

use crate::error::{Error, Result};
use crate::profile::{LandlockSection, Loaded, PathEntry};

/// The newest ABI whose rights stockade handles; raise it on purpose, with tests.
pub const ABI_PIN: ABI = ABI::V10;

/// Features up to this ABI are required unless the profile lists them in `best_effort`; newer
/// ones are best effort unless it lists them in `require` (a profile written for an older kernel
/// keeps starting, and gains them where the kernel has them).
pub const BASELINE_ABI: u8 = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// Filesystem access control (execute, read, write, create, remove).
    Fs,
    /// Renaming and linking across directories (`refer`).
    Refer,
    /// `truncate`.
    Truncate,
    /// TCP bind and connect by port.
    Tcp,
    /// ioctl on device files.
    IoctlDev,
    /// Abstract unix socket scoping.
    ScopeAbstractUnix,
    /// Signal scoping.
    ScopeSignal,
    /// Denials after exec reach the kernel audit log (`LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON`).
    AuditLog,
    /// connect/sendmsg to pathname UNIX sockets only where `connect_unix` lists them
    /// (`LANDLOCK_ACCESS_FS_RESOLVE_UNIX`); sockets the server creates itself stay reachable.
    ResolveUnix,
    /// UDP bind and connect/send by port.
    Udp,
}

impl Feature {
    pub const ALL: [Feature; 10] = [
        Feature::Fs,
        Feature::Refer,
        Feature::Truncate,
        Feature::Tcp,
        Feature::IoctlDev,
        Feature::ScopeAbstractUnix,
        Feature::ScopeSignal,
        Feature::AuditLog,
        Feature::ResolveUnix,
        Feature::Udp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Feature::Fs => "fs",
            Feature::Refer => "refer",
            Feature::Truncate => "truncate",
            Feature::Tcp => "tcp",
            Feature::IoctlDev => "ioctl_dev",
            Feature::ScopeAbstractUnix => "scope_abstract_unix",
            Feature::ScopeSignal => "scope_signal",
            Feature::AuditLog => "audit_log",
            Feature::ResolveUnix => "resolve_unix",
            Feature::Udp => "udp",
        }
    }

    /// The Landlock ABI that introduced the feature.
    pub fn abi(self) -> u8 {
        match self {
            Feature::Fs => 1,
            Feature::Refer => 2,
            Feature::Truncate => 3,
            Feature::Tcp => 4,
            Feature::IoctlDev => 5,
            Feature::ScopeAbstractUnix | Feature::ScopeSignal => 6,
            Feature::AuditLog => 7,
            Feature::ResolveUnix => 9,
            Feature::Udp => 10,
        }
    }

    fn from_name(s: &str) -> Option<Feature> {
        Feature::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// Whether this kernel supports one feature, and whether the profile requires it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FeatureStatus {
    pub feature: Feature,
    pub abi: u8,
    pub required: bool,
    pub supported: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access3 {
    ReadOnly,
    ReadExec,
    ReadWrite,
    /// List, create and remove directories (`make_dirs`): no file can be created, written or
    /// truncated below the path. Removing is allowed: glibc's remove() tries unlink() first and
    /// falls back to rmdir() only on EISDIR, which Landlock's EACCES would turn into a failure.
    MakeDirs,
    /// Connect to the pathname UNIX sockets at or below the path (`connect_unix`).
    ConnectUnix,
}

impl Access3 {
    /// Changes what lies below the path (so the mount under it must be writable).
    pub fn writes(self) -> bool {
        matches!(self, Access3::ReadWrite | Access3::MakeDirs)
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PathRule {
    pub path: PathBuf,
    pub access: Access3,
    pub rights: Vec<String>,
    /// Where the rule came from: the profile, or a server flag.
    pub origin: String,
}

#[derive(Debug)]
pub struct LandlockPlan {
    pub rules: Vec<PathRule>,
    pub bind_tcp: Vec<u16>,
    pub connect_tcp: Vec<u16>,
    pub bind_udp: Vec<u16>,
    pub connect_udp: Vec<u16>,
    pub scopes: Vec<Feature>,
    pub features: Vec<FeatureStatus>,
    pub kernel_abi: i32,
    pub skipped_optional: Vec<PathBuf>,
    /// Rules on paths that get a fresh tmpfs in the child: added there, after the mount, because
    /// Landlock does not look at a mountpoint hidden under a new mount.
    pub deferred: Vec<(PathBuf, Access3)>,
    /// A real run only: every other rule's path, opened once here (O_PATH). Each spawn builds its
    /// own ruleset from these (`ruleset_for_spawn`), so the rules one child adds for its fresh
    /// tmpfs never reach the next one.
    pub held: Vec<(PathFd, BitFlags<AccessFs>)>,
    best_effort: Vec<Feature>,
}

impl LandlockPlan {
    pub fn missing_required(&self) -> Vec<&FeatureStatus> {
        self.features
            .iter()
            .filter(|f| f.required && !f.supported)
            .collect()
    }
    pub fn missing_best_effort(&self) -> Vec<&FeatureStatus> {
        self.features
            .iter()
            .filter(|f| !f.required && !f.supported)
            .collect()
    }
}

fn rights(access: Access3) -> BitFlags<AccessFs> {
    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    match access {
        Access3::ConnectUnix => AccessFs::ResolveUnix.into(),
        Access3::ReadOnly => read,
        Access3::ReadExec => read | AccessFs::Execute,
        Access3::MakeDirs => read | AccessFs::MakeDir | AccessFs::RemoveDir | AccessFs::RemoveFile,
        Access3::ReadWrite => {
            read | AccessFs::WriteFile
                | AccessFs::RemoveDir
                | AccessFs::RemoveFile
                | AccessFs::MakeDir
                | AccessFs::MakeReg
                | AccessFs::MakeSock
                | AccessFs::MakeFifo
                | AccessFs::MakeSym
                | AccessFs::Refer
                | AccessFs::Truncate
                | AccessFs::IoctlDev
        }
    }
}

fn right_names(access: BitFlags<AccessFs>) -> Vec<String> {
    access
        .iter()
        .map(|a| {
            let s = format!("{a:?}");
            // CamelCase → snake_case for display.
            let mut out = String::new();
            for (i, c) in s.chars().enumerate() {
                if c.is_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase());
            }
            out
        })
        .collect()
}

/// One feature's rights, handled in isolation with a hard requirement: Ok means supported.
fn probe(feature: Feature) -> bool {
    let hard = Ruleset::default().set_compatibility(CompatLevel::HardRequirement);
    let r = match feature {
        Feature::Fs => hard.handle_access(AccessFs::from_all(ABI::V1)),
        Feature::Refer => hard.handle_access(AccessFs::Refer),
        Feature::Truncate => hard.handle_access(AccessFs::Truncate),
        Feature::IoctlDev => hard.handle_access(AccessFs::IoctlDev),
        Feature::Tcp => hard.handle_access(AccessNet::from_all(ABI::V4)),
        Feature::ScopeAbstractUnix => hard.scope(Scope::AbstractUnixSocket),
        Feature::ScopeSignal => hard.scope(Scope::Signal),
        Feature::ResolveUnix => hard.handle_access(AccessFs::ResolveUnix),
        Feature::Udp => hard.handle_access(AccessNet::BindUdp | AccessNet::ConnectSendUdp),
        Feature::AuditLog => {
            return hard
                .handle_access(AccessFs::Execute)
                .and_then(|r| r.create())
                .and_then(|r| r.log_new_exec(true))
                .is_ok();
        }
    };
    r.and_then(|r| r.create()).is_ok()
}

/// Extra rules derived from server flags (e.g. Triton's model repositories).
#[derive(Debug, Default, Clone)]
pub struct ExtraRules {
    pub rules: Vec<(PathBuf, Access3, String)>,
    pub bind_tcp: Vec<u16>,
    pub connect_tcp: Vec<u16>,
}

fn feature_list(loaded: &Loaded, list: &[toml::Spanned<String>]) -> Result<Vec<Feature>> {
    list.iter()
        .map(|b| {
            Feature::from_name(b.get_ref()).ok_or_else(|| {
                let known: Vec<_> = Feature::ALL.iter().map(|f| f.name()).collect();
                loaded.err(
                    b.span(),
                    format!(
                        "unknown landlock feature '{}' (known: {})",
                        b.get_ref(),
                        known.join(", ")
                    ),
                )
            })
        })
        .collect()
}

fn ports(own: &[toml::Spanned<u16>], extra: &[u16]) -> Vec<u16> {
    let mut v: Vec<u16> = own.iter().map(|p| *p.get_ref()).collect();
    v.extend(extra);
    v.sort_unstable();
    v.dedup();
    v
}

/// Resolve the section and the extra rules; open the rule paths when `build` (a real run) and
/// build one ruleset there, so a missing required feature or a bad path fails before anything
/// starts.
pub fn prepare(
    loaded: &Loaded,
    s: &LandlockSection,
    extra: &ExtraRules,
    tmpfs_targets: &[PathBuf],
    ro_mounts: &[PathBuf],
    build: bool,
) -> Result<LandlockPlan> {
    let best_effort = feature_list(loaded, &s.best_effort)?;
    let require = feature_list(loaded, &s.require)?;
    if let Some((i, f)) = require
        .iter()
        .enumerate()
        .find(|(_, f)| best_effort.contains(f))
    {
        return Err(loaded.err(
            s.require[i].span(),
            format!(
                "landlock feature '{}' is listed in both require and best_effort",
                f.name()
            ),
        ));
    }
    let required = |f: Feature| {
        if f.abi() <= BASELINE_ABI {
            !best_effort.contains(&f)
        } else {
            require.contains(&f)
        }
    };
    let scopes = match &s.scopes {
        None => vec![Feature::ScopeAbstractUnix, Feature::ScopeSignal],
        Some(list) => list
            .iter()
            .map(|x| match x.get_ref().as_str() {
                "signal" => Ok(Feature::ScopeSignal),
                "abstract_unix_socket" => Ok(Feature::ScopeAbstractUnix),
                other => Err(loaded.err(
                    x.span(),
                    format!("unknown scope '{other}' (known: signal, abstract_unix_socket)"),
                )),
            })
            .collect::<Result<Vec<_>>>()?,
    };

    let mut rules = Vec::new();
    let mut skipped_optional = Vec::new();
    let lists = [
        (&s.read_only, Access3::ReadOnly),
        (&s.read_exec, Access3::ReadExec),
        (&s.read_write, Access3::ReadWrite),
        (&s.make_dirs, Access3::MakeDirs),
        (&s.connect_unix, Access3::ConnectUnix),
    ];
    for (list, access) in lists {
        for entry in list.iter() {
            match resolve(loaded, entry)? {
                Some(path) => rules.push((path, access, "profile".to_string())),
                None => skipped_optional.push(PathBuf::from(entry.get_ref().path())),
            }
        }
    }
    for (p, a, origin) in &extra.rules {
        let canon = std::fs::canonicalize(p).map_err(|source| Error::Missing {
            what: format!("path from {origin}"),
            path: p.clone(),
            source,
        })?;
        rules.push((canon, *a, origin.clone()));
    }
    check_writable_ancestors(loaded, s, &rules, ro_mounts)?;

    let features: Vec<FeatureStatus> = Feature::ALL
        .into_iter()
        .filter(|f| {
            !matches!(f, Feature::ScopeAbstractUnix | Feature::ScopeSignal) || scopes.contains(f)
        })
        .map(|f| FeatureStatus {
            feature: f,
            abi: f.abi(),
            required: required(f),
            supported: probe(f),
        })
        .collect();
    // Everything not required is best effort from here on.
    let best_effort: Vec<Feature> = Feature::ALL.into_iter().filter(|f| !required(*f)).collect();

    let path_rules = rules
        .iter()
        .map(|(path, access, origin)| PathRule {
            path: path.clone(),
            access: *access,
            rights: right_names(narrow(path, rights(*access))),
            origin: origin.clone(),
        })
        .collect();

    let mut plan = LandlockPlan {
        rules: path_rules,
        bind_tcp: ports(&s.bind_tcp, &extra.bind_tcp),
        connect_tcp: ports(&s.connect_tcp, &extra.connect_tcp),
        bind_udp: ports(&s.bind_udp, &[]),
        connect_udp: ports(&s.connect_udp, &[]),
        scopes,
        features,
        kernel_abi: crate::sys::landlock_abi(),
        skipped_optional,
        deferred: rules
            .iter()
            .filter(|(p, _, _)| tmpfs_targets.contains(p))
            .map(|(p, a, _)| (p.clone(), *a))
            .collect(),
        held: Vec::new(),
        best_effort,
    };
    if build {
        if let Some(missing) = plan.missing_required().first() {
            return Err(Error::Kernel(format!(
                "landlock feature '{}' (ABI {}) is required by the profile but this kernel ({}) {}; \
                 {} to run without it",
                missing.feature.name(),
                missing.abi,
                crate::sys::kernel_release(),
                match plan.kernel_abi {
                    n if n <= 0 =>
                        "has no Landlock (not built in or not enabled at boot)".to_string(),
                    n => format!("offers only ABI {n}"),
                },
                if missing.abi <= BASELINE_ABI {
                    "list it in [landlock] best_effort"
                } else {
                    "remove it from [landlock] require"
                }
            )));
        }
        for (path, access, _) in rules.iter().filter(|(p, _, _)| !tmpfs_targets.contains(p)) {
            let fd = PathFd::new(path).map_err(|e| Error::Missing {
                what: "landlock path".into(),
                path: path.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
            plan.held.push((fd, narrow(path, rights(*access))));
        }
        // Built once here only to fail early; each spawn builds its own.
        drop(plan.ruleset_for_spawn()?);
    }
    Ok(plan)
}

/// Landlock rights add up along the path, so a read-only path inside a read-write one would be
/// writable. Refuse that, unless stockade mounts the path read-only for the server.
fn check_writable_ancestors(
    loaded: &Loaded,
    s: &LandlockSection,
    rules: &[(PathBuf, Access3, String)],
    ro_mounts: &[PathBuf],
) -> Result<()> {
    for (path, access, origin) in rules {
        if access.writes() || ro_mounts.iter().any(|m| path.starts_with(m)) {
            continue;
        }
        let Some((w, wa, worigin)) = rules
            .iter()
            .find(|(w, a, _)| a.writes() && path.starts_with(w))
        else {
            continue;
        };
        let reason = format!(
            "read-only path {} ({origin}) lies inside {} path {} ({worigin}): Landlock \
             rights add up, so it would be writable; move it out, or let stockade mount it \
             read-only ([mounts], root start)",
            path.display(),
            if *wa == Access3::MakeDirs {
                "make_dirs"
            } else {
                "read-write"
            },
            w.display()
        );
        if origin == "profile" {
            let span = s
                .read_only
                .iter()
                .chain(&s.read_exec)
                .find(|e| std::fs::canonicalize(e.get_ref().path()).is_ok_and(|c| c == *path))
                .map_or(0..0, |e| e.span());
            return Err(loaded.err(span, reason));
        }
        return Err(Error::ServerFlag {
            flag: origin.clone(),
            reason,
        });
    }
    Ok(())
}

/// Directory-only rights do not apply to a file.
fn narrow(path: &Path, access: BitFlags<AccessFs>) -> BitFlags<AccessFs> {
    if path.is_dir() {
        access
    } else {
        access & AccessFs::from_file(ABI_PIN)
    }
}

fn resolve(loaded: &Loaded, entry: &PathEntry) -> Result<Option<PathBuf>> {
    let value = entry.get_ref();
    let path = Path::new(value.path());
    if !path.is_absolute() {
        return Err(loaded.err(
            entry.span(),
            format!("landlock path '{}' must be absolute", value.path()),
        ));
    }
    match std::fs::canonicalize(path) {
        Ok(c) => Ok(Some(c)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && value.optional() => Ok(None),
        Err(source) => Err(Error::Missing {
            what: format!("landlock path (at {})", loaded.at(entry.span())),
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn level(f: Feature, best_effort: &[Feature]) -> CompatLevel {
    if best_effort.contains(&f) {
        CompatLevel::BestEffort
    } else {
        CompatLevel::HardRequirement
    }
}

fn kernel_err(e: impl std::fmt::Display) -> Error {
    Error::Kernel(format!("landlock: {e}"))
}

impl LandlockPlan {
    /// A new kernel ruleset with the held rules, the ports and the scopes; called once per spawn
    /// (a ruleset fd shared across forks would collect every child's deferred rules).
    pub fn ruleset_for_spawn(&self) -> Result<RulesetCreated> {
        let be = &self.best_effort;
        let mut rs = Ruleset::default()
            .set_compatibility(level(Feature::Fs, be))
            .handle_access(AccessFs::from_all(ABI::V1))
            .and_then(|r| {
                r.set_compatibility(level(Feature::Refer, be))
                    .handle_access(AccessFs::Refer)
            })
            .and_then(|r| {
                r.set_compatibility(level(Feature::Truncate, be))
                    .handle_access(AccessFs::Truncate)
            })
            .and_then(|r| {
                r.set_compatibility(level(Feature::IoctlDev, be))
                    .handle_access(AccessFs::IoctlDev)
            })
            .and_then(|r| {
                r.set_compatibility(level(Feature::ResolveUnix, be))
                    .handle_access(AccessFs::ResolveUnix)
            })
            .and_then(|r| {
                r.set_compatibility(level(Feature::Tcp, be))
                    .handle_access(AccessNet::from_all(ABI::V4))
            })
            .and_then(|r| {
                r.set_compatibility(level(Feature::Udp, be))
                    .handle_access(AccessNet::BindUdp | AccessNet::ConnectSendUdp)
            })
            .map_err(kernel_err)?;
        for scope in &self.scopes {
            let s = match scope {
                Feature::ScopeSignal => Scope::Signal,
                _ => Scope::AbstractUnixSocket,
            };
            rs = rs
                .set_compatibility(level(*scope, be))
                .scope(s)
                .map_err(kernel_err)?;
        }
        let mut created = rs
            .create()
            .map_err(kernel_err)?
            .set_compatibility(level(Feature::AuditLog, be))
            .log_new_exec(true)
            .map_err(kernel_err)?
            // Rules only grant; a right the kernel dropped is narrower, never wider.
            .set_compatibility(CompatLevel::BestEffort);
        for (fd, access) in &self.held {
            created = created
                .add_rule(PathBeneath::new(fd, *access))
                .map_err(kernel_err)?;
        }
        let net = [
            (&self.bind_tcp, AccessNet::BindTcp),
            (&self.connect_tcp, AccessNet::ConnectTcp),
            (&self.bind_udp, AccessNet::BindUdp),
            (&self.connect_udp, AccessNet::ConnectSendUdp),
        ];
        for (list, access) in net {
            for port in list {
                created = created
                    .add_rule(NetPort::new(*port, access))
                    .map_err(kernel_err)?;
            }
        }
        Ok(created)
    }
}

/// The child's errno for a ruleset error.
pub fn errno(e: &Error) -> nix::errno::Errno {
    match e {
        Error::Missing { source, .. } => {
            nix::errno::Errno::from_raw(source.raw_os_error().unwrap_or(nix::libc::EINVAL))
        }
        _ => nix::errno::Errno::EINVAL,
    }
}

/// Child, after the private mounts: the rules for the fresh tmpfs directories.
pub fn add_deferred(
    ruleset: RulesetCreated,
    deferred: &[(PathBuf, Access3)],
) -> std::result::Result<RulesetCreated, nix::errno::Errno> {
    let mut r = ruleset;
    for (path, access) in deferred {
        let fd = PathFd::new(path).map_err(|e| crate::sys::errno_in(&e))?;
        r = r
            .add_rule(PathBeneath::new(fd, narrow(path, rights(*access))))
            .map_err(|e| crate::sys::errno_in(&e))?;
    }
    Ok(r)
}

/// Did the kernel enforce what the plan promised? (Checked in the child after restrict_self.)
pub fn status_acceptable(plan: &LandlockPlan, status: &RestrictionStatus) -> bool {
    let all_supported = plan.features.iter().all(|f| f.supported);
    let fs_required = plan
        .features
        .iter()
        .any(|f| f.feature == Feature::Fs && f.required);
    match status.ruleset {
        RulesetStatus::FullyEnforced => true,
        RulesetStatus::PartiallyEnforced => !all_supported,
        RulesetStatus::NotEnforced => !fs_required && !all_supported,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_for(read_only: &str) -> LandlockPlan {
        let src = format!(
            "version = 1\n[identity]\nuser = \"nobody\"\n[landlock]\nread_only = [{read_only}]\n\
             [seccomp]\ndefault_action = \"errno:ENOSYS\"\nallow = [\"@default\"]\n"
        );
        let loaded = crate::profile::parse("t", "t.toml", &src).unwrap();
        prepare(
            &loaded,
            &loaded.profile.landlock,
            &ExtraRules::default(),
            &[],
            &[],
            true,
        )
        .unwrap()
    }

    /// Restrict a forked child with `ruleset` and try to open `path` there: was it allowed?
    fn opens_under(ruleset: RulesetCreated, path: &Path) -> bool {
        match crate::sys::fork().unwrap() {
            nix::unistd::ForkResult::Child => {
                // Only syscalls from here: the test harness has other threads.
                let code = match ruleset.restrict_self() {
                    Ok(_) => match nix::fcntl::open(
                        path,
                        nix::fcntl::OFlag::O_RDONLY,
                        nix::sys::stat::Mode::empty(),
                    ) {
                        Ok(_) => 0,
                        Err(_) => 1,
                    },
                    Err(_) => 2,
                };
                crate::sys::exit_now(code)
            }
            nix::unistd::ForkResult::Parent { child } => {
                match nix::sys::wait::waitpid(child, None).unwrap() {
                    nix::sys::wait::WaitStatus::Exited(_, 0) => true,
                    nix::sys::wait::WaitStatus::Exited(_, 1) => false,
                    other => panic!("child: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn each_spawn_builds_a_ruleset_without_an_earlier_childs_deferred_rules() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let plan = plan_for("");
        // The first child adds a rule for its fresh tmpfs (here: the temp dir) and is allowed.
        let first = plan.ruleset_for_spawn().unwrap();
        let first = add_deferred(first, &[(dir.path().to_path_buf(), Access3::ReadOnly)]).unwrap();
        assert!(opens_under(first, &file), "the deferred rule did not apply");
        // A restart: the next child's ruleset must not hold that rule (with one ruleset kept by
        // the parent and shared across forks, it did).
        let second = plan.ruleset_for_spawn().unwrap();
        assert!(
            !opens_under(second, &file),
            "a rule from the first spawn leaked"
        );
    }

    #[test]
    fn held_rules_apply_to_every_spawn() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let plan = plan_for(&format!("\"{}\"", dir.path().display()));
        for _ in 0..2 {
            assert!(opens_under(plan.ruleset_for_spawn().unwrap(), &file));
        }
        let other = tempfile::tempdir().unwrap();
        let denied = other.path().join("g");
        std::fs::write(&denied, b"x").unwrap();
        assert!(!opens_under(plan.ruleset_for_spawn().unwrap(), &denied));
    }

    #[test]
    fn newer_features_are_best_effort_unless_required() {
        let plan = plan_for("");
        for f in &plan.features {
            assert_eq!(f.required, f.abi <= BASELINE_ABI, "{:?}", f.feature);
        }
        let src = "version = 1\n[identity]\nuser = \"nobody\"\n[landlock]\nrequire = [\"udp\"]\n\
                   best_effort = [\"udp\"]\n[seccomp]\ndefault_action = \"errno:ENOSYS\"\n\
                   allow = [\"@default\"]\n";
        let loaded = crate::profile::parse("t", "t.toml", src).unwrap();
        let err = prepare(
            &loaded,
            &loaded.profile.landlock,
            &ExtraRules::default(),
            &[],
            &[],
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("listed in both require and best_effort"),
            "{err}"
        );
    }
}
