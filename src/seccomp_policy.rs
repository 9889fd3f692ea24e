//! seccomp: profile → one BPF program (in the parent), installed last, in the child.
//!
//! Each syscall number gets one action: the fixed `@dangerous` set and the profile's `kill` list
//! kill the process; `clone3` answers ENOSYS so libc falls back to `clone`, whose namespace flags
//! an `allow_if` rule refuses (BPF cannot look inside clone3's struct argument); the allow-list is
//! allowed, `allow_if` syscalls only when an argument matches; everything else gets the profile's
//! default action (ENOSYS by default: see README, "Why ENOSYS"). Non-native architectures (i386
//! through `int 0x80`) and x32 syscall numbers are killed. `bpf.rs` lays the program out as a
//! binary search; every action but the argument-checked ones is constant per syscall number, so
//! the kernel's action cache answers hot syscalls without running it.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use seccompiler::BpfProgram;
use syscalls::Sysno;

use crate::bpf::{Action, Check};
use crate::error::{Error, Result};
use crate::profile::{ArgRule, Loaded, SeccompSection};

/// Named groups usable as `@name` in `allow` and `kill`.
pub const GROUPS: &[(&str, &[&str])] = &[
    (
        "default",
        &[
            "arch_prctl",
            "brk",
            "clock_getres",
            "clock_gettime",
            "clock_nanosleep",
            "exit",
            "exit_group",
            "futex",
            "getegid",
            "geteuid",
            "getgid",
            "getgroups",
            "getpid",
            "getppid",
            "getrandom",
            "getresgid",
            "getresuid",
            "gettid",
            "gettimeofday",
            "getuid",
            "madvise",
            "membarrier",
            "mmap",
            "mprotect",
            "mremap",
            "munmap",
            "nanosleep",
            "prlimit64",
            "restart_syscall",
            "rseq",
            "rt_sigaction",
            "rt_sigprocmask",
            "rt_sigreturn",
            "rt_sigtimedwait",
            "sched_getaffinity",
            "sched_yield",
            "set_robust_list",
            "set_tid_address",
            "sigaltstack",
            "sysinfo",
            "uname",
            "execve",
        ],
    ),
    (
        "file-read",
        &[
            "access",
            "close",
            "close_range",
            "dup",
            "dup2",
            "dup3",
            "faccessat",
            "faccessat2",
            "fcntl",
            "fstat",
            "fstatfs",
            "getcwd",
            "getdents64",
            "ioctl",
            "lseek",
            "lstat",
            "newfstatat",
            "open",
            "openat",
            "pread64",
            "preadv",
            "read",
            "readlink",
            "readlinkat",
            "readv",
            "stat",
            "statfs",
            "statx",
            "chdir",
            "fchdir",
        ],
    ),
    (
        "file-write",
        &[
            "fallocate",
            "fchmod",
            "fdatasync",
            "flock",
            "fsync",
            "ftruncate",
            "mkdir",
            "mkdirat",
            "pwrite64",
            "pwritev",
            "rename",
            "renameat",
            "renameat2",
            "rmdir",
            "truncate",
            "umask",
            "unlink",
            "unlinkat",
            "utimensat",
            "write",
            "writev",
            "memfd_create",
        ],
    ),
    (
        "io-event",
        &[
            "epoll_create",
            "epoll_create1",
            "epoll_ctl",
            "epoll_pwait",
            "epoll_pwait2",
            "epoll_wait",
            "eventfd2",
            "pipe",
            "pipe2",
            "poll",
            "ppoll",
            "pselect6",
            "select",
            "timerfd_create",
            "timerfd_gettime",
            "timerfd_settime",
        ],
    ),
    (
        "network",
        &[
            "accept",
            "accept4",
            "bind",
            "connect",
            "getpeername",
            "getsockname",
            "getsockopt",
            "listen",
            "recvfrom",
            "recvmmsg",
            "recvmsg",
            "sendmmsg",
            "sendmsg",
            "sendto",
            "setsockopt",
            "shutdown",
            "socket",
            "socketpair",
        ],
    ),
    (
        "process",
        &[
            "clone",
            "clone3",
            "fork",
            "vfork",
            "wait4",
            "waitid",
            "kill",
            "tgkill",
            "tkill",
            "getpgid",
            "getpgrp",
            "getsid",
            "setpgid",
            "prctl",
            "getpriority",
            "setpriority",
            "sched_getparam",
            "sched_getscheduler",
            "sched_get_priority_max",
            "sched_get_priority_min",
            "sched_setaffinity",
        ],
    ),
    (
        "setid",
        &[
            "setuid",
            "setgid",
            "setreuid",
            "setregid",
            "setresuid",
            "setresgid",
            "setgroups",
            "setfsuid",
            "setfsgid",
            "capset",
        ],
    ),
    (
        "dangerous",
        &[
            "acct",
            "add_key",
            "bpf",
            "chroot",
            "delete_module",
            "finit_module",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "init_module",
            "io_uring_enter",
            "io_uring_register",
            "io_uring_setup",
            "ioperm",
            "iopl",
            "kexec_file_load",
            "kexec_load",
            "keyctl",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_by_handle_at",
            "open_tree",
            "perf_event_open",
            "personality",
            "pivot_root",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
            "quotactl",
            "reboot",
            "request_key",
            "setns",
            "swapoff",
            "swapon",
            "umount2",
            "unshare",
            "userfaultfd",
            "uselib",
            "vhangup",
            "settimeofday",
            "clock_settime",
            "clock_adjtime",
            "adjtimex",
            "syslog",
        ],
    ),
];

