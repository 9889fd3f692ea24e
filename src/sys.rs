//! The only module with `unsafe`: calls that nix, caps, landlock and seccompiler do not wrap.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nix::errno::Errno;
use nix::unistd::ForkResult;

/// fork(2).
///
/// Callers must be single-threaded (checked by `plan::check_single_threaded`), so the child
/// inherits no lock held by another thread and may allocate until it execs.
pub fn fork() -> nix::Result<ForkResult> {
    // SAFETY: the process is single-threaded at this point (see above); the child only runs the
    // confinement steps and then execs or _exits.
    unsafe { nix::unistd::fork() }
}

/// The running kernel's Landlock ABI version, or a negative errno (ENOSYS, EOPNOTSUPP).
///
/// The landlock crate keeps this private on purpose (rules must not depend on it); stockade only
/// reports it.
pub fn landlock_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: nix::libc::c_uint = 1;
    // SAFETY: with a NULL attr and size 0 and the VERSION flag, the kernel reads no memory.
    let v = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if v < 0 {
        -(Errno::last() as i32)
    } else {
        i32::try_from(v).unwrap_or(i32::MAX)
    }
}

pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| format!("Linux {}", u.release().to_string_lossy()))
        .unwrap_or_else(|_| "Linux (unknown release)".into())
}

/// The securebits stockade locks when it starts the server as root: no root magic on exec, no
/// keep-caps, no ambient raise, each locked so the server cannot unset it.
pub const SECUREBITS_LOCKED: nix::libc::c_ulong = (1 << 0) // SECBIT_NOROOT
    | (1 << 1) // SECBIT_NOROOT_LOCKED
    | (1 << 3) // SECBIT_NO_SETUID_FIXUP_LOCKED
    | (1 << 5) // SECBIT_KEEP_CAPS_LOCKED
    | (1 << 6) // SECBIT_NO_CAP_AMBIENT_RAISE
    | (1 << 7); // SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED

pub fn set_securebits(bits: nix::libc::c_ulong) -> nix::Result<()> {
    // SAFETY: PR_SET_SECUREBITS takes an integer and no pointer.
    let rc = unsafe { nix::libc::prctl(nix::libc::PR_SET_SECUREBITS, bits, 0, 0, 0) };
    Errno::result(rc).map(drop)
}

pub fn securebits() -> nix::Result<nix::libc::c_ulong> {
    // SAFETY: PR_GET_SECUREBITS takes no argument and returns the bits.
    let rc = unsafe { nix::libc::prctl(nix::libc::PR_GET_SECUREBITS, 0, 0, 0, 0) };
    Errno::result(rc).map(|v| v as nix::libc::c_ulong)
}

/// Mark every fd in `first..=last` close-on-exec (close_range(2) with CLOSE_RANGE_CLOEXEC).
pub fn cloexec_range(first: u32, last: u32) -> nix::Result<()> {
    // SAFETY: close_range only changes fd flags in the given range; no memory is passed.
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_close_range,
            first,
            last,
            nix::libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    Errno::result(rc).map(drop)
}

/// How many threads the calling process has. (Landlock and seccomp restrict only the calling
/// thread, and fork from a multi-threaded process may inherit held locks.) An unreadable /proc is
/// an error, not "one thread": the check must not pass unchecked.
pub fn thread_count() -> std::io::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir("/proc/self/task")? {
        entry?;
        n += 1;
    }
    Ok(n)
}

/// The OS errno somewhere in an error's source chain (the landlock crate wraps std::io::Error);
/// EINVAL when there is none. Errno::last() after a library error may be any earlier call's.
pub fn errno_in(e: &(dyn std::error::Error + 'static)) -> Errno {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(n) = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
        {
            return Errno::from_raw(n);
        }
        cur = err.source();
    }
    Errno::EINVAL
}

/// Move `fd` to the lowest free number >= `min`, close-on-exec (F_DUPFD_CLOEXEC); the original
/// number is closed. Keeps stockade's own fds clear of the numbers the profile passes.
pub fn fd_at_least(fd: std::os::fd::OwnedFd, min: i32) -> nix::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    if fd.as_raw_fd() >= min {
        return Ok(fd);
    }
    let new = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(min))?;
    // SAFETY: F_DUPFD_CLOEXEC just returned this fd, which nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(new) })
}

