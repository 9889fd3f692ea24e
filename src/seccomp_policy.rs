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

use crate::bpf::{Action, Check, Rule, Rules};
use crate::error::{Error, Result};
use crate::profile::{ArgCondition, ArgRule, Loaded, SeccompRule, SeccompSection};

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
            "write",
            "writev",
            "memfd_create",
        ],
    ),
    (
        // Owner metadata: Landlock does not govern it, so a server owning files under a
        // read-only path could change them. Only servers that need it opt in.
        "file-metadata",
        &[
            "chmod",
            "fchmod",
            "fchmodat",
            "fchmodat2",
            "chown",
            "fchown",
            "fchownat",
            "lchown",
            "utime",
            "utimes",
            "utimensat",
            "futimesat",
            "setxattr",
            "lsetxattr",
            "fsetxattr",
            "removexattr",
            "lremovexattr",
            "fremovexattr",
            "setxattrat",
            "removexattrat",
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

/// Answered with ENOSYS whatever the profile says: clone3 so libc falls back to clone, whose flags
/// a rule can inspect (BPF cannot read clone3's struct); io_uring so event loops (libuv, tokio,
/// liburing users) fall back to epoll: its operations bypass every syscall rule here, and killing
/// a probe of it took servers down for nothing.
const ALWAYS_ENOSYS: &[&str] = &[
    "clone3",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
];

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
    /// stockade's own argument rules, in every profile (dry run).
    pub fixed_rules: Vec<String>,
    pub allow_udp: bool,
    pub program: BpfProgram,
}

impl SeccompPlan {
    pub fn instruction_count(&self) -> usize {
        self.program.len()
    }
}

impl SeccompPlan {
    /// Does the compiled program allow `name` with these arguments (native architecture)?
    /// Asked through the BPF interpreter, so `allow_if`, `rules` and the fixed rules count.
    pub fn allows(&self, name: &str, args: [u64; 6]) -> bool {
        let Some(nr) = syscall_number(name).and_then(|n| u32::try_from(n).ok()) else {
            return false;
        };
        let d = crate::bpf_interp::Data {
            nr,
            arch: audit_arch(),
            instruction_pointer: 0,
            args,
        };
        crate::bpf_interp::run(&self.program, &d).is_ok_and(|r| r == SECCOMP_RET_ALLOW)
    }
}

const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;

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
        "EAFNOSUPPORT" => nix::libc::EAFNOSUPPORT,
        "EPROTONOSUPPORT" => nix::libc::EPROTONOSUPPORT,
        _ => return None,
    };
    u32::try_from(v).ok()
}

/// A libc constant that is a small positive number, as a seccomp errno or compare value.
const fn u(v: i32) -> u32 {
    v as u32
}

const ENOSYS: u32 = u(nix::libc::ENOSYS);
const EPERM: u32 = u(nix::libc::EPERM);
const EAFNOSUPPORT: u32 = u(nix::libc::EAFNOSUPPORT);
const EPROTONOSUPPORT: u32 = u(nix::libc::EPROTONOSUPPORT);
const EOPNOTSUPP: u32 = u(nix::libc::EOPNOTSUPP);
/// The terminal-injection requests (`_IO('T', 0x12)`, `_IO('T', 0x1C)`).
pub const TIOCSTI: u64 = 0x5412;
pub const TIOCLINUX: u64 = 0x541C;
/// sendto/sendmsg flag that connects without connect(2): Landlock's TCP connect rule misses it
/// before Linux 7.2.
pub const MSG_FASTOPEN: u64 = 0x2000_0000;

type Alternatives = Vec<Vec<Check>>;

/// `(arg & mask) == value` on the low 32 bits: how every fixed rule reads `int` arguments.
fn low(arg: u8, mask: u64, value: u64) -> Check {
    Check {
        arg,
        mask,
        value,
        low32: true,
    }
}

fn eq32(arg: u8, value: u64) -> Check {
    low(arg, 0xffff_ffff, value)
}

/// stockade's own argument rules for one syscall, in every profile that lets the syscall through
/// at all (a profile that does not allow it leaves it to the default action).
#[derive(Default)]
struct Fixed {
    /// Checked first: a match gets its errno whatever the profile says.
    deny: Vec<Rule>,
    /// If set, only calls matching one of these alternatives reach the profile's rules.
    gate: Option<Gate>,
}

struct Gate {
    pass: Alternatives,
    /// Checked (in order) for calls no alternative passed; then `fallback`.
    refuse: Vec<Rule>,
    fallback: Action,
}

/// Every combination of one value per check position.
fn product(options: &[Vec<Check>]) -> Alternatives {
    options.iter().fold(vec![Vec::new()], |acc, opts| {
        acc.iter()
            .flat_map(|prefix| {
                opts.iter().map(move |c| {
                    let mut v = prefix.clone();
                    v.push(*c);
                    v
                })
            })
            .collect()
    })
}