/// Killed whatever the profile says: escape, kernel attack surface and cross-process access.
const ALWAYS_KILL: &str = "dangerous";

/// Answered with ENOSYS so libc falls back to a call the filter can inspect.
const ALWAYS_ENOSYS: &[&str] = &["clone3"];

/// Namespace flags a server never needs; `clone` with any of them is refused.
pub const CLONE_NAMESPACE_FLAGS: u64 = (nix::libc::CLONE_NEWNS
    | nix::libc::CLONE_NEWCGROUP
    | nix::libc::CLONE_NEWUTS
    | nix::libc::CLONE_NEWIPC
    | nix::libc::CLONE_NEWUSER
    | nix::libc::CLONE_NEWPID
    | nix::libc::CLONE_NEWNET) as u64;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "errno")]
pub enum DefaultAction {
    Errno(String),
    KillProcess,
    Log,
}

impl std::fmt::Display for DefaultAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DefaultAction::Errno(e) => write!(f, "errno:{e}"),
            DefaultAction::KillProcess => f.write_str("kill_process"),
            DefaultAction::Log => f.write_str("log"),
        }
    }
}

/// The compiled filters and what they say, for the dry run.
#[derive(Debug, Clone)]
pub struct SeccompPlan {
    pub default_action: DefaultAction,
    pub allowed: Vec<String>,
    pub conditional: Vec<String>,
    pub killed: Vec<String>,
    pub enosys: Vec<String>,
    pub program: BpfProgram,
}

impl SeccompPlan {
    pub fn instruction_count(&self) -> usize {
        self.program.len()
    }
}

fn group(name: &str) -> Option<&'static [&'static str]> {
    GROUPS.iter().find(|(n, _)| *n == name).map(|(_, l)| *l)
}

/// Expand names and `@groups` into syscall numbers, with the span of each bad name.
fn expand(loaded: &Loaded, names: &[toml::Spanned<String>]) -> Result<BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    for n in names {
        let name = n.get_ref();
        let list: Vec<&str> = match name.strip_prefix('@') {
            Some(g) => group(g)
                .ok_or_else(|| {
                    let known: Vec<_> = GROUPS.iter().map(|(n, _)| format!("@{n}")).collect();
                    loaded.err(
                        n.span(),
                        format!(
                            "unknown syscall group '{name}' (known: {})",
                            known.join(", ")
                        ),
                    )
                })?
                .to_vec(),
            None => vec![name.as_str()],
        };
        for s in list {
            let nr = syscall_number(s)
                .ok_or_else(|| loaded.err(n.span(), format!("unknown syscall '{s}'")))?;
            out.insert(s.to_string(), nr);
        }
    }
    Ok(out)
}

fn number_u32(name: &str) -> Option<u32> {
    syscall_number(name).and_then(|n| u32::try_from(n).ok())
}

