//! The tracer: one loop over `waitpid(__WALL)` that handles every stop of every traced thread.
//!
//! Record: every syscall but the launcher's `execve` stops (PTRACE_EVENT_SECCOMP). The call is
//! counted with its architecture, classified by running the base profile's own program on it,
//! and, when the base refuses it by a rule or a kill, skipped with that errno (EPERM for a kill).
//! Calls that name a path or an address are followed to their exit (PTRACE_SYSCALL) and
//! recorded only if they succeeded, with the path the kernel resolved where there is an fd.
//!
//! Replay: the enforced filter stops only refused calls (emulated with the profile's errno) and
//! the path/address calls (their errno is read at exit): each EACCES, EPERM, EROFS or EXDEV there
//! is a denial of Landlock or a read-only mount.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use seccompiler::sock_filter;
use syscalls::Sysno;

use super::record::{Need, Record, Refusal, Verdict, arch_name, syscall_name};
use crate::seccomp_policy::{LEARN_MARKER, TRACE_DEFAULT, TRACE_WATCH};

pub use crate::plan::LearnMode as Mode;

/// One denial seen in a replay.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Denial {
    pub what: String,
    pub errno: i32,
}

/// What a call needs at its exit.
#[derive(Debug, Clone)]
enum Pending {
    /// open/openat/openat2/creat with these flags; the path as given (for a failure report).
    Open {
        flags: u64,
        path: PathBuf,
        /// It existed before the call (an O_CREAT open of it made nothing).
        existed: bool,
    },
    /// A path that must have existed (stat family, readlink, chdir).
    Seen(PathBuf),
    /// Entries made in (or removed from) these directories.
    Dirs(Vec<PathBuf>),
    /// A path written in place (truncate).
    Write(PathBuf),
    /// A replayed exec of this path.
    Exec(PathBuf),
    /// bind/connect with the decoded address.
    Net {
        bind: bool,
        addr: Addr,
        stream: bool,
    },
    /// A replayed call to report if it failed with a denial errno (or ENOENT on a path the
    /// host has).
    Watch(String, Option<((PathBuf, Need), bool)>),
    /// Nothing to record at exit.
    Nothing,
}

#[derive(Debug, Clone)]
enum Addr {
    Inet(u16),
    Unix(PathBuf),
    Abstract(Vec<u8>),
    Other,
}

pub struct Tracer {
    pub mode: Mode,
    pub rec: Record,
    pub denials: BTreeMap<Denial, u64>,
    /// Replay after learning: denials of calls that did not succeed while learning either.
    pub expected: BTreeMap<Denial, u64>,
    /// Replay after learning: what the learning run used, with the access it needed.
    pub learned: Option<BTreeMap<PathBuf, Need>>,
    /// The base (Record) or the replayed profile (Replay) with its default answer marked.
    program: Vec<sock_filter>,
    /// Syscalls the base lets through only under conditions (allow_if, rules): a call that
    /// falls to the default there is a refusal, not an unlisted call.
    conditional: BTreeSet<u64>,
    default_errno: i32,
    pending: HashMap<i32, Pending>,
    /// Every task traced so far (threads and processes), for "is this signal's target ours".
    tasks: BTreeSet<i32>,
    pub live: Arc<Mutex<BTreeSet<i32>>>,
    /// Set when the server itself has exited (the driver then stops its leftovers).
    pub server_gone: Arc<std::sync::atomic::AtomicBool>,
    server: Pid,
    pub server_status: Option<WaitStatus>,
    /// The syscalls seccomp killed a task for (read from its registers as it exits).
    pub kills: Vec<String>,
    /// The server's first exec happened (else the launcher's report says why not).
    pub server_execd: bool,
}

const AT_FDCWD: i64 = -100;

impl Tracer {
    pub fn new(
        mode: Mode,
        program: Vec<sock_filter>,
        conditional: BTreeSet<u64>,
        default_errno: i32,
        server: Pid,
    ) -> Tracer {
        let rec = Record {
            native_arch: crate::seccomp_policy::native_audit_arch(),
            ..Record::default()
        };
        let live = Arc::new(Mutex::new(BTreeSet::from([server.as_raw()])));
        Tracer {
            mode,
            rec,
            denials: BTreeMap::new(),
            expected: BTreeMap::new(),
            learned: None,
            program,
            conditional,
            default_errno,
            pending: HashMap::new(),
            tasks: BTreeSet::from([server.as_raw()]),
            live,
            server_gone: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            server,
            server_status: None,
            kills: Vec::new(),
            server_execd: false,
        }
    }