/// The fixed rules: no terminal injection, and egress only over plain TCP and UNIX sockets (plus
/// UDP, and NETLINK_ROUTE for getifaddrs, where the profile opts in).
fn fixed(name: &str, allow_udp: bool, allow_netlink_route: bool) -> Fixed {
    let af_unix = u64::from(u(nix::libc::AF_UNIX));
    let inet = [u(nix::libc::AF_INET), u(nix::libc::AF_INET6)].map(u64::from);
    let (stream, dgram, seqpacket) = (
        u64::from(u(nix::libc::SOCK_STREAM)),
        u64::from(u(nix::libc::SOCK_DGRAM)),
        u64::from(u(nix::libc::SOCK_SEQPACKET)),
    );
    let tcp = u64::from(u(nix::libc::IPPROTO_TCP));
    let udp = u64::from(u(nix::libc::IPPROTO_UDP));
    // socket's type carries SOCK_NONBLOCK|SOCK_CLOEXEC above the kind (the kernel masks 0xf).
    let kind = |k: u64| low(1, 0xf, k);
    let refuse = |checks: Vec<Check>, errno: u32| Rule {
        checks,
        action: Action::Errno(errno),
    };
    let fastopen = |arg: u8| Fixed {
        deny: vec![refuse(
            vec![low(arg, MSG_FASTOPEN, MSG_FASTOPEN)],
            EOPNOTSUPP,
        )],
        gate: None,
    };
    match name {
        "ioctl" => Fixed {
            deny: [TIOCSTI, TIOCLINUX]
                .map(|r| refuse(vec![eq32(1, r)], EPERM))
                .to_vec(),
            gate: None,
        },
        "socket" => {
            let mut pass = product(&[
                vec![eq32(0, af_unix)],
                vec![kind(stream), kind(dgram), kind(seqpacket)],
                vec![eq32(2, 0)],
            ]);
            let ip = inet.map(|d| eq32(0, d)).to_vec();
            pass.extend(product(&[
                ip.clone(),
                vec![kind(stream)],
                vec![eq32(2, 0), eq32(2, tcp)],
            ]));
            if allow_udp {
                pass.extend(product(&[
                    ip.clone(),
                    vec![kind(dgram)],
                    vec![eq32(2, 0), eq32(2, udp)],
                ]));
            }
            // getifaddrs(3) (libzmq's address resolver aborts without it): route queries only;
            // changing routes or links needs CAP_NET_ADMIN, which the server never has.
            let af_netlink = u64::from(u(nix::libc::AF_NETLINK));
            if allow_netlink_route {
                pass.extend(product(&[
                    vec![eq32(0, af_netlink)],
                    vec![kind(u64::from(u(nix::libc::SOCK_RAW))), kind(dgram)],
                    vec![eq32(2, u64::from(u(nix::libc::NETLINK_ROUTE)))],
                ]));
            }
            let known = std::iter::once(af_unix)
                .chain(inet)
                .chain(allow_netlink_route.then_some(af_netlink));
            Fixed {
                deny: Vec::new(),
                gate: Some(Gate {
                    pass,
                    // A family we speak with the wrong type or protocol, then any other family.
                    refuse: known
                        .map(|d| refuse(vec![eq32(0, d)], EPROTONOSUPPORT))
                        .collect(),
                    fallback: Action::Errno(EAFNOSUPPORT),
                }),
            }
        }
        "socketpair" => Fixed {
            deny: Vec::new(),
            gate: Some(Gate {
                pass: vec![vec![eq32(0, af_unix)]],
                refuse: Vec::new(),
                fallback: Action::Errno(EAFNOSUPPORT),
            }),
        },
        "sendto" | "sendmmsg" => fastopen(3),
        "sendmsg" => fastopen(2),
        _ => Fixed::default(),
    }
}

/// The syscalls `fixed` has rules for.
const FIXED_RULE_SYSCALLS: &[&str] = &[
    "ioctl",
    "socket",
    "socketpair",
    "sendto",
    "sendmsg",
    "sendmmsg",
];

/// One-line descriptions of the fixed rules, for the dry run.
pub fn fixed_rule_summary(allow_udp: bool, allow_netlink_route: bool) -> Vec<String> {
    let mut v = vec![
        "ioctl TIOCSTI/TIOCLINUX (low 32 bits): EPERM".to_string(),
        format!(
            "socket: AF_UNIX stream/dgram/seqpacket, AF_INET/AF_INET6 stream with protocol 0 or TCP{}; \
             other types/protocols EPROTONOSUPPORT, other families EAFNOSUPPORT",
            if allow_udp {
                ", dgram with protocol 0 or UDP (allow_udp)"
            } else {
                ""
            }
        ),
        "socketpair: AF_UNIX only, else EAFNOSUPPORT".to_string(),
        "sendto/sendmsg/sendmmsg with MSG_FASTOPEN: EOPNOTSUPP".to_string(),
    ];
    if allow_netlink_route {
        v.push(
            "socket: AF_NETLINK raw/dgram with NETLINK_ROUTE (allow_netlink_route: getifaddrs)"
                .to_string(),
        );
    }
    if allow_udp {
        v.push(
            "UDP ports are restricted only where the kernel has Landlock's UDP rights (ABI 10, \
             [landlock] bind_udp/connect_udp)"
                .to_string(),
        );
    }
    v
}

/// `allow_if`: conditions on one syscall are ANDed; `any_of` expands into alternatives. Compares
/// are 64-bit: an allow rule then fails closed when high bits are set.
fn arg_rules(loaded: &Loaded, rules: &[ArgRule]) -> Result<BTreeMap<String, Alternatives>> {
    let mut options: BTreeMap<String, Vec<Vec<Check>>> = BTreeMap::new();
    for r in rules {
        let name = r.syscall.get_ref().clone();
        if syscall_number(&name).is_none() {
            return Err(loaded.err(r.syscall.span(), format!("unknown syscall '{name}'")));
        }
        let arg = *r.arg.get_ref();
        if arg > 5 {
            return Err(loaded.err(r.arg.span(), format!("argument index {arg} is not 0..=5")));
        }
        let opts: Vec<Check> = match (&r.any_of, r.bits_clear) {
            (Some(values), None) if !values.is_empty() => {
                values.iter().map(|v| Check::equals(arg, *v)).collect()
            }
            (None, Some(mask)) => vec![Check::bits_clear(arg, mask, false)],
            _ => {
                return Err(loaded.err(
                    r.syscall.span(),
                    "allow_if needs exactly one of any_of (non-empty) or bits_clear",
                ));
            }
        };
        options.entry(name).or_default().push(opts);
    }
    let mut alternatives = BTreeMap::new();
    for (name, opts) in options {
        if opts.iter().map(Vec::len).product::<usize>() > 64 {
            return Err(Error::profile(
                loaded.at(0..0),
                format!("allow_if expands to more than 64 alternatives for '{name}'"),
            ));
        }
        alternatives.insert(name, product(&opts));
    }
    Ok(alternatives)
}