pub fn syscall_number(name: &str) -> Option<i64> {
    Sysno::from_str(name).ok().map(|s| i64::from(s.id()))
}

fn parse_default(loaded: &Loaded, s: &toml::Spanned<String>) -> Result<DefaultAction> {
    let v = s.get_ref();
    match v.as_str() {
        "kill_process" => Ok(DefaultAction::KillProcess),
        "log" => Ok(DefaultAction::Log),
        _ => {
            let name = v.strip_prefix("errno:").ok_or_else(|| {
                loaded.err(
                    s.span(),
                    format!(
                        "unknown default_action '{v}' (expected errno:NAME, kill_process or log)"
                    ),
                )
            })?;
            errno_value(name)
                .map(|_| DefaultAction::Errno(name.to_string()))
                .ok_or_else(|| loaded.err(s.span(), format!("unknown errno name '{name}'")))
        }
    }
}

fn errno_value(name: &str) -> Option<u32> {
    // The few errnos a deny can sensibly answer with.
    let v = match name {
        "ENOSYS" => nix::libc::ENOSYS,
        "EPERM" => nix::libc::EPERM,
        "EACCES" => nix::libc::EACCES,
        "EINVAL" => nix::libc::EINVAL,
        "ENOTSUP" | "EOPNOTSUPP" => nix::libc::EOPNOTSUPP,
        _ => return None,
    };
    u32::try_from(v).ok()
}

type Alternatives = Vec<Vec<Check>>;

fn arg_rules(loaded: &Loaded, rules: &[ArgRule]) -> Result<BTreeMap<String, Alternatives>> {
    // Conditions on one syscall are ANDed; `any_of` expands into alternatives (OR of rules).
    let mut alternatives: BTreeMap<String, Alternatives> = BTreeMap::new();
    for r in rules {
        let name = r.syscall.get_ref().clone();
        if syscall_number(&name).is_none() {
            return Err(loaded.err(r.syscall.span(), format!("unknown syscall '{name}'")));
        }
        let arg = *r.arg.get_ref();
        if arg > 5 {
            return Err(loaded.err(r.arg.span(), format!("argument index {arg} is not 0..=5")));
        }
        let options: Vec<Check> = match (&r.any_of, r.bits_clear) {
            (Some(values), None) if !values.is_empty() => values
                .iter()
                .map(|v| Check::Equals { arg, value: *v })
                .collect(),
            (None, Some(mask)) => vec![Check::BitsClear { arg, mask }],
            _ => {
                return Err(loaded.err(
                    r.syscall.span(),
                    "allow_if needs exactly one of any_of (non-empty) or bits_clear",
                ));
            }
        };
        let entry = alternatives.entry(name).or_insert_with(|| vec![Vec::new()]);
        *entry = entry
            .iter()
            .flat_map(|prefix| {
                options.iter().map(move |c| {
                    let mut v = prefix.clone();
                    v.push(*c);
                    v
                })
            })
            .collect();
    }
    if alternatives.values().any(|a| a.len() > 64) {
        return Err(Error::profile(
            loaded.at(0..0),
            "allow_if expands to more than 64 alternatives for one syscall",
        ));
    }
    Ok(alternatives)
}

/// AUDIT_ARCH_* of the build target: any other architecture (i386 via `int 0x80`) is killed.
fn audit_arch() -> u32 {
    #[cfg(target_arch = "aarch64")]
    {
        0xc000_00b7
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        0xc000_003e
    }
}