    /// Handle stops until no traced task is left.
    pub fn run(&mut self) {
        let flags = WaitPidFlag::__WALL | WaitPidFlag::__WNOTHREAD;
        loop {
            match nix::sys::wait::waitpid(None, Some(flags)) {
                Ok(s) => self.on_status(s),
                Err(Errno::EINTR) => {}
                Err(_) => break,
            }
        }
    }

    fn on_status(&mut self, s: WaitStatus) {
        match s {
            WaitStatus::PtraceEvent(pid, _, ev) => {
                self.rec.stops += 1;
                match ev {
                    nix::libc::PTRACE_EVENT_SECCOMP => self.on_seccomp(pid),
                    nix::libc::PTRACE_EVENT_EXEC => {
                        if pid == self.server {
                            self.server_execd = true;
                        }
                        // A non-leader thread's exec takes the leader's pid: its former tid is
                        // gone (and may be reused by anyone).
                        self.pending.remove(&pid.as_raw());
                        if let Ok(former) = ptrace::getevent(pid) {
                            let former = former as i32;
                            if former != pid.as_raw() {
                                self.pending.remove(&former);
                                if let Ok(mut l) = self.live.lock() {
                                    l.remove(&former);
                                }
                            }
                        }
                        if self.mode == Mode::Record {
                            if let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) {
                                self.rec.path(exe, Need::Exec, false);
                            }
                            // The kernel opens the ELF interpreter itself, without a syscall
                            // the filter could see; a fresh root without it fails the exec.
                            if let Some(interp) = elf_interp(&format!("/proc/{pid}/exe")) {
                                self.rec.path(interp, Need::Exec, false);
                            }
                        }
                        let _ = ptrace::cont(pid, None);
                    }
                    nix::libc::PTRACE_EVENT_CLONE
                    | nix::libc::PTRACE_EVENT_FORK
                    | nix::libc::PTRACE_EVENT_VFORK => {
                        if let Ok(new) = ptrace::getevent(pid) {
                            let new = new as i32;
                            self.tasks.insert(new);
                            self.rec.tasks += 1;
                            if let Ok(mut l) = self.live.lock() {
                                l.insert(new);
                            }
                        }
                        let _ = ptrace::cont(pid, None);
                    }
                    nix::libc::PTRACE_EVENT_EXIT => {
                        // A seccomp kill leaves the killing call in the registers: named here
                        // without the kernel's audit record (which a busy log can drop).
                        let status = ptrace::getevent(pid).unwrap_or(0) as i32;
                        if nix::libc::WIFSIGNALED(status)
                            && nix::libc::WTERMSIG(status) == nix::libc::SIGSYS
                        {
                            #[cfg(target_arch = "x86_64")]
                            if let Ok(regs) = ptrace::getregs(pid) {
                                self.kills.push(syscall_name(regs.orig_rax));
                            }
                        }
                        let _ = ptrace::cont(pid, None);
                    }
                    // A new task's first stop, or a group stop: let it run.
                    _ => {
                        let _ = ptrace::cont(pid, None);
                    }
                }
            }
            WaitStatus::PtraceSyscall(pid) => {
                self.rec.stops += 1;
                self.on_exit(pid);
                let _ = ptrace::cont(pid, None);
            }
            WaitStatus::Stopped(pid, sig) => {
                // A signal on its way to the tracee: deliver it.
                let _ = ptrace::cont(pid, Some(sig));
            }
            WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _) => {
                self.pending.remove(&pid.as_raw());
                if let Ok(mut l) = self.live.lock() {
                    l.remove(&pid.as_raw());
                }
                if pid == self.server {
                    self.server_status = Some(s);
                    self.server_gone
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
            _ => {}
        }
    }

    /// The base's answer for this call, from its own program.
    fn verdict(&self, info: &crate::sys::SyscallInfo) -> Verdict {
        let data = crate::bpf_interp::Data {
            nr: info.nr as u32,
            arch: info.arch,
            instruction_pointer: info.ip,
            args: info.args,
        };
        let ret = crate::bpf_interp::run(&self.program, &data).unwrap_or(0);
        match ret & 0xffff_0000 {
            0x7fff_0000 | 0x7ffc_0000 => Verdict::Allowed,
            0x0005_0000 => {
                let e = ret & 0xffff;
                if e == LEARN_MARKER && !self.conditional.contains(&info.nr) {
                    Verdict::Unlisted
                } else if e == LEARN_MARKER {
                    Verdict::Refused(self.default_errno as u32)
                } else {
                    Verdict::Refused(e)
                }
            }
            _ => Verdict::Killed,
        }
    }

