//! What a learning run saw: syscalls per architecture with the arguments profiles can filter,
//! paths with the access each needed, ports, UNIX sockets, signals, and what the base refused.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// The access a path needed, weakest first (the profile grants the strongest seen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// Looked up only (stat, access, readlink, O_PATH): it must exist in the server's view.
    Seen,
    Read,
    /// Executed, or mapped executable (a shared library).
    Exec,
    /// Written, truncated, created or removed (a directory: entries made or removed in it).
    Write,
}

#[derive(Debug, Clone, Copy)]
pub struct PathUse {
    pub need: Need,
    pub dir: bool,
    pub count: u64,
    /// A device ioctl on a file the server opened itself (Landlock's ioctl_dev).
    pub ioctl: bool,
}

/// How the base profile's own filter answers a call (its program, run on the call's data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Allowed,
    /// Only the default action refuses it: learning may add it.
    Unlisted,
    /// A rule of the base (or stockade's fixed rules) answers this errno: kept refused.
    Refused(u32),
    /// The base kills it: kept killed; the learning run answered EPERM instead.
    Killed,
}

#[derive(Debug, Clone, Default)]
pub struct SysUse {
    pub count: u64,
    pub verdict: Option<Verdict>,
}

/// A call the base refuses, with the argument that decided it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Refusal {
    pub arch: u32,
    pub nr: u64,
    pub name: String,
    pub detail: String,
    pub verdict: Verdict,
}

#[derive(Debug, Default)]
pub struct Record {
    pub native_arch: u32,
    pub syscalls: BTreeMap<(u32, u64), SysUse>,
    pub refusals: BTreeMap<Refusal, u64>,
    /// socket(domain, type & SOCK_TYPE_MASK, protocol).
    pub sockets: BTreeMap<(u64, u64, u64), u64>,
    pub clone_flags: BTreeMap<u64, u64>,
    /// ioctl requests (low 32 bits, as the kernel reads them).
    pub ioctls: BTreeMap<u32, u64>,
    pub paths: BTreeMap<PathBuf, PathUse>,
    pub bind_tcp: BTreeMap<u16, u64>,
    pub connect_tcp: BTreeMap<u16, u64>,
    pub bind_udp: BTreeMap<u16, u64>,
    pub connect_udp: BTreeMap<u16, u64>,
    pub connect_unix: BTreeMap<PathBuf, u64>,
    pub abstract_bound: BTreeSet<Vec<u8>>,
    pub abstract_connect: BTreeMap<Vec<u8>, u64>,
    /// (target as given to kill/tgkill, signal) for targets outside the traced processes.
    pub signals_out: BTreeMap<(i32, i32), u64>,
    pub tasks: u64,
    pub stops: u64,
    /// Paths written to a place the base keeps read-only (EROFS): kept read-only.
    pub read_only_writes: BTreeMap<PathBuf, u64>,
}

impl Record {
    pub fn path(&mut self, path: PathBuf, need: Need, dir: bool) {
        let e = self.paths.entry(path).or_insert(PathUse {
            need,
            dir,
            count: 0,
            ioctl: false,
        });
        e.count += 1;
        e.need = e.need.max(need);
        e.dir |= dir;
    }

    /// A call of the architecture stockade runs (not i386, not x32: those it kills).
    pub fn is_native(&self, arch: u32, nr: u64) -> bool {
        arch == self.native_arch && nr < u64::from(crate::bpf::X32_BIT)
    }

    pub fn native_syscalls(&self) -> impl Iterator<Item = (u64, &SysUse)> {
        self.syscalls
            .iter()
            .filter(|((a, nr), _)| self.is_native(*a, *nr))
            .map(|((_, nr), u)| (*nr, u))
    }

    /// Nothing at all was seen: a failure to record, never an empty profile.
    pub fn is_empty(&self) -> bool {
        self.syscalls.is_empty()
    }
}

/// The name of a native syscall number, or `nr_N`.
pub fn syscall_name(nr: u64) -> String {
    usize::try_from(nr)
        .ok()
        .and_then(syscalls::Sysno::new)
        .map_or_else(|| format!("nr_{nr}"), |s| s.name().to_string())
}

/// The architecture's name for reports.
pub fn arch_name(arch: u32) -> &'static str {
    match arch {
        0xc000_003e => "x86_64",
        0x4000_0003 => "i386",
        0xc000_00b7 => "aarch64",
        0x4000_0028 => "arm",
        _ => "unknown",
    }
}
