//! Record → profile. The base profile is the starting point and its refusals win: a path it
//! grants more weakly stays so, its kill list, argument rules, scopes and identity are kept.
//! What it does not mention (a syscall only its default refuses, a path, a port) is added from
//! what the run used, and a base entry the run did not use is dropped (listed in a comment).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::record::{Need, Record, Verdict, syscall_name};
use crate::error::{Error, Result};
use crate::landlock_policy::Access3;
use crate::profile::{Loaded, PathValue};

/// Entries of one access under the same directory before the directory replaces them.
const COLLAPSE_AT: usize = 4;

/// Never generalised into, whatever the count: granting them would grant the system.
const TOO_WIDE: &[&str] = &[
    "/",
    "/usr",
    "/etc",
    "/opt",
    "/var",
    "/home",
    "/root",
    "/run",
    "/sys",
    "/dev",
    "/srv",
    "/mnt",
    "/media",
    "/boot",
    "/lib",
    "/lib64",
    "/bin",
    "/sbin",
    "/usr/lib",
    "/usr/local",
    "/usr/share",
];

/// Calls kept when the base allows them, seen or not. The vDSO answers the time calls in user
/// space (a fallback reaches the kernel); exit, signal return, signal delivery between threads
/// (abort, pthread_kill), sleeping, waiting, syncing and the allocator giving memory back
/// (madvise, munmap, mremap, brk: glibc trims when free memory crosses a threshold, so whether a
/// run sees them depends on timing) run on paths a short learning session rarely takes. None of them reaches a new object, so keeping them
/// costs little, where missing one breaks a server at its worst moment (shh keeps the same
/// groups for the same reason).
const KEPT_UNSEEN: &[&str] = &[
    "clock_gettime",
    "clock_getres",
    "gettimeofday",
    "time",
    "getcpu",
    "rt_sigreturn",
    "restart_syscall",
    "exit",
    "exit_group",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigtimedwait",
    "sigaltstack",
    "tgkill",
    "tkill",
    "nanosleep",
    "clock_nanosleep",
    "sched_yield",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "futex",
    "fsync",
    "fdatasync",
    "madvise",
    "munmap",
    "mremap",
    "brk",
];

/// What the caller knows about this run, for the header.
pub struct Meta {
    pub base: String,
    pub command: Vec<String>,
    pub kernel: String,
    pub landlock_abi: i32,
    pub libc: String,
    pub seconds: f64,
    pub server_status: String,
    /// Add what the base does not mention (else it is reported and left out).
    pub widen: bool,
}

pub struct Emitted {
    pub text: String,
    /// One line each, for stderr: what was added, kept refused, dropped.
    pub report: Vec<String>,
    /// Places the run used that the profile deliberately does not grant (a replay's denial
    /// there is expected).
    pub withheld: Vec<PathBuf>,
    /// TCP ports the profile (or the server's flags) grants: (bind?, port).
    pub granted_ports: Vec<(bool, u16)>,
}

fn level(need: Need) -> Access3 {
    match need {
        Need::Seen | Need::Read => Access3::ReadOnly,
        Need::Exec => Access3::ReadExec,
        Need::Write => Access3::ReadWrite,
    }
}

/// Does a grant of `have` cover a need of `want`? Writable places are noexec by design.
fn covers(have: Access3, want: Access3) -> bool {
    have == want || (want == Access3::ReadOnly && have != Access3::ConnectUnix)
}

/// One grant for two needs on the same place; none for write + execute (writable places are
/// noexec by design).
fn combine(a: Access3, b: Access3) -> Option<Access3> {
    match (a, b) {
        _ if a == b => Some(a),
        (Access3::ReadOnly, x) | (x, Access3::ReadOnly) => Some(x),
        _ => None,
    }
}

fn depth(p: &Path) -> usize {
    p.components().count().saturating_sub(1)
}