    fn on_seccomp(&mut self, pid: Pid) {
        let Ok(info) = crate::sys::ptrace_syscall_info(pid.as_raw()) else {
            let _ = ptrace::cont(pid, None);
            return;
        };
        match self.mode {
            Mode::Record => self.record_entry(pid, &info),
            Mode::Replay => self.replay_entry(pid, &info),
        }
    }

    fn record_entry(&mut self, pid: Pid, info: &crate::sys::SyscallInfo) {
        let verdict = self.verdict(info);
        let native = self.rec.is_native(info.arch, info.nr);
        let u = self.rec.syscalls.entry((info.arch, info.nr)).or_default();
        u.count += 1;
        // The most permissive answer any call got: one refused call (a TIOCSTI, a netlink
        // socket) must not take away a syscall the server used legitimately.
        let rank = |v: Verdict| match v {
            Verdict::Allowed => 3,
            Verdict::Unlisted => 2,
            Verdict::Refused(_) => 1,
            Verdict::Killed => 0,
        };
        if u.verdict.is_none_or(|v| rank(verdict) > rank(v)) {
            u.verdict = Some(verdict);
        }
        let name = if native {
            syscall_name(info.nr)
        } else if info.arch == self.rec.native_arch {
            format!("x32 nr {}", info.nr & !u64::from(crate::bpf::X32_BIT))
        } else {
            format!("{} nr {}", arch_name(info.arch), info.nr)
        };
        if native {
            self.args(info);
        }
        if let Verdict::Refused(_) | Verdict::Killed = verdict {
            let detail = if native { detail(info) } else { String::new() };
            *self
                .rec
                .refusals
                .entry(Refusal {
                    arch: info.arch,
                    nr: info.nr,
                    name,
                    detail,
                    verdict,
                })
                .or_default() += 1;
            let errno = match verdict {
                Verdict::Refused(e) => e as i32,
                _ => nix::libc::EPERM,
            };
            skip(pid, errno);
            let _ = ptrace::cont(pid, None);
            return;
        }
        let pending = if native {
            self.entry(pid, info)
        } else {
            Pending::Nothing
        };
        self.follow(pid, pending);
    }