/// Is `fd` open in this process? (F_GETFD fails with EBADF otherwise.)
pub fn fd_is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only reads the fd's flags; no memory is passed.
    let rc = unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) };
    rc != -1
}

/// PR_CAPBSET_DROP by raw index: the caps crate only knows the capabilities it was built with,
/// the kernel may have more (up to /proc/sys/kernel/cap_last_cap).
pub fn capbset_drop(cap: u32) -> nix::Result<()> {
    // SAFETY: PR_CAPBSET_DROP takes an integer and no pointer.
    let rc = unsafe {
        nix::libc::prctl(
            nix::libc::PR_CAPBSET_DROP,
            cap as nix::libc::c_ulong,
            0,
            0,
            0,
        )
    };
    Errno::result(rc).map(drop)
}

/// _exit(2): leave the forked child without running atexit handlers or flushing stdio buffers
/// that belong to the parent.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit takes an int and never returns.
    unsafe { nix::libc::_exit(code) }
}

/// kill(2) with a raw signal number: nix's `Signal` has no real-time signals.
pub fn kill_raw(pid: i32, sig: i32) -> nix::Result<()> {
    // SAFETY: kill takes two integers and no pointer.
    let rc = unsafe { nix::libc::kill(pid, sig) };
    Errno::result(rc).map(drop)
}

/// The real-time signal range usable by applications (glibc reserves the first two).
pub fn rt_signals() -> std::ops::RangeInclusive<i32> {
    nix::libc::SIGRTMIN()..=nix::libc::SIGRTMAX()
}