/// Compile the profile's seccomp section. Pure: nothing is installed here.
pub fn compile(loaded: &Loaded, s: &SeccompSection) -> Result<SeccompPlan> {
    let default_action = parse_default(loaded, &s.default_action)?;
    let mut allowed = expand(loaded, &s.allow)?;
    let conditional = arg_rules(loaded, &s.allow_if)?;
    let mut killed = expand(loaded, &s.kill)?;
    for name in group(ALWAYS_KILL).unwrap_or(&[]) {
        if let Some(nr) = syscall_number(name) {
            killed.insert((*name).to_string(), nr);
        }
    }
    // A profile cannot allow what stockade always kills, nor list a syscall twice in two ways.
    for n in s.allow.iter() {
        let names: Vec<String> = match n.get_ref().strip_prefix('@') {
            Some(g) => group(g)
                .unwrap_or(&[])
                .iter()
                .map(|s| s.to_string())
                .collect(),
            None => vec![n.get_ref().clone()],
        };
        for name in names {
            if killed.contains_key(&name) {
                return Err(loaded.err(
                    n.span(),
                    format!("syscall '{name}' is in the kill set and cannot be allowed"),
                ));
            }
        }
    }
    for r in &s.allow_if {
        let name = r.syscall.get_ref();
        // Coming from a @group, the condition narrows it; named explicitly, it would be void.
        allowed.remove(name);
        if s.allow.iter().any(|a| a.get_ref() == name) {
            return Err(loaded.err(
                r.syscall.span(),
                format!("'{name}' is both in allow and allow_if: the condition would be void"),
            ));
        }
        if killed.contains_key(name) {
            return Err(loaded.err(
                r.syscall.span(),
                format!("syscall '{name}' is in the kill set and cannot be allowed"),
            ));
        }
    }
    // stockade itself ends with execve in the filtered child.
    if let Some(nr) = syscall_number("execve") {
        allowed.insert("execve".into(), nr);
    }

    // One action per syscall number: kill beats everything, clone3 answers ENOSYS so libc falls
    // back to clone (whose flags the allow_if rule checks), then allow, then the default.
    let enosys_errno = errno_value("ENOSYS").unwrap_or(38);
    let mut actions: BTreeMap<u32, Action> = BTreeMap::new();
    let mut conditions = Vec::new();
    for (name, alts) in &conditional {
        if let Some(nr) = number_u32(name) {
            actions.insert(nr, Action::Conditional(conditions.len()));
            conditions.push(alts.clone());
        }
    }
    for nr in allowed.values() {
        if let Ok(nr) = u32::try_from(*nr) {
            actions.insert(nr, Action::Allow);
        }
    }
    let mut enosys = Vec::new();
    for name in ALWAYS_ENOSYS {
        if let Some(nr) = number_u32(name) {
            allowed.remove(*name);
            actions.insert(nr, Action::Errno(enosys_errno));
            enosys.push((*name).to_string());
        }
    }
    for nr in killed.values() {
        if let Ok(nr) = u32::try_from(*nr) {
            actions.insert(nr, Action::KillProcess);
        }
    }
    let default = match &default_action {
        DefaultAction::Errno(e) => Action::Errno(errno_value(e).unwrap_or(enosys_errno)),
        DefaultAction::KillProcess => Action::KillProcess,
        DefaultAction::Log => Action::Log,
    };
    let program = crate::bpf::program(&crate::bpf::Policy {
        actions,
        default,
        conditions,
        arch: audit_arch(),
    })
    .map_err(Error::Internal)?;

    Ok(SeccompPlan {
        default_action,
        allowed: allowed.keys().cloned().collect(),
        conditional: conditional.keys().cloned().collect(),
        killed: killed.keys().cloned().collect(),
        enosys,
        program,
    })
}

/// Install the program (child, last step before exec); seccompiler sets no_new_privs first.
pub fn install(plan: &SeccompPlan) -> std::result::Result<(), nix::errno::Errno> {
    seccompiler::apply_filter(&plan.program).map_err(|e| match e {
        seccompiler::Error::Seccomp(io) | seccompiler::Error::Prctl(io) => io
            .raw_os_error()
            .map_or(nix::errno::Errno::EINVAL, nix::errno::Errno::from_raw),
        _ => nix::errno::Errno::EINVAL,
    })
}