    fn replay_entry(&mut self, pid: Pid, info: &crate::sys::SyscallInfo) {
        let native = self.rec.is_native(info.arch, info.nr);
        let name = syscall_name(info.nr);
        if info.ret_data == u32::from(TRACE_DEFAULT) || !native {
            // After a learning run: a call its base refuses too is not a gap of the learned
            // profile (the program here is the base's, marked).
            let regression = self.learned.is_none() || self.verdict(info) == Verdict::Allowed;
            let d = Denial {
                what: format!("seccomp: {name} is not in the allow-list{}", detail(info)),
                errno: self.default_errno,
            };
            let into = if regression {
                &mut self.denials
            } else {
                &mut self.expected
            };
            *into.entry(d).or_default() += 1;
            skip(pid, self.default_errno);
            let _ = ptrace::cont(pid, None);
            return;
        }
        if info.ret_data == u32::from(TRACE_WATCH) {
            let pending = self.entry(pid, info);
            // A path the host has but the server's view lacks: a fresh root without its bind.
            let hidden = match &pending {
                Pending::Open { path, flags, .. } => Some((path.clone(), open_need(*flags))),
                Pending::Seen(path) => Some((path.clone(), Need::Seen)),
                Pending::Write(path) => Some((path.clone(), Need::Write)),
                Pending::Exec(path) => Some((path.clone(), Need::Exec)),
                Pending::Dirs(d) => d.first().map(|p| (p.clone(), Need::Write)),
                Pending::Net {
                    bind,
                    addr: Addr::Inet(port),
                    stream: true,
                } => Some((port_key(*bind, *port), Need::Write)),
                _ => None,
            };
            // ENOENT means "hidden" only for a path that names the object itself.
            let hidden = match &pending {
                Pending::Dirs(_) | Pending::Net { .. } => hidden.map(|h| (h, false)),
                _ => hidden.map(|h| (h, true)),
            };
            // mmap stops only for an executable mapping of a file (a shared library).
            if Sysno::new(info.nr as usize) == Some(Sysno::mmap) {
                if info.args[2] & nix::libc::PROT_EXEC as u64 == 0 || (info.args[4] as i32) < 0 {
                    let _ = ptrace::cont(pid, None);
                    return;
                }
                let lib = fd_path(pid.as_raw(), info.args[4] as i32).map(|(p, _)| p);
                let what = format!(
                    "mmap PROT_EXEC {}",
                    lib.as_ref().map_or("?".into(), |p| p.display().to_string())
                );
                self.follow(
                    pid,
                    Pending::Watch(what, lib.map(|p| ((p, Need::Exec), true))),
                );
                return;
            }
            let what = match pending {
                Pending::Open { path, .. } => format!("{name} {}", path.display()),
                Pending::Seen(p) | Pending::Write(p) | Pending::Exec(p) => {
                    format!("{name} {}", p.display())
                }
                Pending::Dirs(d) => format!(
                    "{name} in {}",
                    d.iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Pending::Net { bind, addr, stream } => format!(
                    "{} {} {}",
                    if bind { "bind" } else { "connect" },
                    if stream {
                        "tcp/unix stream"
                    } else {
                        "udp/unix dgram"
                    },
                    match addr {
                        Addr::Inet(p) => format!("port {p}"),
                        Addr::Unix(p) => p.display().to_string(),
                        Addr::Abstract(n) => format!("@{}", String::from_utf8_lossy(&n)),
                        Addr::Other => "other family".into(),
                    }
                ),
                Pending::Watch(s, _) => s,
                Pending::Nothing => format!("{name}{}", detail(info)),
            };
            self.follow(pid, Pending::Watch(what, hidden));
            return;
        }
        let _ = ptrace::cont(pid, None);
    }

    /// Stop again at the call's exit if something is to be read there.
    fn follow(&mut self, pid: Pid, p: Pending) {
        if matches!(p, Pending::Nothing) {
            let _ = ptrace::cont(pid, None);
        } else {
            self.pending.insert(pid.as_raw(), p);
            let _ = ptrace::syscall(pid, None);
        }
    }

    /// The arguments profiles can filter on.
    fn args(&mut self, info: &crate::sys::SyscallInfo) {
        let a = info.args;
        match Sysno::new(info.nr as usize) {
            Some(Sysno::socket) => {
                *self
                    .rec
                    .sockets
                    .entry((a[0] & 0xffff_ffff, a[1] & 0xf, a[2] & 0xffff_ffff))
                    .or_default() += 1
            }
            Some(Sysno::clone) => *self.rec.clone_flags.entry(a[0]).or_default() += 1,
            Some(Sysno::ioctl) => {
                *self
                    .rec
                    .ioctls
                    .entry((a[1] & 0xffff_ffff) as u32)
                    .or_default() += 1
            }
            _ => {}
        }
    }

    /// Decode what the call names, at its entry.
    fn entry(&mut self, pid: Pid, info: &crate::sys::SyscallInfo) -> Pending {
        let p = pid.as_raw();
        let a = info.args;
        let path = |addr: u64| read_cstr(p, addr);
        let at = |dirfd: u64, addr: u64| -> Option<PathBuf> {
            let s = read_cstr(p, addr)?;
            absolute(p, dirfd as i64 as i32 as i64, &s)
        };
        let cwd = AT_FDCWD as u64;
        let Some(sys) = Sysno::new(info.nr as usize) else {
            return Pending::Nothing;
        };
        use Sysno as S;
        match sys {
            S::open => at(cwd, a[0]).map_or(Pending::Nothing, |path| open(a[1], path)),
            S::creat => at(cwd, a[0]).map_or(Pending::Nothing, |path| {
                open(
                    (nix::libc::O_CREAT | nix::libc::O_WRONLY | nix::libc::O_TRUNC) as u64,
                    path,
                )
            }),
            S::openat => at(a[0], a[1]).map_or(Pending::Nothing, |path| open(a[2], path)),
            S::openat2 => {
                let flags = read_bytes(p, a[2], 8)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u64::from_le_bytes);
                at(a[0], a[1]).map_or(Pending::Nothing, |path| open(flags, path))
            }
            S::stat | S::lstat | S::access | S::readlink | S::chdir => {
                at(cwd, a[0]).map_or(Pending::Nothing, Pending::Seen)
            }
            S::newfstatat | S::statx | S::faccessat | S::faccessat2 | S::readlinkat => {
                match path(a[1]) {
                    Some(s) if !s.as_os_str().is_empty() => {
                        absolute(p, a[0] as i32 as i64, &s).map_or(Pending::Nothing, Pending::Seen)
                    }
                    _ => Pending::Nothing,
                }
            }
            S::mkdir | S::rmdir | S::unlink | S::mknod => parent_of(at(cwd, a[0])),
            S::mkdirat | S::unlinkat | S::mknodat => parent_of(at(a[0], a[1])),
            S::symlink => parent_of(at(cwd, a[1])),
            S::symlinkat => parent_of(at(a[1], a[2])),
            S::rename | S::link => dirs([at(cwd, a[0]), at(cwd, a[1])]),
            S::renameat | S::renameat2 | S::linkat => dirs([at(a[0], a[1]), at(a[2], a[3])]),
            S::truncate => at(cwd, a[0]).map_or(Pending::Nothing, Pending::Write),
            // The path as the caller named it (`/bin/sh` through the /bin symlink): a fresh root
            // needs the link; the exec event gives the file.
            S::execve | S::execveat if self.mode == Mode::Replay => {
                let named = if sys == S::execve {
                    at(cwd, a[0])
                } else {
                    at(a[0], a[1])
                };
                named.map_or(Pending::Nothing, Pending::Exec)
            }
            S::execve | S::execveat if self.mode == Mode::Record => {
                let named = if sys == S::execve {
                    at(cwd, a[0])
                } else {
                    at(a[0], a[1])
                };
                if let Some(p) = named.filter(|p| std::fs::symlink_metadata(p).is_ok()) {
                    self.rec.path(p, Need::Exec, false);
                }
                Pending::Nothing
            }
            S::bind | S::connect => {
                let addr = match read_bytes(p, a[1], (a[2] as usize).min(128))
                    .map_or(Addr::Other, |b| sockaddr(&b))
                {
                    // A relative socket path is the caller's cwd's.
                    Addr::Unix(path) => match absolute(p, AT_FDCWD, &path) {
                        Some(abs) => Addr::Unix(abs),
                        None => return Pending::Nothing,
                    },
                    Addr::Other => return Pending::Nothing,
                    other => other,
                };
                let stream = socket_is_stream(p, a[0] as i32).unwrap_or(true);
                Pending::Net {
                    bind: sys == S::bind,
                    addr,
                    stream,
                }
            }
            S::sendto if a[4] != 0 && self.mode == Mode::Record => {
                if let Some(Addr::Inet(port)) = read_bytes(p, a[4], (a[5] as usize).min(128))
                    .map(|b| sockaddr(&b))
                    .filter(|_| socket_is_stream(p, a[0] as i32) == Some(false))
                {
                    *self.rec.connect_udp.entry(port).or_default() += 1;
                }
                Pending::Nothing
            }
            S::mmap if a[2] & nix::libc::PROT_EXEC as u64 != 0 && (a[4] as i32) >= 0 => {
                if self.mode == Mode::Record {
                    if let Some((f, _)) = fd_path(p, a[4] as i32) {
                        self.rec.path(f, Need::Exec, false);
                    }
                }
                Pending::Nothing
            }
            S::ioctl if self.mode == Mode::Record => {
                if let Some((f, _)) = fd_path(p, a[0] as i32) {
                    if let Some(u) = self.rec.paths.get_mut(&f) {
                        if f.starts_with("/dev") {
                            u.ioctl = true;
                        }
                    }
                }
                Pending::Nothing
            }
            S::kill | S::tkill | S::tgkill | S::rt_sigqueueinfo | S::rt_tgsigqueueinfo
                if self.mode == Mode::Record =>
            {
                let (target, sig) = match sys {
                    S::tgkill | S::rt_tgsigqueueinfo => (a[0] as i32, a[2] as i32),
                    _ => (a[0] as i32, a[1] as i32),
                };
                let ours = match target {
                    0 => true,
                    t if t > 0 => self.tasks.contains(&t),
                    -1 => false,
                    t => -t == self.server.as_raw(),
                };
                if !ours && sig != 0 {
                    *self.rec.signals_out.entry((target, sig)).or_default() += 1;
                }
                Pending::Nothing
            }
            _ => Pending::Nothing,
        }
    }