/// Reset one signal's disposition to SIG_DFL (raw number, for real-time signals too).
pub fn default_disposition(sig: i32) -> nix::Result<()> {
    // SAFETY: SIG_DFL installs no handler function, so no Rust code can run in signal context.
    let prev = unsafe { nix::libc::signal(sig, nix::libc::SIG_DFL) };
    if prev == nix::libc::SIG_ERR {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Set one signal's disposition to SIG_IGN (raw number).
pub fn ignore_disposition(sig: i32) -> nix::Result<()> {
    // SAFETY: SIG_IGN installs no handler function, so no Rust code can run in signal context.
    let prev = unsafe { nix::libc::signal(sig, nix::libc::SIG_IGN) };
    if prev == nix::libc::SIG_ERR {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Bit `n - 1` set: signal `n` was SIG_IGN when stockade's process started.
static IGNORED_AT_START: AtomicU64 = AtomicU64::new(0);
static RECORDED_AT_START: AtomicBool = AtomicBool::new(false);

/// Runs from `.init_array`, before Rust's runtime sets SIGPIPE to SIG_IGN (and installs its
/// SIGSEGV/SIGBUS handlers): the only point where the dispositions stockade's parent left are
/// still visible. glibc and musl both run these constructors before `main`.
// SAFETY: the constructor only queries dispositions with sigaction(2) and stores atomics: no
// allocation, no std runtime state, nothing that can panic.
#[used]
#[unsafe(link_section = ".init_array")]
static RECORD_AT_START: extern "C" fn() = record_at_start;

extern "C" fn record_at_start() {
    record_ignored_at_start();
}

/// Record which signals are ignored now (see `RECORD_AT_START`; `main` calls it again only if
/// the constructor did not run). Returns false if it had already been recorded.
pub fn record_ignored_at_start() -> bool {
    if RECORDED_AT_START.swap(true, Ordering::SeqCst) {
        return false;
    }
    let mut bits = 0u64;
    for sig in 1..=64 {
        let mut old = std::mem::MaybeUninit::<nix::libc::sigaction>::zeroed();
        // SAFETY: a NULL new action only queries; `old` is a valid, writable sigaction.
        let rc = unsafe { nix::libc::sigaction(sig, std::ptr::null(), old.as_mut_ptr()) };
        if rc == 0 {
            // SAFETY: sigaction returned 0, so it filled `old` (zeroed before anyway).
            let old = unsafe { old.assume_init() };
            if old.sa_sigaction == nix::libc::SIG_IGN {
                bits |= 1 << (sig - 1);
            }
        }
    }
    IGNORED_AT_START.store(bits, Ordering::SeqCst);
    true
}

/// Forget one signal's recorded SIG_IGN (when it cannot have been the parent's, or must not
/// reach the server).
pub fn forget_ignored_at_start(sig: i32) {
    if (1..=64).contains(&sig) {
        IGNORED_AT_START.fetch_and(!(1 << (sig - 1)), Ordering::SeqCst);
    }
}

/// Was `sig` ignored when stockade started? (Async-signal-safe: an atomic load.)
pub fn ignored_at_start(sig: i32) -> bool {
    (1..=64).contains(&sig) && IGNORED_AT_START.load(Ordering::SeqCst) & (1 << (sig - 1)) != 0
}

/// The sending process of a signal (si_pid), as seen from our PID namespace: 0 when the sender
/// is outside it. Meaningful for SI_USER/SI_QUEUE/SI_TKILL signals, which SIGPIPE from kill(2)
/// and from a write to a broken pipe both are.
pub fn signal_sender(info: &nix::libc::siginfo_t) -> i32 {
    // SAFETY: si_pid reads the union member every kill-style and kernel-sent SIGPIPE fills;
    // signal-hook hands us a copy of the kernel's siginfo_t.
    unsafe { info.si_pid() }
}

/// Borrow a raw fd the profile names in `pass_fds`.
pub fn borrow_fd(fd: i32) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: used only in the child just before exec, on fds the profile says are open and
    // inherited; fcntl on a closed fd fails with EBADF, which is reported, not undefined.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

/// Block until one byte arrives on a pipe (a hand-over between stockade's processes): false on
/// EOF (the writer died or gave up) or an error. EINTR is retried, a bounded number of times.
pub fn wait_byte(fd: &std::os::fd::OwnedFd) -> bool {
    let mut b = [0u8; 1];
    for _ in 0..64 {
        match nix::unistd::read(fd, &mut b) {
            Ok(1) => return true,
            Err(Errno::EINTR) => {}
            _ => return false,
        }
    }
    false
}

/// Take ownership of an fd number handed over across exec (the relay's, `pidns::relay_main`),
/// after checking it is open. The caller names each number once, so no two owners result.
pub fn adopt_fd(fd: i32) -> nix::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    nix::fcntl::fcntl(borrow_fd(fd), nix::fcntl::FcntlArg::F_GETFD)?;
    // SAFETY: the fd is open (F_GETFD succeeded) and was left to this image by the one that
    // exec'd it, which owned it and is gone: nothing else in this process owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Mount attributes for `mount_setattr` (linux/mount.h).
pub const MOUNT_ATTR_RDONLY: u64 = nix::libc::MOUNT_ATTR_RDONLY;
pub const MOUNT_ATTR_NOSUID: u64 = nix::libc::MOUNT_ATTR_NOSUID;
pub const MOUNT_ATTR_NODEV: u64 = nix::libc::MOUNT_ATTR_NODEV;
pub const MOUNT_ATTR_NOEXEC: u64 = nix::libc::MOUNT_ATTR_NOEXEC;

/// mount_setattr(2) on the mount at `path`: set `attr_set`, on every mount below it too when
/// `recursive` (AT_RECURSIVE). A remount with MS_BIND changes only the top mount, so nested
/// mounts would keep rw/exec; nix does not wrap this call (Linux 5.12).
pub fn mount_setattr(path: &std::path::Path, attr_set: u64, recursive: bool) -> nix::Result<()> {
    use nix::NixPath;
    let attr = nix::libc::mount_attr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive {
        nix::libc::AT_RECURSIVE as nix::libc::c_uint
    } else {
        0
    };
    let rc = path.with_nix_path(|p| {
        // SAFETY: `p` is a NUL-terminated path that outlives the call; `attr` is a valid
        // mount_attr whose exact size is passed, and the kernel only reads it.
        unsafe {
            nix::libc::syscall(
                nix::libc::SYS_mount_setattr,
                nix::libc::AT_FDCWD,
                p.as_ptr(),
                flags,
                &attr as *const nix::libc::mount_attr,
                std::mem::size_of::<nix::libc::mount_attr>(),
            )
        }
    })?;
    Errno::result(rc).map(drop)
}

/// open_tree(2) with OPEN_TREE_CLONE | AT_RECURSIVE: a detached copy of the mount tree at `path`
/// as it is now. The fresh root takes these before it mounts anything, so a bind source that is
/// an ancestor of the staging directory does not carry the staging mount into the new root.
pub fn clone_tree(path: &std::path::Path) -> nix::Result<std::os::fd::OwnedFd> {
    use nix::NixPath;
    use std::os::fd::FromRawFd;
    const OPEN_TREE_CLONE: nix::libc::c_uint = 1;
    let flags = OPEN_TREE_CLONE
        | nix::libc::O_CLOEXEC as nix::libc::c_uint
        | nix::libc::AT_RECURSIVE as nix::libc::c_uint;
    let rc = path.with_nix_path(|p| {
        // SAFETY: `p` is a NUL-terminated path that outlives the call; no other memory is passed.
        unsafe {
            nix::libc::syscall(
                nix::libc::SYS_open_tree,
                nix::libc::AT_FDCWD,
                p.as_ptr(),
                flags,
            )
        }
    })?;
    let fd = Errno::result(rc)?;
    let fd = i32::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: open_tree returned a new fd that nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// move_mount(2): attach the detached tree `from` (from `clone_tree`) at `to`.
pub fn attach_tree(from: &std::os::fd::OwnedFd, to: &std::path::Path) -> nix::Result<()> {
    use nix::NixPath;
    use std::os::fd::AsRawFd;
    const MOVE_MOUNT_F_EMPTY_PATH: nix::libc::c_uint = 0x4;
    let rc = to.with_nix_path(|t| {
        // SAFETY: both paths are NUL-terminated and outlive the call; `from` is an open fd.
        unsafe {
            nix::libc::syscall(
                nix::libc::SYS_move_mount,
                from.as_raw_fd(),
                c"".as_ptr(),
                nix::libc::AT_FDCWD,
                t.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        }
    })?;
    Errno::result(rc).map(drop)
}

/// A /proc file in as few reads as possible. `read_to_string` starts with a small probe read
/// and grows from there; procfs formats a seq_file anew from the start of the record at every
/// read, so mountinfo took ~20 reads (measured: 0.2 ms of each launch in the child).
pub fn read_proc(path: &str) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// With `release`, give back what start-up left resident, once the supervisor only loops; then
/// sleep in `poll(fds, timeout_ms)` (revents are filled in `fds`). The release: unmap (MADV_DONTNEED)
/// every private file mapping that is not writable and holds no page of its own — stockade's
/// binary (the parsing, planning and rendering code that fault-around mapped in) and the shared
/// libraries start-up ran through (libc's NSS, locale and stdio code) — and on glibc
/// `malloc_trim(0)`.
///
/// Such a mapping only holds clean page-cache pages: dropping them removes page-table entries,
/// and a later touch is a minor fault from the page cache, same contents. A mapping with
/// `Anonymous` pages (the relocated RELRO data, read-only after relocation) is skipped: there
/// MADV_DONTNEED would bring back the unrelocated file contents. Not MADV_PAGEOUT: that evicts
/// the binary from the page cache, and the next launch reads it from disk (measured, +6 ms).
/// Single-threaded here, so nothing maps or writes between the read of smaps and the advice.
///
/// Every touch of code after the advice faults its 64 KiB fault-around window back in, so the
/// parsing and freeing come first, and the advice and the poll are raw syscalls inline in this
/// one function (the `syscalls` crate's), whose own two pages are left out of the advice: while
/// the caller sleeps, those 8 KiB are all of stockade's code that is resident. (A libc `madvise`
/// and `poll` and their callers each brought a window back, 3–5 per process; with this function
/// advised too, its return brought one or two, by where ASLR put the window edges.)
///
/// Without `release`, only the poll: the supervision loops wait through this one call either way.
#[inline(never)]
pub fn poll_releasing(fds: &mut [nix::libc::pollfd], timeout_ms: i32, release: bool) {
    let released = release.then(|| {
        // This function is far shorter than a page; two pages hold it wherever it starts.
        let here = poll_releasing as *const () as usize & !(PAGE - 1);
        startup_ranges((here, here + 2 * PAGE))
    });
    if let Some((ranges, n)) = released.flatten() {
        #[cfg(target_env = "gnu")]
        // SAFETY: single-threaded, no allocation in progress; only returns free heap pages.
        let _ = unsafe { nix::libc::malloc_trim(0) };
        for &(start, end) in &ranges[..n] {
            // SAFETY: a private file mapping that is not writable and has no anonymous (written)
            // page: MADV_DONTNEED only drops clean file pages, which fault back in unchanged
            // from the page cache. No memory of this process is passed to the kernel.
            let _ = unsafe {
                syscalls::raw::syscall3(
                    syscalls::Sysno::madvise as usize,
                    start,
                    end - start,
                    nix::libc::MADV_DONTNEED as usize,
                )
            };
        }
    }
    // SAFETY: `fds` is a valid, writable array of `fds.len()` pollfd structs for the whole call;
    // the timeout is passed as the kernel's int (a negative one waits forever).
    let _ = unsafe {
        syscalls::raw::syscall3(
            syscalls::Sysno::poll as usize,
            fds.as_mut_ptr() as usize,
            fds.len(),
            timeout_ms as isize as usize,
        )
    };
}

const PAGE: usize = 4096;

/// `range` with `keep` cut out of it: up to two non-empty ranges.
fn without(range: (usize, usize), keep: (usize, usize)) -> impl Iterator<Item = (usize, usize)> {
    let (start, end) = range;
    let before = (start, end.min(keep.0));
    let after = (start.max(keep.1), end);
    [before, after].into_iter().filter(|(s, e)| s < e)
}

/// The ranges `poll_releasing` gives back, `keep` cut out (at most 32; no allocation survives
/// the call).
#[inline(never)]
fn startup_ranges(keep: (usize, usize)) -> Option<([(usize, usize); 32], usize)> {
    let Ok(smaps) = read_proc("/proc/self/smaps") else {
        return None;
    };
    let mut out = [(0usize, 0usize); 32];
    let mut n = 0;
    // (start, end) of the current mapping while it qualifies so far.
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut f = line.split_ascii_whitespace();
        let Some(first) = f.next() else {
            continue;
        };
        if let Some((start, end)) = first.split_once('-') {
            // A mapping's header: start-end perms offset dev inode path
            current = None;
            let (Some(perms), Some(path)) = (f.next(), f.nth(3)) else {
                continue;
            };
            let (Ok(s), Ok(e)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) else {
                continue;
            };
            // Files only (not [vdso] and the like), private, not writable: stockade's binary
            // and the shared libraries (libc, ld.so) start-up ran through.
            let p = perms.as_bytes();
            if !path.starts_with('/') || p.get(1) != Some(&b'-') || p.get(3) != Some(&b'p') {
                continue;
            }
            current = Some((s, e));
        } else if first == "Anonymous:" {
            if f.next() != Some("0") {
                current = None;
            }
        } else if first == "VmFlags:"
            && let Some(r) = current.take()
        {
            for part in without(r, keep) {
                if let Some(slot) = out.get_mut(n) {
                    *slot = part;
                    n += 1;
                }
            }
        }
    }
    Some((out, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_comes_from_the_error_not_from_errno() {
        let e = landlock::PathFd::new("/nonexistent/stockade-test").unwrap_err();
        // Set errno to something else first: Errno::last() would report it.
        Errno::set_raw(nix::libc::EXDEV);
        assert_eq!(errno_in(&e), Errno::ENOENT);
        assert_eq!(errno_in(&std::fmt::Error), Errno::EINVAL);
    }

    #[test]
    fn without_cuts_the_kept_pages_out() {
        let cut = |r, k| without(r, k).collect::<Vec<_>>();
        assert_eq!(cut((0, 10), (4, 6)), [(0, 4), (6, 10)]);
        assert_eq!(cut((0, 10), (0, 6)), [(6, 10)]);
        assert_eq!(cut((0, 10), (8, 12)), [(0, 8)]);
        assert_eq!(cut((0, 10), (20, 30)), [(0, 10)]);
        assert_eq!(cut((20, 30), (0, 10)), [(20, 30)]);
        assert!(cut((4, 6), (0, 10)).is_empty());
    }

    #[test]
    fn thread_count_reads_proc() {
        assert!(thread_count().is_ok_and(|n| n >= 1));
    }

    #[test]
    fn dispositions_were_recorded_before_main() {
        // The `.init_array` constructor ran before the test harness's main: a second record is
        // refused, and SIGPIPE, which Rust's runtime ignores, was not ignored before it.
        assert!(!super::record_ignored_at_start());
        assert!(!super::ignored_at_start(nix::libc::SIGPIPE));
    }
}

/// What `PTRACE_GET_SYSCALL_INFO` says about a stopped tracee (Linux 5.3). nix wraps it only on
/// glibc; this is the same call for the static musl build too.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyscallInfo {
    /// PTRACE_SYSCALL_INFO_{NONE,ENTRY,EXIT,SECCOMP} = 0..=3.
    pub op: u8,
    pub arch: u32,
    pub ip: u64,
    pub nr: u64,
    pub args: [u64; 6],
    /// At a syscall-exit stop: the return value, and whether it is an error (-errno).
    pub rval: i64,
    pub is_error: bool,
    /// At a seccomp stop: the SECCOMP_RET_DATA of the filter's answer.
    pub ret_data: u32,
}

pub const SYSCALL_INFO_EXIT: u8 = 2;
pub const SYSCALL_INFO_SECCOMP: u8 = 3;

pub fn ptrace_syscall_info(pid: i32) -> nix::Result<SyscallInfo> {
    // c_uint on glibc, c_int on musl: the same bits either way.
    const PTRACE_GET_SYSCALL_INFO: u16 = 0x420e;
    // struct ptrace_syscall_info: op u8, pad[3], arch u32, ip u64, sp u64, then the union
    // (entry/seccomp: nr u64, args[6] u64, ret_data u32; exit: rval s64, is_error u8).
    let mut buf = [0u64; 12];
    // SAFETY: the kernel writes at most `size` bytes into `buf`, which is that large and
    // 8-byte aligned; pid and request are plain integers.
    let rc = unsafe {
        nix::libc::ptrace(
            PTRACE_GET_SYSCALL_INFO.into(),
            pid,
            std::mem::size_of_val(&buf),
            buf.as_mut_ptr(),
        )
    };
    Errno::result(rc)?;
    let op = (buf[0] & 0xff) as u8;
    let mut info = SyscallInfo {
        op,
        arch: (buf[0] >> 32) as u32,
        ip: buf[1],
        ..SyscallInfo::default()
    };
    if op == SYSCALL_INFO_EXIT {
        info.rval = buf[3] as i64;
        info.is_error = buf[4] & 0xff != 0;
    } else {
        info.nr = buf[3];
        info.args.copy_from_slice(&buf[4..10]);
        info.ret_data = (buf[10] & 0xffff_ffff) as u32;
    }
    Ok(info)
}

/// A duplicate of another process's fd (pidfd_open + pidfd_getfd, Linux 5.6), to ask a tracee's
/// socket its type. Needs the same permission as ptrace attach.
pub fn fd_of_process(pid: i32, fd: i32) -> nix::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags, no pointer.
    let pidfd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    let pidfd = Errno::result(pidfd)? as i32;
    // SAFETY: the kernel returned a new fd that nothing else owns.
    let pidfd = unsafe { std::os::fd::OwnedFd::from_raw_fd(pidfd) };
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_getfd takes two fds and flags, no pointer.
    let got = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    let got = Errno::result(got)? as i32;
    // SAFETY: as above, a new fd owned by no one else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(got) })
}

/// The C library's name and version, for a learned profile's header.
pub fn libc_version() -> String {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: gnu_get_libc_version returns a pointer to a static NUL-terminated string.
        let v = unsafe { std::ffi::CStr::from_ptr(nix::libc::gnu_get_libc_version()) };
        format!("glibc {}", v.to_string_lossy())
    }
    #[cfg(not(target_env = "gnu"))]
    {
        "musl (static)".to_string()
    }
}

/// What both binaries do first: keep the parent's ignored signals for the server (recorded by
/// the constructor; SIGPIPE's original is unknown if it did not run), never inherit an ignored
/// SIGCHLD (the kernel would reap the server and its status would be lost), then block every
/// signal, so one that arrives before the handlers exist stays pending instead of being lost (or
/// ignored, as PID 1 of a namespace would). Returns the mask the process started with.
pub fn take_signals_at_start() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, SigmaskHow};
    if record_ignored_at_start() {
        forget_ignored_at_start(nix::libc::SIGPIPE);
    }
    if ignored_at_start(nix::libc::SIGCHLD) {
        let _ = default_disposition(nix::libc::SIGCHLD);
        forget_ignored_at_start(nix::libc::SIGCHLD);
    }
    let mut original = SigSet::empty();
    let _ = nix::sys::signal::sigprocmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut original),
    );
    original
}