/// `[[seccomp.rules]]`, in order, per syscall.
fn profile_rules(
    loaded: &Loaded,
    rules: &[SeccompRule],
    default: Action,
) -> Result<BTreeMap<String, Vec<Rule>>> {
    let mut out: BTreeMap<String, Vec<Rule>> = BTreeMap::new();
    for r in rules {
        let name = r.syscall.get_ref().clone();
        if syscall_number(&name).is_none() {
            return Err(loaded.err(r.syscall.span(), format!("unknown syscall '{name}'")));
        }
        let action = match r.action.get_ref().as_str() {
            "allow" => Action::Allow,
            "kill_process" => Action::KillProcess,
            "default" => default,
            other => {
                let errno = other.strip_prefix("errno:").and_then(errno_value);
                Action::Errno(errno.ok_or_else(|| {
                    loaded.err(
                        r.action.span(),
                        format!(
                            "unknown rule action '{other}' (expected allow, kill_process, \
                             default or errno:NAME with a known errno)"
                        ),
                    )
                })?)
            }
        };
        let mut options = Vec::new();
        for c in &r.when {
            options.push(condition(loaded, c)?);
        }
        let alts = product(&options);
        if alts.len() > 64 {
            return Err(loaded.err(
                r.syscall.span(),
                format!("rule on '{name}' expands to more than 64 alternatives"),
            ));
        }
        let list = out.entry(name).or_default();
        list.extend(alts.into_iter().map(|checks| Rule { checks, action }));
    }
    Ok(out)
}

/// One `when` entry → its alternatives (more than one only for `any_of`).
fn condition(loaded: &Loaded, c: &ArgCondition) -> Result<Vec<Check>> {
    let arg = *c.arg.get_ref();
    let here = c.arg.span();
    if arg > 5 {
        return Err(loaded.err(here, format!("argument index {arg} is not 0..=5")));
    }
    let (low32, full) = match *c.width.get_ref() {
        32 => (true, 0xffff_ffffu64),
        64 => (false, u64::MAX),
        w => {
            return Err(loaded.err(
                c.width.span(),
                format!("width {w} is not 32 (an int argument) or 64"),
            ));
        }
    };
    let mask = c.mask.unwrap_or(full);
    let values: Vec<(u64, u64)> = match (&c.eq, &c.any_of, c.bits_clear, c.bits_set) {
        (Some(v), None, None, None) => vec![(mask, *v)],
        (None, Some(vs), None, None) if !vs.is_empty() => vs.iter().map(|v| (mask, *v)).collect(),
        (None, None, Some(b), None) if c.mask.is_none() => vec![(b, 0)],
        (None, None, None, Some(b)) if c.mask.is_none() => vec![(b, b)],
        _ => {
            return Err(loaded.err(
                here,
                "a condition needs exactly one of eq, any_of (non-empty), bits_clear or \
                 bits_set (mask only with eq or any_of)",
            ));
        }
    };
    let mut out = Vec::new();
    for (mask, value) in values {
        if mask & !full != 0 || value & !mask != 0 {
            return Err(loaded.err(
                here,
                format!(
                    "value {value:#x} or mask {mask:#x} has bits outside the {} compared: \
                     the condition is ambiguous",
                    if low32 { "32 bits" } else { "mask" }
                ),
            ));
        }
        out.push(Check {
            arg,
            mask,
            value,
            low32,
        });
    }
    Ok(out)
}

/// AUDIT_ARCH_* of the build target: any other architecture (i386 via `int 0x80`) is killed.
/// AUDIT_ARCH_* of the architecture stockade was built for.
pub fn native_audit_arch() -> u32 {
    audit_arch()
}

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

fn known(name: &str) -> Result<u32> {
    number_u32(name)
        .ok_or_else(|| Error::Internal(format!("syscall '{name}' has no number on this arch")))
}

/// The profile's rules for one syscall under the fixed ones.
fn compose(fixed: Fixed, profile: Vec<Rule>, otherwise: Action) -> Rules {
    let mut rules = fixed.deny;
    let Some(gate) = fixed.gate else {
        rules.extend(profile);
        return Rules { rules, otherwise };
    };
    let last = Rule {
        checks: Vec::new(),
        action: otherwise,
    };
    for pass in &gate.pass {
        for r in profile.iter().chain(std::iter::once(&last)) {
            let checks: Vec<Check> = pass.iter().chain(&r.checks).copied().collect();
            let possible = checks
                .iter()
                .enumerate()
                .all(|(i, a)| checks[i + 1..].iter().all(|b| a.compatible(b)));
            if possible {
                rules.push(Rule {
                    checks,
                    action: r.action,
                });
            }
        }
    }
    rules.extend(gate.refuse);
    Rules {
        rules,
        otherwise: gate.fallback,
    }
}

/// What the compiled program is for (`stockade learn` builds the two others).
#[derive(Debug, Clone, Default)]
pub enum FilterMode {
    /// The profile's program, as installed by a normal start.
    #[default]
    Enforce,
    /// The profile's decisions with the default answer replaced by `errno:LEARN_MARKER`, run in
    /// user space by the learner to tell "not listed" from "refused by a rule".
    Marker,
    /// Replay: calls the default would refuse, and allowed calls in `watch`, stop for the tracer
    /// (`TRACE_DEFAULT`, `TRACE_WATCH`); everything else is answered by the kernel as in Enforce.
    Verify { watch: BTreeSet<u32> },
}