    fn on_exit(&mut self, pid: Pid) {
        let Some(pending) = self.pending.remove(&pid.as_raw()) else {
            return;
        };
        let Ok(info) = crate::sys::ptrace_syscall_info(pid.as_raw()) else {
            return;
        };
        if info.op != crate::sys::SYSCALL_INFO_EXIT {
            return;
        }
        let err = if info.is_error {
            (-info.rval) as i32
        } else {
            0
        };
        if self.mode == Mode::Replay {
            if let Pending::Watch(what, path) = pending {
                tracing::debug!(what, err, "replayed call");
                let denied = matches!(
                    Errno::from_raw(err),
                    Errno::EACCES | Errno::EPERM | Errno::EROFS | Errno::EXDEV
                );
                let hidden = err == nix::libc::ENOENT
                    && path.as_ref().is_some_and(|((p, _), names)| {
                        *names && std::fs::symlink_metadata(p).is_ok()
                    });
                if denied || hidden {
                    // After a learning run: a call that failed there too (or did something
                    // else there) is the base's refusal, not a gap of the learned profile.
                    let regression = match (&self.learned, &path) {
                        (Some(k), Some(((p, need), _))) => k.get(p).is_some_and(|n| n >= need),
                        _ => true,
                    };
                    let d = Denial { what, errno: err };
                    if regression {
                        *self.denials.entry(d).or_default() += 1;
                    } else {
                        *self.expected.entry(d).or_default() += 1;
                    }
                }
            }
            return;
        }
        if err == nix::libc::EROFS {
            let p = match &pending {
                Pending::Open { path, .. } | Pending::Write(path) => Some(path.clone()),
                Pending::Dirs(d) => d.first().cloned(),
                _ => None,
            };
            if let Some(p) = p {
                *self.rec.read_only_writes.entry(p).or_default() += 1;
            }
        }
        let ok = !info.is_error
            || (err == nix::libc::EINPROGRESS && matches!(pending, Pending::Net { .. }));
        if !ok {
            return;
        }
        let p = pid.as_raw();
        match pending {
            Pending::Open {
                flags,
                path,
                existed,
            } => {
                let fd = info.rval;
                const O_TMPFILE: u64 = 0o20_200_000;
                if flags & O_TMPFILE == O_TMPFILE {
                    // An unnamed file in the directory given: it may be linked in there later.
                    self.rec.path(path, Need::Write, true);
                    return;
                }
                let (real, dir) = fd_path(p, fd as i32).unwrap_or((path.clone(), false));
                if real.to_string_lossy().ends_with(" (deleted)") {
                    // Gone by the time we looked: only its directory is known to the profile.
                    if let Some(parent) = path.parent() {
                        self.rec.path(parent.to_path_buf(), Need::Write, true);
                    }
                    return;
                }
                if real != path {
                    // Opened through a symlink (/etc/localtime): a fresh root needs the link as
                    // named, and its target.
                    self.rec.path(path, Need::Seen, false);
                }
                let need = open_need(flags);
                if flags & nix::libc::O_CREAT as u64 != 0 && need == Need::Write && !existed {
                    // Created (or maybe only opened): the next run may have to create it, so
                    // its directory needs the right to make files there.
                    if let Some(parent) = real.parent() {
                        self.rec.path(parent.to_path_buf(), Need::Write, true);
                    }
                }
                self.rec.path(real, need, dir);
            }
            Pending::Seen(path) => {
                let dir = std::fs::metadata(format!("/proc/{p}/root{}", path.display()))
                    .is_ok_and(|m| m.is_dir());
                // While learning the server sees the host's tree (no fresh root): resolve here.
                // Not under /proc: its magic links (/proc/<pid>/exe) lead outside the server.
                let real = (!path.starts_with("/proc")).then(|| std::fs::canonicalize(&path));
                if let Some(Ok(real)) = real {
                    if real != path {
                        self.rec.path(real, Need::Seen, dir);
                    }
                }
                self.rec.path(path, Need::Seen, dir);
            }
            Pending::Dirs(dirs) => {
                for d in dirs {
                    self.rec.path(d, Need::Write, true);
                }
            }
            Pending::Write(path) => self.rec.path(path, Need::Write, false),
            Pending::Net { bind, addr, stream } => match (addr, bind, stream) {
                (Addr::Inet(port), true, true) => *self.rec.bind_tcp.entry(port).or_default() += 1,
                (Addr::Inet(port), false, true) => {
                    *self.rec.connect_tcp.entry(port).or_default() += 1
                }
                (Addr::Inet(port), true, false) => *self.rec.bind_udp.entry(port).or_default() += 1,
                (Addr::Inet(port), false, false) => {
                    *self.rec.connect_udp.entry(port).or_default() += 1
                }
                (Addr::Unix(path), true, _) => {
                    if let Some(parent) = path.parent() {
                        self.rec.path(parent.to_path_buf(), Need::Write, true);
                    }
                }
                (Addr::Unix(path), false, _) => {
                    *self.rec.connect_unix.entry(path).or_default() += 1
                }
                (Addr::Abstract(name), true, _) => {
                    self.rec.abstract_bound.insert(name);
                }
                (Addr::Abstract(name), false, _) => {
                    *self.rec.abstract_connect.entry(name).or_default() += 1
                }
                (Addr::Other, _, _) => {}
            },
            Pending::Watch(..) | Pending::Exec(_) | Pending::Nothing => {}
        }
    }
}