/// Every syscall named in a group exists on this architecture.
pub fn unknown_group_members() -> BTreeSet<&'static str> {
    GROUPS
        .iter()
        .flat_map(|(_, l)| l.iter().copied())
        .filter(|n| syscall_number(n).is_none())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(src: &str) -> Result<SeccompPlan> {
        let full = format!("version = 1\n[identity]\nuser = \"nobody\"\n[landlock]\n{src}");
        let loaded = crate::profile::parse("t", "t.toml", &full)?;
        compile(&loaded, &loaded.profile.seccomp)
    }

    #[test]
    fn groups_name_only_real_syscalls() {
        assert!(
            unknown_group_members().is_empty(),
            "{:?}",
            unknown_group_members()
        );
    }

    #[test]
    fn table_matches_libc_numbers() {
        assert_eq!(syscall_number("read"), Some(nix::libc::SYS_read));
        assert_eq!(syscall_number("clone3"), Some(nix::libc::SYS_clone3));
        assert_eq!(
            syscall_number("io_uring_setup"),
            Some(nix::libc::SYS_io_uring_setup)
        );
        assert_eq!(syscall_number("nope"), None);
    }

    /// What the compiled program answers for `name` with `args` (through the BPF interpreter).
    fn answer(p: &SeccompPlan, name: &str, args: [u64; 6]) -> u32 {
        let nr = u32::try_from(syscall_number(name).unwrap()).unwrap();
        crate::bpf::tests::run(&p.program, audit_arch(), nr, args)
    }

    const ALLOW: u32 = 0x7fff_0000;
    const KILL: u32 = 0x8000_0000;
    const ENOSYS: u32 = 0x0005_0000 | 38;

    #[test]
    fn one_program_with_every_answer() {
        let p = plan(
            "[seccomp]\ndefault_action = \"errno:ENOSYS\"\nallow = [\"@default\", \"@process\"]\n\
             [[seccomp.allow_if]]\nsyscall = \"clone\"\narg = 0\nbits_clear = 0x7E020000\n",
        )
        .unwrap();
        for s in [
            "ptrace",
            "bpf",
            "mount",
            "unshare",
            "io_uring_setup",
            "userfaultfd",
        ] {
            assert!(p.killed.iter().any(|k| k == s), "{s}");
            assert_eq!(answer(&p, s, [0; 6]), KILL, "{s}");
        }
        assert_eq!(p.enosys, vec!["clone3".to_string()]);
        assert!(!p.allowed.iter().any(|a| a == "clone3"));
        assert_eq!(answer(&p, "clone3", [0; 6]), ENOSYS);
        assert_eq!(answer(&p, "getpid", [0; 6]), ALLOW);
        assert_eq!(answer(&p, "openat", [0; 6]), ENOSYS);
        // clone from @process is narrowed by allow_if: no namespace flags.
        assert_eq!(answer(&p, "clone", [0x0011_0000, 0, 0, 0, 0, 0]), ALLOW);
        let newuser = u64::try_from(nix::libc::CLONE_NEWUSER).unwrap();
        assert_eq!(answer(&p, "clone", [newuser, 0, 0, 0, 0, 0]), ENOSYS);
        // x32 and other architectures.
        let prog = &p.program;
        assert_eq!(
            crate::bpf::tests::run(prog, audit_arch(), 0x4000_0027, [0; 6]),
            KILL
        );
        assert_eq!(crate::bpf::tests::run(prog, 0x4000_0003, 20, [0; 6]), KILL);
    }

    #[test]
    fn a_kill_default_still_answers_clone3_with_enosys() {
        let k =
            plan("[seccomp]\ndefault_action = \"kill_process\"\nallow = [\"@process\"]\n").unwrap();
        assert_eq!(answer(&k, "clone3", [0; 6]), ENOSYS);
        assert_eq!(answer(&k, "openat", [0; 6]), KILL);
    }

    #[test]
    fn allowing_a_killed_syscall_is_an_error_with_position() {
        let e =
            plan("[seccomp]\ndefault_action = \"errno:ENOSYS\"\nallow = [\"read\", \"ptrace\"]\n")
                .unwrap_err()
                .to_string();
        assert!(
            e.contains("t.toml:7:") && e.contains("'ptrace' is in the kill set"),
            "{e}"
        );
    }

    #[test]
    fn unknown_names_and_actions_are_errors() {
        let e = plan("[seccomp]\ndefault_action = \"errno:ENOSYS\"\nallow = [\"reed\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown syscall 'reed'"), "{e}");
        let e = plan("[seccomp]\ndefault_action = \"errno:ENOSYS\"\nallow = [\"@nope\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown syscall group '@nope'"), "{e}");
        let e = plan("[seccomp]\ndefault_action = \"deny\"\nallow = []\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown default_action 'deny'"), "{e}");
    }
}