/// The errno the Marker program answers for a call that only the default action refuses.
pub const LEARN_MARKER: u32 = 4095;
pub const TRACE_DEFAULT: u16 = 1;
pub const TRACE_WATCH: u16 = 2;

/// The learning filter (`bpf::learn_program`).
pub fn learn_program() -> BpfProgram {
    crate::bpf::learn_program()
}

/// `program` letting the child's exec report through to `report_fd` (`bpf::with_report_write`).
pub fn with_report_write(program: &BpfProgram, report_fd: u32) -> Result<BpfProgram> {
    Ok(crate::bpf::with_report_write(
        audit_arch(),
        known("write")?,
        report_fd,
        program,
    ))
}

/// The errno of an `errno:NAME` default action.
pub fn default_errno(plan: &SeccompPlan) -> Option<u32> {
    match &plan.default_action {
        DefaultAction::Errno(e) => errno_value(e),
        _ => None,
    }
}

/// Compile the profile's seccomp section. Pure: nothing is installed here.
pub fn compile(loaded: &Loaded, s: &SeccompSection) -> Result<SeccompPlan> {
    compile_for(loaded, s, &FilterMode::Enforce)
}

/// `compile` for one of the learner's purposes.
pub fn compile_for(loaded: &Loaded, s: &SeccompSection, mode: &FilterMode) -> Result<SeccompPlan> {
    let default_action = parse_default(loaded, &s.default_action)?;
    let default = match &default_action {
        DefaultAction::Errno(e) => Action::Errno(errno_value(e).ok_or_else(|| {
            loaded.err(s.default_action.span(), format!("unknown errno name '{e}'"))
        })?),
        DefaultAction::KillProcess => Action::KillProcess,
        DefaultAction::Log => Action::Log,
    };
    let default = match (mode, default) {
        (FilterMode::Marker, _) => Action::Errno(LEARN_MARKER),
        (FilterMode::Verify { .. }, Action::Errno(_)) => Action::Trace(TRACE_DEFAULT),
        (_, d) => d,
    };
    let mut allowed = expand(loaded, &s.allow)?;
    let conditional = arg_rules(loaded, &s.allow_if)?;
    let ruled = profile_rules(loaded, &s.rules, default)?;
    let mut killed = expand(loaded, &s.kill)?;
    let always_kill =
        group(ALWAYS_KILL).ok_or_else(|| Error::Internal(format!("no @{ALWAYS_KILL} group")))?;
    for name in always_kill {
        killed.insert((*name).to_string(), i64::from(known(name)?));
    }
    // Named explicitly, an always-ENOSYS syscall in allow or kill would be a void promise.
    for n in s.allow.iter().chain(&s.kill) {
        if ALWAYS_ENOSYS.contains(&n.get_ref().as_str()) && n.get_ref() != "clone3" {
            return Err(loaded.err(
                n.span(),
                format!(
                    "'{}' always answers ENOSYS (so event loops fall back): it can be neither \
                     allowed nor killed",
                    n.get_ref()
                ),
            ));
        }
    }
    for r in &s.rules {
        let name = r.syscall.get_ref();
        if ALWAYS_ENOSYS.contains(&name.as_str()) || killed.contains_key(name) {
            return Err(loaded.err(
                r.syscall.span(),
                format!("syscall '{name}' is in the fixed ENOSYS or kill set: no rule applies"),
            ));
        }
    }
    // A profile cannot allow what stockade always kills, nor list a syscall twice in two ways.
    for n in s.allow.iter() {
        let one = [n.get_ref().as_str()];
        let names: &[&str] = match n.get_ref().strip_prefix('@') {
            Some(g) => group(g).unwrap_or(&[]),
            None => &one,
        };
        for &name in names {
            if killed.contains_key(name) {
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
    allowed.insert("execve".into(), i64::from(known("execve")?));
    for name in ALWAYS_ENOSYS {
        allowed.remove(*name);
    }

    // One action per syscall number: kill beats everything, then the always-ENOSYS set (clone3
    // so libc falls back to clone, whose flags allow_if checks; io_uring so event loops fall
    // back to epoll), then the fixed rules over the profile's rules, allow_if and allow, then
    // the default.
    let mut actions: BTreeMap<u32, Action> = BTreeMap::new();
    let mut conditions = Vec::new();
    let mut names: BTreeSet<&String> = allowed.keys().collect();
    names.extend(conditional.keys());
    names.extend(ruled.keys());
    // A default that lets calls through (`log`) must not let the fixed refusals through.
    let fixed_names: Vec<String> = FIXED_RULE_SYSCALLS.iter().map(|n| n.to_string()).collect();
    if default == Action::Log {
        names.extend(fixed_names.iter());
    }
    let mut allowed_plain = Vec::new();
    let mut argument_checked = Vec::new();
    for name in names {
        // expand() already looked up the allowed names: a lookup is a string match over ~460
        // names, and a profile allows 150-400.
        let nr = match allowed.get(name).and_then(|n| u32::try_from(*n).ok()) {
            Some(nr) => nr,
            None => known(name)?,
        };
        let mut profile: Vec<Rule> = ruled.get(name).cloned().unwrap_or_default();
        for checks in conditional.get(name).into_iter().flatten() {
            profile.push(Rule {
                checks: checks.clone(),
                action: Action::Allow,
            });
        }
        let otherwise = if allowed.contains_key(name) {
            Action::Allow
        } else {
            default
        };
        let rules = compose(
            fixed(name, s.allow_udp, s.allow_netlink_route),
            profile,
            otherwise,
        );
        let action = if rules.rules.is_empty() {
            rules.otherwise
        } else {
            conditions.push(rules);
            Action::Conditional(conditions.len() - 1)
        };
        match action {
            Action::Allow => allowed_plain.push(name.clone()),
            Action::Conditional(_) => argument_checked.push(name.clone()),
            _ => {}
        }
        actions.insert(nr, action);
    }
    let mut enosys = Vec::new();
    for name in ALWAYS_ENOSYS {
        actions.insert(known(name)?, Action::Errno(ENOSYS));
        enosys.push((*name).to_string());
    }
    for (name, nr) in &killed {
        let nr = u32::try_from(*nr).ok().map_or_else(|| known(name), Ok)?;
        actions.insert(nr, Action::KillProcess);
    }
    if let FilterMode::Verify { watch } = mode {
        let watched = |a: &mut Action| {
            if *a == Action::Allow {
                *a = Action::Trace(TRACE_WATCH);
            }
        };
        for (nr, a) in actions.iter_mut().filter(|(nr, _)| watch.contains(nr)) {
            if let Action::Conditional(i) = *a {
                if let Some(r) = conditions.get_mut(i) {
                    r.rules.iter_mut().for_each(|r| watched(&mut r.action));
                    watched(&mut r.otherwise);
                }
            } else {
                let _ = nr;
                watched(a);
            }
        }
    }
    let program = crate::bpf::program(&crate::bpf::Policy {
        actions,
        default,
        conditions,
        arch: audit_arch(),
    })
    .map_err(|e| Error::profile(loaded.at(0..0), format!("seccomp: {e}")))?;

    Ok(SeccompPlan {
        default_action,
        allowed: allowed_plain,
        conditional: argument_checked,
        killed: killed.keys().cloned().collect(),
        enosys,
        fixed_rules: fixed_rule_summary(s.allow_udp, s.allow_netlink_route),
        allow_udp: s.allow_udp,
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

/// The kernel's seccomp audit records (`type=1326`), read from /dev/kmsg to name the syscall that
/// killed the server. Opened while stockade still holds CAP_SYSLOG (before the server starts,
/// `dmesg_restrict` needs it) and positioned at the end, so only records of this run are read.
/// Without root, or with audit off, there is no log and the message says so.
pub struct KillLog(std::fs::File);

/// One kill record: the syscall number and the AUDIT_ARCH it was made through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Killed {
    pub syscall: u32,
    pub arch: u32,
}

impl KillLog {
    pub fn open() -> Option<KillLog> {
        use std::io::Seek;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
            .open("/dev/kmsg")
            .ok()?;
        f.seek(std::io::SeekFrom::End(0)).ok()?;
        Some(KillLog(f))
    }

    pub fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.0.as_raw_fd()
    }

    /// The kill record for the server among those of `uid` that reach the log within `wait`
    /// (the kernel's audit thread writes them asynchronously). One whose pid is `pid` wins at
    /// once (the server's pid as stockade sees it is the kernel's global one only outside a PID
    /// namespace); else, at the deadline, the last one whose executable is `exe`, else the last
    /// one of the uid.
    pub fn find(
        &mut self,
        uid: u32,
        pid: Option<i32>,
        exe: &std::path::Path,
        wait: std::time::Duration,
    ) -> Option<Killed> {
        use std::io::Read;
        let end = std::time::Instant::now() + wait;
        let exe = format!("\"{}\"", exe.display());
        let (mut by_exe, mut by_uid) = (None, None);
        let mut buf = vec![0u8; 8192];
        loop {
            match self.0.read(&mut buf) {
                Ok(0) => {}
                Ok(n) => {
                    if let Some(r) = parse_kill_record(&String::from_utf8_lossy(&buf[..n]), uid) {
                        if pid.is_some_and(|p| p == r.pid) {
                            return Some(r.killed);
                        }
                        if r.exe.as_deref() == Some(exe.as_str()) {
                            by_exe = Some(r.killed);
                        }
                        by_uid = Some(r.killed);
                    }
                    continue;
                }
                // Records overwritten before we read them: carry on with the next.
                Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => continue,
                Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => break,
                Err(_) => {}
            }
            if std::time::Instant::now() >= end {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        by_exe.or(by_uid)
    }
}

impl KillLog {
    /// Every record that reaches the log within `wait` (the kernel's audit thread writes them
    /// asynchronously), as text.
    pub fn drain(&mut self, wait: std::time::Duration) -> Vec<String> {
        use std::io::Read;
        let end = std::time::Instant::now() + wait;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match self.0.read(&mut buf) {
                Ok(n) if n > 0 => {
                    out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => continue,
                Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => break,
                _ => {}
            }
            if std::time::Instant::now() >= end {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        out
    }
}

/// One seccomp kill record of the uid asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillRecord {
    pub killed: Killed,
    pub pid: i32,
    /// As the kernel wrote it: quoted, or hex when the path holds special characters.
    pub exe: Option<String>,
}

/// `audit: type=1326 ... uid=U ... pid=P ... exe="E" sig=31 arch=c000003e syscall=N ...`, if
/// it is a SIGSYS kill of `uid`.
pub fn parse_kill_record(record: &str, uid: u32) -> Option<KillRecord> {
    let text = record.split_once(';').map_or(record, |(_, t)| t);
    if !text.contains("type=1326") {
        return None;
    }
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
    };
    let sigsys = nix::libc::SIGSYS.to_string();
    if field("sig") != Some(sigsys.as_str()) || field("uid") != Some(uid.to_string().as_str()) {
        return None;
    }
    Some(KillRecord {
        killed: Killed {
            syscall: field("syscall")?.parse().ok()?,
            arch: u32::from_str_radix(field("arch")?, 16).ok()?,
        },
        pid: field("pid")?.parse().ok()?,
        exe: field("exe").map(str::to_string),
    })
}

/// The one line stockade prints when the server died of SIGSYS: which syscall, and what to
/// change in the profile.
pub fn explain_kill(plan: &SeccompPlan, killed: Option<Killed>, have_log: bool) -> String {
    let Some(k) = killed else {
        let why = if have_log {
            "no seccomp record for it reached the kernel log (audit off, an audit daemon took it, or the kernel's printk rate limit dropped it)"
        } else {
            "the kernel log (/dev/kmsg) was not readable (needs root: CAP_SYSLOG)"
        };
        return format!(
            "the server was killed by seccomp (SIGSYS), but {why}: look for `type=1326` in \
             `dmesg` or the audit log, or run with [seccomp] default_action = \"log\" to list \
             what it calls"
        );
    };
    if k.arch != audit_arch() || k.syscall & crate::bpf::X32_BIT != 0 {
        return format!(
            "the server was killed by seccomp for syscall {} of another ABI (audit arch {:#x}{}): \
             stockade kills every non-native (i386, x32) syscall; the server or a library it \
             loads must use the native ABI",
            k.syscall & !crate::bpf::X32_BIT,
            k.arch,
            if k.syscall & crate::bpf::X32_BIT != 0 {
                ", x32"
            } else {
                ""
            }
        );
    }
    let name = usize::try_from(k.syscall)
        .ok()
        .and_then(Sysno::new)
        .map_or_else(|| format!("#{}", k.syscall), |s| s.name().to_string());
    let fixed = group(ALWAYS_KILL).unwrap_or(&[]).contains(&name.as_str());
    let fix = if fixed {
        "it is in stockade's fixed kill set (@dangerous) and cannot be allowed: the server must do \
         without it"
            .to_string()
    } else if plan.killed.contains(&name) {
        format!(
            "remove '{name}' (or its @group) from [seccomp] kill in the profile if the server needs it"
        )
    } else {
        format!(
            "the profile's default_action is {}: add '{name}' to [seccomp] allow if the server \
             needs it",
            plan.default_action
        )
    };
    format!(
        "the server was killed by seccomp for the syscall '{name}' (nr {}): {fix}",
        k.syscall
    )
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
        for s in ["ptrace", "bpf", "mount", "unshare", "userfaultfd"] {
            assert!(p.killed.iter().any(|k| k == s), "{s}");
            assert_eq!(answer(&p, s, [0; 6]), KILL, "{s}");
        }
        assert_eq!(p.enosys, ALWAYS_ENOSYS.to_vec());
        assert!(!p.allowed.iter().any(|a| a == "clone3"));
        for s in ALWAYS_ENOSYS {
            assert_eq!(answer(&p, s, [0; 6]), ENOSYS, "{s}");
        }
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

    const NET: &str = "[seccomp]\ndefault_action = \"errno:ENOSYS\"\n\
        allow = [\"@default\", \"@file-read\", \"@network\"]\n";

    fn err(e: u32) -> u32 {
        0x0005_0000 | e
    }

    /// Every (domain, type, protocol) on the edges, with flag bits and junk in the high half,
    /// against the policy written out by hand.
    #[test]
    fn egress_is_plain_tcp_and_unix_only() {
        for (udp, nl) in [(false, false), (true, false), (false, true), (true, true)] {
            let src = format!("{NET}allow_udp = {udp}\nallow_netlink_route = {nl}\n");
            let p = plan(&src).unwrap();
            let families = [0u64, 1, 2, 10, 16, 17, 38, 40, 44];
            let kinds = [1u64, 2, 3, 4, 5, 6, 10];
            let flags = [0u64, 0x800, 0x80000, 0x80800];
            let protocols = [0u64, 1, 6, 17, 132, 256, 262];
            let high = [0u64, 1 << 32, 0xffff_ffff_0000_0000];
            for d in families {
                for k in kinds {
                    for f in flags {
                        for pr in protocols {
                            for h in high {
                                let args = [d | h, k | f | h, pr | h, 0, 0, 0];
                                let ip = d == 2 || d == 10;
                                let ok = (d == 1 && [1, 2, 5].contains(&k) && pr == 0)
                                    || (ip && k == 1 && (pr == 0 || pr == 6))
                                    || (udp && ip && k == 2 && (pr == 0 || pr == 17))
                                    || (nl && d == 16 && [2, 3].contains(&k) && pr == 0);
                                let want = if ok {
                                    ALLOW
                                } else if d == 1 || ip || (nl && d == 16) {
                                    err(93)
                                } else {
                                    err(97)
                                };
                                assert_eq!(answer(&p, "socket", args), want, "{args:x?}");
                            }
                        }
                    }
                }
            }
            for (d, want) in [
                (1u64, ALLOW),
                (1 | 1 << 32, ALLOW),
                (2, err(97)),
                (10, err(97)),
            ] {
                assert_eq!(answer(&p, "socketpair", [d, 2, 0, 0, 0, 0]), want);
            }
        }
        let p = plan(NET).unwrap();
        for (name, arg) in [("sendto", 3usize), ("sendmsg", 2), ("sendmmsg", 3)] {
            for (flags, want) in [
                (0u64, ALLOW),
                (0x4000, ALLOW),
                (MSG_FASTOPEN, err(95)),
                (MSG_FASTOPEN | 0x40, err(95)),
                (MSG_FASTOPEN | 1 << 32, err(95)),
                (1 << 61, ALLOW),
            ] {
                let mut args = [0u64; 6];
                args[arg] = flags;
                assert_eq!(answer(&p, name, args), want, "{name} {flags:#x}");
            }
        }
        assert!(p.fixed_rules.iter().any(|r| r.contains("TIOCSTI")));
    }

    #[test]
    fn terminal_injection_is_refused_in_every_profile() {
        for src in [
            NET.to_string(),
            "[seccomp]\ndefault_action = \"kill_process\"\nallow = [\"ioctl\"]\n".into(),
            format!(
                "{NET}[[seccomp.allow_if]]\nsyscall = \"ioctl\"\narg = 1\n\
                 any_of = [0x5412, 0x541C, 0x5413]\n"
            ),
        ] {
            let p = plan(&src).unwrap();
            for req in [
                TIOCSTI,
                TIOCLINUX,
                TIOCSTI | 1 << 32,
                TIOCLINUX | 0xffff << 48,
            ] {
                assert_eq!(
                    answer(&p, "ioctl", [0, req, 0, 0, 0, 0]),
                    err(1),
                    "{req:#x}"
                );
            }
            assert_eq!(answer(&p, "ioctl", [0, 0x5413, 0, 0, 0, 0]), ALLOW); // TIOCGWINSZ
        }
    }

    #[test]
    fn metadata_calls_are_only_in_their_own_group() {
        let meta = group("file-metadata").unwrap();
        for (g, list) in GROUPS {
            if *g != "file-metadata" {
                let both: Vec<_> = list.iter().filter(|s| meta.contains(s)).collect();
                assert!(both.is_empty(), "@{g} holds {both:?}");
            }
        }
        let p = plan("[seccomp]\ndefault_action = \"errno:ENOSYS\"\nallow = [\"@file-write\"]\n")
            .unwrap();
        for s in ["fchmod", "fchmodat2", "utimensat", "fsetxattr", "fchown"] {
            assert_eq!(answer(&p, s, [0; 6]), ENOSYS, "{s}");
        }
        let p =
            plan("[seccomp]\ndefault_action = \"errno:ENOSYS\"\nallow = [\"@file-metadata\"]\n")
                .unwrap();
        assert_eq!(answer(&p, "fchmodat2", [0; 6]), ALLOW);
    }

    #[test]
    fn io_uring_cannot_be_allowed_or_killed() {
        for list in ["allow", "kill"] {
            let e = plan(&format!(
                "[seccomp]\ndefault_action = \"errno:ENOSYS\"\nallow = []\n{list} = [\"io_uring_setup\"]\n"
            ).replace("allow = []\nallow", "allow"))
            .unwrap_err()
            .to_string();
            assert!(e.contains("always answers ENOSYS"), "{e}");
        }
    }

    /// The review's finding on the real format: 65 ANDed allow_if rules on one syscall.
    #[test]
    fn sixty_five_anded_allow_if_rules_keep_the_last_check() {
        let mut src = String::from("[seccomp]\ndefault_action = \"errno:ENOSYS\"\nallow = []\n");
        // The failing check first: its jump out has to cross all the others.
        src.push_str("[[seccomp.allow_if]]\nsyscall = \"getppid\"\narg = 1\nany_of = [0]\n");
        for _ in 0..63 {
            src.push_str("[[seccomp.allow_if]]\nsyscall = \"getppid\"\narg = 0\nany_of = [0]\n");
        }
        for _ in 0..7 {
            src.push_str(
                "[[seccomp.allow_if]]\nsyscall = \"getppid\"\narg = 0\nbits_clear = 0x100\n",
            );
        }
        let p = plan(&src).unwrap();
        assert_eq!(answer(&p, "getppid", [0; 6]), ALLOW);
        assert_eq!(answer(&p, "getppid", [0, 7, 0, 0, 0, 0]), ENOSYS);
        assert_eq!(answer(&p, "getppid", [7, 0, 0, 0, 0, 0]), ENOSYS);
        assert_eq!(answer(&p, "getppid", [0x100, 0, 0, 0, 0, 0]), ENOSYS);
    }

    #[test]
    fn rules_with_masks_widths_and_errnos() {
        let p = plan(&format!(
            "{NET}[[seccomp.rules]]\nsyscall = \"setsockopt\"\n\
             when = [{{ arg = 1, width = 32, eq = 6 }}, {{ arg = 2, width = 32, any_of = [23, 30] }}]\n\
             action = \"errno:EPERM\"\n\
             [[seccomp.rules]]\nsyscall = \"getcpu\"\nwhen = [{{ arg = 0, width = 64, mask = 0xf0, eq = 0x10 }}]\n\
             action = \"allow\"\n"
        ))
        .unwrap();
        for (args, want) in [
            ([0u64, 6, 23, 0, 0, 0], err(1)),
            ([0, 6 | 1 << 40, 30, 0, 0, 0], err(1)),
            ([0, 6, 24, 0, 0, 0], ALLOW),
            ([0, 1, 23, 0, 0, 0], ALLOW),
        ] {
            assert_eq!(answer(&p, "setsockopt", args), want, "{args:x?}");
        }
        // getcpu is not otherwise allowed: the rule allows only its match, the rest is default.
        assert_eq!(answer(&p, "getcpu", [0x1f, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(answer(&p, "getcpu", [0x2f, 0, 0, 0, 0, 0]), ENOSYS);
        assert_eq!(answer(&p, "getcpu", [0x1f | 1 << 63, 0, 0, 0, 0, 0]), ALLOW);
    }

    #[test]
    fn ambiguous_rules_are_errors() {
        let rule = |when: &str, action: &str| {
            plan(&format!(
                "{NET}[[seccomp.rules]]\nsyscall = \"ioctl\"\nwhen = [{when}]\naction = \"{action}\"\n"
            ))
            .map(drop)
            .unwrap_err()
            .to_string()
        };
        assert!(rule("{ arg = 1, eq = 1 }", "allow").contains("width"));
        assert!(rule("{ arg = 1, width = 16, eq = 1 }", "allow").contains("width 16"));
        assert!(rule("{ arg = 1, width = 32, eq = 0x100000000 }", "allow").contains("ambiguous"));
        assert!(
            rule("{ arg = 1, width = 32, mask = 0xf, eq = 0x10 }", "allow").contains("ambiguous")
        );
        assert!(
            rule("{ arg = 1, width = 32, eq = 1, bits_set = 2 }", "allow").contains("exactly one")
        );
        assert!(
            rule("{ arg = 1, width = 32, mask = 1, bits_set = 1 }", "allow")
                .contains("exactly one")
        );
        assert!(rule("{ arg = 7, width = 32, eq = 1 }", "allow").contains("0..=5"));
        assert!(
            rule("{ arg = 1, width = 32, eq = 1 }", "errno:ENOPE").contains("unknown rule action")
        );
        let e = plan(&format!(
            "{NET}[[seccomp.rules]]\nsyscall = \"ptrace\"\naction = \"allow\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("fixed ENOSYS or kill set"), "{e}");
    }

    /// `allows` answers through the compiled program: the mlserver profile leaves `connect` out
    /// (no egress by default), the triton profile allows it (stub IPC).
    #[test]
    fn allows_reads_the_compiled_program() {
        let plan_of = |name: &str| {
            let loaded =
                crate::profile::parse(name, "builtin", crate::profile::builtin(name).unwrap())
                    .unwrap();
            compile(&loaded, &loaded.profile.seccomp).unwrap()
        };
        let args = [3, 0, 16, 0, 0, 0];
        assert!(!plan_of("mlserver").allows("connect", args));
        assert!(plan_of("triton").allows("connect", args));
        assert!(plan_of("mlserver").allows("accept4", args));
        assert!(!plan_of("mlserver").allows("no_such_call", args));
    }

    /// The built-in profiles serve TCP on IPv4 and IPv6 and talk over UNIX sockets (Triton's
    /// gRPC listens on [::ffff:127.0.0.1]), and get every fixed rule.
    #[test]
    fn builtin_profiles_keep_tcp_and_unix_and_the_fixed_rules() {
        for name in ["minimal", "triton", "triton-explicit", "triton-modelmesh"] {
            let src = crate::profile::builtin(name).unwrap();
            let loaded = crate::profile::parse(name, "builtin", src).unwrap();
            let p = compile(&loaded, &loaded.profile.seccomp).unwrap();
            for (d, t, pr) in [(1u64, 0x80001u64, 0u64), (2, 0x80801, 0), (10, 0x80001, 6)] {
                assert_eq!(
                    answer(&p, "socket", [d, t, pr, 0, 0, 0]),
                    ALLOW,
                    "{name} {d}"
                );
            }
            assert_eq!(
                answer(&p, "socketpair", [1, 0x80001, 0, 0, 0, 0]),
                ALLOW,
                "{name}"
            );
            assert_eq!(answer(&p, "socket", [2, 2, 0, 0, 0, 0]), err(93), "{name}");
            assert_eq!(
                answer(&p, "ioctl", [0, TIOCSTI, 0, 0, 0, 0]),
                err(1),
                "{name}"
            );
            assert_eq!(answer(&p, "fchmod", [0; 6]), ENOSYS, "{name}");
        }
    }

    #[test]
    fn kill_records_are_read_field_by_field() {
        let r = "12,3456,652037169,-;audit: type=1326 audit(1796191249.014:2): auid=4294967295 \
                 uid=65534 gid=65534 ses=4294967295 pid=30859 comm=\"probe\" exe=\"/p\" sig=31 \
                 arch=c000003e syscall=165 compat=0 ip=0x7f31f72b1e5a code=0x80000000";
        let k = Killed {
            syscall: 165,
            arch: 0xc000_003e,
        };
        assert_eq!(
            parse_kill_record(r, 65534),
            Some(KillRecord {
                killed: k,
                pid: 30859,
                exe: Some("\"/p\"".into())
            })
        );
        // Another uid (auid is not uid), another signal, another record type.
        assert_eq!(parse_kill_record(r, 4294967295), None);
        assert_eq!(
            parse_kill_record(&r.replace("sig=31", "sig=9"), 65534),
            None
        );
        assert_eq!(parse_kill_record(&r.replace("1326", "1300"), 65534), None);
        let p = plan(NET).unwrap();
        let line = explain_kill(&p, Some(k), true);
        assert!(
            line.contains("'mount' (nr 165)") && line.contains("fixed kill set"),
            "{line}"
        );
        let line = explain_kill(&p, Some(Killed { syscall: 105, ..k }), true);
        assert!(line.contains("add 'setuid' to [seccomp] allow"), "{line}");
        assert!(explain_kill(&p, None, false).contains("not readable"));
    }

    /// Learn mode (`default_action = "log"`) lets unlisted calls through, but not the fixed
    /// refusals.
    #[test]
    fn a_log_default_keeps_the_fixed_refusals() {
        let p = plan("[seccomp]\ndefault_action = \"log\"\nallow = []\n").unwrap();
        const LOG: u32 = 0x7ffc_0000;
        assert_eq!(
            answer(&p, "ioctl", [0, TIOCSTI | 1 << 32, 0, 0, 0, 0]),
            err(1)
        );
        assert_eq!(answer(&p, "ioctl", [0, 0x5413, 0, 0, 0, 0]), LOG);
        assert_eq!(answer(&p, "socket", [2, 2, 0, 0, 0, 0]), err(93));
        assert_eq!(answer(&p, "socket", [16, 3, 0, 0, 0, 0]), err(97));
        assert_eq!(answer(&p, "socket", [2, 1, 0, 0, 0, 0]), LOG);
        assert_eq!(answer(&p, "sendto", [0, 0, 0, MSG_FASTOPEN, 0, 0]), err(95));
        assert_eq!(answer(&p, "getpid", [0; 6]), LOG);
        for name in FIXED_RULE_SYSCALLS {
            assert!(p.conditional.iter().any(|c| c == name), "{name}");
        }
    }
}