/// The key a granted TCP port has among a learning run's used places (for the replay).
pub fn port_key(bind: bool, port: u16) -> PathBuf {
    PathBuf::from(format!(
        "tcp:{}:{port}",
        if bind { "bind" } else { "connect" }
    ))
}

/// Make the stopped call return `-errno` without running (x86_64: nr -1 in orig_rax).
fn skip(pid: Pid, errno: i32) {
    #[cfg(target_arch = "x86_64")]
    if let Ok(mut regs) = ptrace::getregs(pid) {
        regs.orig_rax = u64::MAX;
        regs.rax = (-i64::from(errno)) as u64;
        let _ = ptrace::setregs(pid, regs);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (pid, errno);
}

/// The argument that decides a filtered call, for reports.
fn detail(info: &crate::sys::SyscallInfo) -> String {
    let a = info.args;
    match Sysno::new(info.nr as usize) {
        Some(Sysno::socket) => format!(
            " (domain {}, type {}, protocol {})",
            a[0] & 0xffff_ffff,
            a[1] & 0xf,
            a[2] & 0xffff_ffff
        ),
        Some(Sysno::socketpair) => format!(" (domain {})", a[0] & 0xffff_ffff),
        Some(Sysno::ioctl) => format!(" (request {:#x})", a[1] & 0xffff_ffff),
        Some(Sysno::clone) => format!(" (flags {:#x})", a[0]),
        Some(Sysno::sendto | Sysno::sendmsg) => format!(" (flags {:#x})", a[3] & 0xffff_ffff),
        _ => String::new(),
    }
}

/// The access an open's flags ask for.
fn open_need(flags: u64) -> Need {
    let acc = flags & nix::libc::O_ACCMODE as u64;
    if flags & nix::libc::O_PATH as u64 != 0 {
        Need::Seen
    } else if acc != nix::libc::O_RDONLY as u64 || flags & (nix::libc::O_TRUNC as u64) != 0 {
        Need::Write
    } else {
        Need::Read
    }
}

/// An open, noting whether an O_CREAT one can create anything (the learner sees the host's
/// tree: no fresh root while learning).
fn open(flags: u64, path: PathBuf) -> Pending {
    let existed =
        flags & nix::libc::O_CREAT as u64 == 0 || std::fs::symlink_metadata(&path).is_ok();
    Pending::Open {
        flags,
        path,
        existed,
    }
}

fn parent_of(p: Option<PathBuf>) -> Pending {
    dirs([p])
}

fn dirs<const N: usize>(paths: [Option<PathBuf>; N]) -> Pending {
    let v: Vec<PathBuf> = paths
        .into_iter()
        .flatten()
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    if v.is_empty() {
        Pending::Nothing
    } else {
        Pending::Dirs(v)
    }
}

/// `name` made absolute against the tracee's cwd or `dirfd`, without following symlinks.
fn absolute(pid: i32, dirfd: i64, name: &Path) -> Option<PathBuf> {
    let joined = if name.is_absolute() {
        name.to_path_buf()
    } else {
        let base = if dirfd == AT_FDCWD {
            std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?
        } else {
            fd_path(pid, dirfd as i32)?.0
        };
        base.join(name)
    };
    Some(normalize(&joined))
}

/// `.` and `..` removed lexically.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn read_bytes(pid: i32, addr: u64, len: usize) -> Option<Vec<u8>> {
    if addr == 0 || len == 0 {
        return None;
    }
    let mut buf = vec![0u8; len];
    let remote = [nix::sys::uio::RemoteIoVec {
        base: addr as usize,
        len,
    }];
    let mut local = [std::io::IoSliceMut::new(&mut buf)];
    match nix::sys::uio::process_vm_readv(Pid::from_raw(pid), &mut local, &remote) {
        Ok(n) if n == len => Some(buf),
        _ => read_words(pid, addr, len),
    }
}