fn too_wide(p: &Path) -> bool {
    // A home directory is someone's whole account (keys, tokens, shell history).
    let home =
        (p.starts_with("/home") && depth(p) <= 2) || (p.starts_with("/root") && depth(p) <= 1);
    TOO_WIDE.iter().any(|w| Path::new(w) == p) || depth(p) < 2 || home
}

/// Where a recorded use lands in the profile.
fn target(path: &Path, need: Need, dir: bool) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None; // pipe:[…], socket:[…], anon_inode:…
    }
    if path.starts_with("/proc") {
        return Some(PathBuf::from("/proc")); // per-pid names
    }
    // Per-run names (mkstemp, mkdtemp, shm_open): whatever lies below a name directly in /tmp or
    // /dev/shm that is gone now is the shared directory's. A place there that outlived the run
    // keeps its own rule: /tmp as a whole is not granted (or made executable) for it.
    for shared in ["/tmp", "/dev/shm"] {
        if let Ok(rest) = path.strip_prefix(shared) {
            let top = rest.components().next().map(|c| Path::new(shared).join(c));
            if top.is_none_or(|t| std::fs::symlink_metadata(t).is_err()) {
                return Some(PathBuf::from(shared));
            }
        }
    }
    if need == Need::Seen && dir {
        return None; // a directory only looked up: the mounts and rules above it provide it
    }
    if path.starts_with("/dev") || dir {
        return Some(path.to_path_buf());
    }
    if need == Need::Write {
        return Some(path.to_path_buf());
    }
    match path.parent() {
        Some(parent) if !too_wide(parent) => Some(parent.to_path_buf()),
        _ => Some(path.to_path_buf()),
    }
}

fn value_path(v: &PathValue) -> (&str, bool) {
    match v {
        PathValue::Plain(p) => (p.as_str(), false),
        PathValue::Detailed(d) => (d.path.as_str(), d.optional),
    }
}