/// PTRACE_PEEKDATA, word by word: works where process_vm_readv is refused.
fn read_words(pid: i32, addr: u64, len: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(len + 8);
    let mut a = addr;
    while out.len() < len {
        let w = ptrace::read(Pid::from_raw(pid), a as ptrace::AddressType).ok()?;
        out.extend_from_slice(&w.to_ne_bytes());
        a += 8;
    }
    out.truncate(len);
    Some(out)
}

/// A NUL-terminated string of the tracee, read a page piece at a time (at most 4 KiB).
fn read_cstr(pid: i32, addr: u64) -> Option<PathBuf> {
    if addr == 0 {
        return None;
    }
    let mut out = Vec::new();
    let mut a = addr;
    while out.len() < 4096 {
        let chunk = (4096 - (a % 4096) as usize).min(256);
        let b = read_bytes(pid, a, chunk)?;
        if let Some(end) = b.iter().position(|c| *c == 0) {
            out.extend_from_slice(&b[..end]);
            return Some(PathBuf::from(std::ffi::OsStr::from_bytes(&out)));
        }
        out.extend_from_slice(&b);
        a += chunk as u64;
    }
    None
}

fn sockaddr(b: &[u8]) -> Addr {
    if b.len() < 2 {
        return Addr::Other;
    }
    let family = i32::from(u16::from_ne_bytes([b[0], b[1]]));
    match family {
        nix::libc::AF_INET | nix::libc::AF_INET6 if b.len() >= 4 => {
            Addr::Inet(u16::from_be_bytes([b[2], b[3]]))
        }
        nix::libc::AF_UNIX if b.len() > 2 => {
            let path = &b[2..];
            if path[0] == 0 {
                let name = &path[1..];
                Addr::Abstract(name.to_vec())
            } else {
                let end = path.iter().position(|c| *c == 0).unwrap_or(path.len());
                Addr::Unix(PathBuf::from(std::ffi::OsStr::from_bytes(&path[..end])))
            }
        }
        _ => Addr::Other,
    }
}