/// A comment line with every control character escaped (`\n` stays two characters).
fn one_line(line: &str) -> String {
    line.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn spanned<T>(v: T) -> Spanned<T> {
    Spanned::new(0..0, v)
}

/// Merge entries of one access under a common directory, bottom up, and drop covered ones.
fn collapse(
    mut grants: BTreeMap<PathBuf, (Access3, u64)>,
    may: impl Fn(&Path, Access3) -> bool,
) -> BTreeMap<PathBuf, (Access3, u64)> {
    for _ in 0..16 {
        let mut by_parent: BTreeMap<(PathBuf, Access3), Vec<PathBuf>> = BTreeMap::new();
        for (p, (a, _)) in &grants {
            if let Some(parent) = p.parent().filter(|q| !too_wide(q)) {
                if !p.starts_with("/dev") {
                    by_parent
                        .entry((parent.to_path_buf(), *a))
                        .or_default()
                        .push(p.clone());
                }
            }
        }
        let mut changed = false;
        for ((parent, a), children) in by_parent {
            let joined = match grants.get(&parent) {
                Some((b, _)) => combine(*b, a),
                None => Some(a),
            };
            let Some(joined) = joined else { continue };
            if children.len() >= COLLAPSE_AT && may(&parent, joined) {
                let mut n = 0;
                for c in children {
                    n += grants.remove(&c).map_or(0, |(_, k)| k);
                }
                let e = grants.entry(parent).or_insert((joined, 0));
                e.0 = joined;
                e.1 += n;
                changed = true;
            }
        }
        // Drop what an ancestor already grants.
        let all: Vec<(PathBuf, Access3)> =
            grants.iter().map(|(p, (a, _))| (p.clone(), *a)).collect();
        for (p, a) in &all {
            let covered = all
                .iter()
                .any(|(q, b)| q != p && p.starts_with(q) && covers(*b, *a));
            if covered {
                if let Some((_, n)) = grants.remove(p) {
                    if let Some(anc) = all
                        .iter()
                        .find(|(q, b)| q != p && p.starts_with(q) && covers(*b, *a))
                    {
                        if let Some(e) = grants.get_mut(&anc.0) {
                            e.1 += n;
                        }
                    }
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    grants
}

struct BaseRule {
    path: PathBuf,
    access: Access3,
    /// From the profile's lists (emitted if used) or from the server's flags (never emitted:
    /// the server kind derives it again at every start).
    entry: Option<Spanned<PathValue>>,
    used: u64,
}

pub fn profile(
    rec: &Record,
    base: &Loaded,
    plan: &crate::plan::Plan,
    meta: &Meta,
) -> Result<Emitted> {
    if rec.is_empty() {
        return Err(Error::Internal(
            "the learning run recorded no syscall at all: refusing to write an empty profile"
                .into(),
        ));
    }
    let mut report = Vec::new();
    let mut withheld: Vec<PathBuf> = Vec::new();
    let mut p = crate::profile::parse(&base.name, &base.origin, &base.source)?.profile;

    // --- paths ---
    let mut base_rules: Vec<BaseRule> = Vec::new();
    let lists = [
        (&p.landlock.read_only, Access3::ReadOnly),
        (&p.landlock.read_exec, Access3::ReadExec),
        (&p.landlock.read_write, Access3::ReadWrite),
    ];
    for (list, access) in lists {
        for e in list {
            let (path, _) = value_path(e.get_ref());
            let canon = std::fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path));
            base_rules.push(BaseRule {
                path: canon,
                access,
                entry: Some(e.clone()),
                used: 0,
            });
        }
    }
    for r in &plan.landlock.rules {
        if !base_rules
            .iter()
            .any(|b| b.path == r.path && b.access == r.access)
        {
            base_rules.push(BaseRule {
                path: r.path.clone(),
                access: r.access,
                entry: None,
                used: 0,
            });
        }
    }
    let mut wanted: BTreeMap<PathBuf, (Access3, u64)> = BTreeMap::new();
    for (path, u) in &rec.paths {
        let Some(t) = target(path, u.need, u.dir) else {
            continue;
        };
        let mut a = level(u.need);
        if u.ioctl && path.starts_with("/dev") {
            a = Access3::ReadWrite; // ioctl_dev comes with read_write
        }
        let shared = ["/proc", "/tmp", "/dev/shm"]
            .iter()
            .any(|x| t == Path::new(x));
        if a == Access3::ReadOnly && u.dir && u.need == Need::Read && too_wide(&t) && !shared {
            // A directory listing of / or /usr would grant everything beneath it.
            report.push(format!(
                "not granted: listing {} ({} times) would grant everything beneath it",
                t.display(),
                u.count
            ));
            withheld.push(path.clone());
            continue;
        }
        let e = wanted.entry(t.clone()).or_insert((a, 0));
        e.1 += u.count;
        e.0 = combine(e.0, a).unwrap_or_else(|| {
            report.push(format!(
                "not granted: executing from {} (writable places are noexec)",
                t.display()
            ));
            Access3::ReadWrite
        });
    }
    // Each place the run used: inside a base grant that covers it, it is emitted as used (the
    // base's grant is the ceiling, the learned one is narrower); under a weaker base grant it
    // stays refused; with no base entry above it, it is added beyond the base (and reported).
    let mut within: BTreeMap<PathBuf, (Access3, u64)> = BTreeMap::new();
    let mut added: BTreeMap<PathBuf, (Access3, u64)> = BTreeMap::new();
    let under = |b: &BaseRule, t: &Path, canon: &Path| {
        canon.starts_with(&b.path)
            || b.entry
                .as_ref()
                .is_some_and(|e| t.starts_with(value_path(e.get_ref()).0))
    };
    for (t, (a, n)) in wanted {
        let canon = std::fs::canonicalize(&t).unwrap_or_else(|_| t.clone());
        let mut covered = false;
        let mut by_flags = false;
        let mut weaker: Option<usize> = None;
        for (i, b) in base_rules.iter_mut().enumerate() {
            if !under(b, &t, &canon) {
                continue;
            }
            if covers(b.access, a) {
                b.used += n;
                covered = true;
                by_flags |= b.entry.is_none();
            } else {
                weaker = Some(i);
            }
        }
        if covered {
            if !by_flags {
                within.insert(t, (a, n));
            }
        } else if let Some(i) = weaker {
            withheld.push(t.clone());
            base_rules[i].used += n;
            report.push(format!(
                "kept refused: {} needs {a:?} but the base grants {:?} on {}",
                t.display(),
                base_rules[i].access,
                base_rules[i].path.display()
            ));
        } else if meta.widen {
            added.insert(t, (a, n));
        } else {
            withheld.push(t.clone());
            report.push(format!(
                "refused by the base (no rule of it covers the place): {} ({a:?}, {n} uses); \
                 --widen adds it",
                t.display()
            ));
        }
    }
    // Generalise only where the base still covers the result (within), or where no base entry
    // below would be widened (added).
    let base_view: Vec<(PathBuf, Access3)> = base_rules
        .iter()
        .map(|b| (b.path.clone(), b.access))
        .collect();
    let within = collapse(within, |parent, a| {
        let canon = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf());
        base_view
            .iter()
            .any(|(b, ba)| canon.starts_with(b) && covers(*ba, a))
    });
    let added = collapse(added, |parent, a| {
        !base_view
            .iter()
            .any(|(b, ba)| b.starts_with(parent) && !covers(*ba, a))
    });
    let mut ro = Vec::new();
    let mut rx = Vec::new();
    let mut rw = Vec::new();
    let mut coverage: Vec<String> = Vec::new();
    // stockade's own steps read /proc (capabilities are verified from /proc/self/status), and
    // /dev/null is where stdio goes under a service manager: kept as the base has them.
    for b in &base_rules {
        let keep = ["/proc", "/dev/null"]
            .iter()
            .any(|k| b.path == Path::new(k));
        if let (true, Some(e)) = (keep, &b.entry) {
            match b.access {
                Access3::ReadOnly => ro.push(e.clone()),
                Access3::ReadExec => rx.push(e.clone()),
                _ => rw.push(e.clone()),
            }
        }
        let how = match (&b.entry, b.used) {
            (None, n) => {
                format!("from the server's flags (not written: derived at every start), {n} uses")
            }
            (Some(_), 0) if keep => "base, kept for stockade's own steps".to_string(),
            (Some(_), 0) => "base, not used in this run".to_string(),
            (Some(_), n) => format!("base ceiling, {n} uses below it"),
        };
        coverage.push(format!(
            "#   {:<56} {:?}: {how}",
            b.path.display(),
            b.access
        ));
    }
    for (path, (a, n), beyond) in within
        .iter()
        .map(|(p, v)| (p, v, false))
        .chain(added.iter().map(|(p, v)| (p, v, true)))
    {
        if ro
            .iter()
            .chain(&rx)
            .chain(&rw)
            .any(|e| Path::new(value_path(e.get_ref()).0) == path)
        {
            continue;
        }
        let origin = if beyond {
            "learned, BEYOND the base"
        } else {
            "learned"
        };
        coverage.push(format!(
            "#   {:<56} {a:?}: {origin}, {n} uses",
            path.display()
        ));
        if beyond {
            report.push(format!(
                "added beyond the base: {} ({a:?}, {n} uses)",
                path.display()
            ));
        }
        let v = spanned(PathValue::Plain(path.display().to_string()));
        match a {
            Access3::ReadOnly => ro.push(v),
            Access3::ReadExec => rx.push(v),
            _ => rw.push(v),
        }
    }
    // Rights add up beneath a writable place: a read-only rule inside one would be a false
    // promise (and the profile check refuses it).
    let writable: Vec<PathBuf> = rw
        .iter()
        .map(|e| PathBuf::from(value_path(e.get_ref()).0))
        .collect();
    ro.retain(|e| {
        let p = Path::new(value_path(e.get_ref()).0);
        !writable.iter().any(|w| p != w && p.starts_with(w))
    });
    p.landlock.read_only = ro;
    p.landlock.read_exec = rx;
    p.landlock.read_write = rw;
    for (path, n) in &rec.read_only_writes {
        report.push(format!(
            "kept refused: {n} writes under a read-only mount ({}): EROFS",
            path.display()
        ));
    }

    // --- network ---
    let kind_ports = |planned: &[u16], profile: &[Spanned<u16>]| -> BTreeSet<u16> {
        planned
            .iter()
            .copied()
            .filter(|x| !profile.iter().any(|q| q.get_ref() == x))
            .collect()
    };
    let kind_bind = kind_ports(&plan.landlock.bind_tcp, &p.landlock.bind_tcp);
    let kind_connect = kind_ports(&plan.landlock.connect_tcp, &p.landlock.connect_tcp);
    let mut learned = |what: &str,
                       seen: &BTreeMap<u16, u64>,
                       kind: &BTreeSet<u16>,
                       base: &[Spanned<u16>]|
     -> Vec<Spanned<u16>> {
        let mut out = Vec::new();
        for (x, n) in seen.iter().filter(|(x, _)| !kind.contains(x)) {
            if meta.widen || base.iter().any(|b| b.get_ref() == x) {
                out.push(spanned(*x));
            } else {
                report.push(format!(
                    "refused by the base: {what} port {x} ({n} times) is not in its list; \
                     --widen adds it"
                ));
            }
        }
        out
    };
    let none = BTreeSet::new();
    let bind_tcp = learned("bind_tcp", &rec.bind_tcp, &kind_bind, &p.landlock.bind_tcp);
    let connect_tcp = learned(
        "connect_tcp",
        &rec.connect_tcp,
        &kind_connect,
        &p.landlock.connect_tcp,
    );
    let bind_udp = learned("bind_udp", &rec.bind_udp, &none, &p.landlock.bind_udp);
    let connect_udp = learned(
        "connect_udp",
        &rec.connect_udp,
        &none,
        &p.landlock.connect_udp,
    );
    let granted_ports: Vec<(bool, u16)> = bind_tcp
        .iter()
        .map(|x| (true, *x.get_ref()))
        .chain(connect_tcp.iter().map(|x| (false, *x.get_ref())))
        .chain(kind_bind.iter().map(|x| (true, *x)))
        .chain(kind_connect.iter().map(|x| (false, *x)))
        .collect();
    p.landlock.bind_tcp = bind_tcp;
    p.landlock.connect_tcp = connect_tcp;
    p.landlock.bind_udp = bind_udp;
    p.landlock.connect_udp = connect_udp;
    p.landlock.connect_unix = rec
        .connect_unix
        .keys()
        .map(|x| spanned(PathValue::Plain(x.display().to_string())))
        .collect();
    for ((target, sig), n) in &rec.signals_out {
        report.push(format!(
            "outside the server: signal {sig} to {target} ({n} times); the base's signal scope \
             {} it",
            if plan.landlock.scopes.is_empty() {
                "would allow"
            } else {
                "refuses"
            }
        ));
    }
    for (name, n) in &rec.abstract_connect {
        if !rec.abstract_bound.contains(name) {
            report.push(format!(
                "outside the server: abstract UNIX socket @{} connected {n} times; the \
                 abstract_unix_socket scope refuses it if the base has it",
                String::from_utf8_lossy(name)
            ));
        }
    }

    // --- syscalls ---
    let conditional: BTreeSet<String> = p
        .seccomp
        .allow_if
        .iter()
        .map(|r| r.syscall.get_ref().clone())
        .chain(p.seccomp.rules.iter().map(|r| r.syscall.get_ref().clone()))
        .collect();
    let killed: BTreeSet<String> = p.seccomp.kill.iter().map(|k| k.get_ref().clone()).collect();
    let never = [
        "clone3",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
    ];
    let mut allow: BTreeMap<String, u64> = BTreeMap::new();
    let mut unlisted = Vec::new();
    for (nr, u) in rec.native_syscalls() {
        let name = syscall_name(nr);
        match u.verdict {
            Some(Verdict::Allowed) | Some(Verdict::Unlisted) => {}
            _ => continue,
        }
        if conditional.contains(&name) || killed.contains(&name) || never.contains(&name.as_str()) {
            continue;
        }
        if u.verdict == Some(Verdict::Unlisted) {
            unlisted.push(format!("{name} ({})", u.count));
            if !meta.widen {
                continue;
            }
        }
        allow.insert(name, u.count);
    }
    for name in KEPT_UNSEEN {
        if meta.widen || plan.seccomp.allowed.iter().any(|a| a == name) {
            allow.entry((*name).to_string()).or_insert(0);
        }
    }
    if !unlisted.is_empty() {
        report.push(if meta.widen {
            format!(
                "added beyond the base's allow-list (its default refused them): {}",
                unlisted.join(", ")
            )
        } else {
            format!(
                "refused by the base (not in its allow-list; --widen adds them): {}",
                unlisted.join(", ")
            )
        });
    }
    for (r, n) in &rec.refusals {
        report.push(format!(
            "kept refused: {}{} ({n} calls) — the base {}",
            r.name,
            r.detail,
            match r.verdict {
                Verdict::Killed => "kills it (answered EPERM while learning)".to_string(),
                Verdict::Refused(e) => format!("answers errno {e}"),
                _ => String::new(),
            }
        ));
    }
    let mut sys_cov: Vec<String> = allow
        .iter()
        .map(|(n, c)| {
            if *c == 0 {
                format!("#   {n:<24} not seen: kept (vDSO, exit, signal, wait or sync path)")
            } else {
                format!("#   {n:<24} {c}")
            }
        })
        .collect();
    for nr_use in rec
        .syscalls
        .iter()
        .filter(|((a, nr), _)| !rec.is_native(*a, *nr))
    {
        let ((a, nr), u) = nr_use;
        sys_cov.push(format!(
            "#   {} syscall {} ({} calls): stockade kills every non-native call",
            super::record::arch_name(*a),
            nr & !u64::from(crate::bpf::X32_BIT),
            u.count
        ));
    }
    p.seccomp.allow = allow.keys().map(|n| spanned(n.clone())).collect();
    p.description = format!(
        "learned by stockade learn from {} for {}",
        meta.base,
        meta.command.first().map_or("", String::as_str)
    );

    let body = crate::profile::render(&p).map_err(Error::Internal)?;
    let mut arg_lines = Vec::new();
    for ((d, t, pr), n) in &rec.sockets {
        arg_lines.push(format!(
            "#   socket(domain {d}, type {t}, protocol {pr}): {n}"
        ));
    }
    for (f, n) in &rec.clone_flags {
        arg_lines.push(format!("#   clone(flags {f:#x}): {n}"));
    }
    for (r, n) in &rec.ioctls {
        arg_lines.push(format!("#   ioctl(request {r:#x}): {n}"));
    }
    let newer = |what: &str, abi: u8, list_empty: bool| {
        (!list_empty).then(|| {
            format!(
                "# {what} needs Landlock ABI {abi} (this kernel: {}): enforced only where the \
                 kernel has it (best effort unless listed in landlock.require)",
                meta.landlock_abi
            )
        })
    };
    let abi_notes: Vec<String> = [
        newer(
            "bind_udp/connect_udp",
            10,
            p.landlock.bind_udp.is_empty() && p.landlock.connect_udp.is_empty(),
        ),
        newer("connect_unix", 9, p.landlock.connect_unix.is_empty()),
    ]
    .into_iter()
    .flatten()
    .collect();

    // Every comment line goes through `comment`: a path or an argument the server chose may hold
    // a newline, which would otherwise start a TOML line of its choosing.
    let mut text = String::new();
    let mut comment = |line: &str| {
        text.push_str(&one_line(line));
        text.push('\n');
    };
    comment("# Written by `stockade learn`. Review it before use; replay it with");
    comment("# `stockade learn --replay THIS.toml -- SERVER…` to list what it still denies.");
    comment(&format!("# base profile:   {}", meta.base));
    comment(&format!("# server:         {}", meta.command.join(" ")));
    comment(&format!(
        "# recorded on:    {}, Landlock ABI {}, {}",
        meta.kernel, meta.landlock_abi, meta.libc
    ));
    comment(&format!(
        "# run:            {:.1} s, {} tasks, {} stops, server {}",
        meta.seconds,
        rec.tasks + 1,
        rec.stops,
        meta.server_status
    ));
    comment("# The base's refusals are kept (a path it grants more weakly, its kill list, its");
    comment("# argument rules and scopes); only what it does not mention was added.");
    for l in &abi_notes {
        comment(l);
    }
    for l in &report {
        comment(&format!("#  - {l}"));
    }
    comment("#");
    let mut body_text = String::new();
    for line in body.lines() {
        if line == "[landlock]" {
            body_text.push_str(
                "# Coverage: every path rule, where it came from, and how often it was used.\n",
            );
            for c in &coverage {
                body_text.push_str(&one_line(c));
                body_text.push('\n');
            }
        }
        if line == "[seccomp]" {
            body_text
                .push_str("# Coverage: calls per syscall in this run (native architecture).\n");
            for c in &sys_cov {
                body_text.push_str(&one_line(c));
                body_text.push('\n');
            }
            if !arg_lines.is_empty() {
                body_text.push_str("# Arguments seen (for allow_if / rules):\n");
                for c in &arg_lines {
                    body_text.push_str(&one_line(c));
                    body_text.push('\n');
                }
            }
        }
        body_text.push_str(line);
        body_text.push('\n');
    }
    text.push_str(&body_text);
    // The result must load like any profile.
    crate::profile::parse("learned", "learned profile", &text)?;
    Ok(Emitted {
        text,
        report,
        withheld,
        granted_ports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comment_cannot_start_a_toml_line() {
        assert_eq!(
            one_line("#   /x\n[capabilities]\nkeep = [\"CAP_SYS_ADMIN\"]"),
            "#   /x\\n[capabilities]\\nkeep = [\"CAP_SYS_ADMIN\"]"
        );
    }

    #[test]
    fn collapse_stays_within_what_may_be_granted() {
        let g: BTreeMap<PathBuf, (Access3, u64)> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| {
                (
                    PathBuf::from(format!("/opt/app/lib/{n}")),
                    (Access3::ReadOnly, 1),
                )
            })
            .collect();
        let all = collapse(g.clone(), |_, _| true);
        assert_eq!(all.keys().collect::<Vec<_>>(), [Path::new("/opt/app/lib")]);
        let none = collapse(g, |_, _| false);
        assert_eq!(none.len(), 4);
        // Never into a directory too wide to grant, whatever the count.
        let wide: BTreeMap<PathBuf, (Access3, u64)> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|n| (PathBuf::from(format!("/etc/{n}")), (Access3::ReadOnly, 1)))
            .collect();
        assert_eq!(collapse(wide, |_, _| true).len(), 5);
    }

    #[test]
    fn read_exec_and_write_do_not_combine() {
        assert_eq!(
            combine(Access3::ReadOnly, Access3::ReadExec),
            Some(Access3::ReadExec)
        );
        assert_eq!(
            combine(Access3::ReadWrite, Access3::ReadOnly),
            Some(Access3::ReadWrite)
        );
        assert_eq!(combine(Access3::ReadExec, Access3::ReadWrite), None);
    }
}