/// PT_INTERP of a 64-bit ELF file (`/lib64/ld-linux-x86-64.so.2`), as written in the file.
fn elf_interp(path: &str) -> Option<PathBuf> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = [0u8; 64];
    f.read_exact(&mut h).ok()?;
    if &h[..4] != b"\x7fELF" || h[4] != 2 {
        return None;
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u64_at = |b: &[u8], o: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(w)
    };
    let (phoff, phentsize, phnum) = (u64_at(&h, 32), u16_at(&h, 54), u16_at(&h, 56));
    if phentsize < 56 {
        return None;
    }
    for i in 0..u64::from(phnum.min(64)) {
        let mut ph = [0u8; 56];
        f.seek(SeekFrom::Start(phoff + i * u64::from(phentsize)))
            .ok()?;
        f.read_exact(&mut ph).ok()?;
        if u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]) == 3 {
            let (off, len) = (u64_at(&ph, 8), u64_at(&ph, 32).min(4096));
            let mut name = vec![0u8; usize::try_from(len).ok()?];
            f.seek(SeekFrom::Start(off)).ok()?;
            f.read_exact(&mut name).ok()?;
            let end = name.iter().position(|c| *c == 0).unwrap_or(name.len());
            return Some(PathBuf::from(std::ffi::OsStr::from_bytes(&name[..end])));
        }
    }
    None
}

/// The path of the tracee's `fd` (and whether it is a directory), through a duplicate in our
/// own fd table: /proc/<pid>/fd is 0500 and owned by the server's uid, which a root learner
/// without CAP_DAC_READ_SEARCH cannot enter, while pidfd_getfd needs only the ptrace right.
fn fd_path(pid: i32, fd: i32) -> Option<(PathBuf, bool)> {
    use std::os::fd::AsRawFd;
    let dup = crate::sys::fd_of_process(pid, fd).ok()?;
    let path = std::fs::read_link(format!("/proc/self/fd/{}", dup.as_raw_fd())).ok()?;
    let dir = nix::sys::stat::fstat(&dup)
        .is_ok_and(|st| st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFDIR);
    Some((path, dir))
}

/// Whether the tracee's socket `fd` is a stream (TCP, UNIX stream) socket.
fn socket_is_stream(pid: i32, fd: i32) -> Option<bool> {
    let dup = crate::sys::fd_of_process(pid, fd).ok()?;
    let t = nix::sys::socket::getsockopt(&dup, nix::sys::socket::sockopt::SockType).ok()?;
    Some(t == nix::sys::socket::SockType::Stream)
}
