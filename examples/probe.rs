//! Test probe: attempts one operation and prints `ok` or `errno=NAME` (exit 0 either way).
//! A seccomp kill shows as death by SIGSYS. Built by `cargo test`, run confined by the tests.
//!
//! `probe OP [ARGS]` with OP one of: write FILE, create FILE, mkdir DIR, rename FROM TO,
//! truncate FILE, unlink FILE, read FILE, exec PATH, bind PORT, connect PORT,
//! connect-abstract NAME, kill PID SIG,
//! ptrace PID, mount, securebits, setuid0, unshare-user, clone3, io-uring, x32, i386, sleep SECS, status,
//! fds, chmod FILE MODE(octal), utime FILE, connect-unix PATH, mmap-exec FILE [SRC] (copies SRC to
//! FILE if given, then maps FILE executable, as ld.so does), ldso SRC DST (copies SRC to DST and execs the dynamic
//! loader on it with the argument `status`), nolandlock CMD... (installs a filter answering landlock_create_ruleset with ENOSYS and
//! execs CMD: the fail-closed harness).
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::CString;
use std::io::Write;

use nix::errno::Errno;

fn report(r: Result<(), Errno>) {
    match r {
        Ok(()) => println!("ok"),
        Err(e) => println!("errno={e:?}"),
    }
    let _ = std::io::stdout().flush();
}

fn io(r: std::io::Result<()>) -> Result<(), Errno> {
    r.map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))
}

fn raw(rc: nix::libc::c_long) -> Result<(), Errno> {
    Errno::result(rc).map(drop)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    let op = arg(0);
    let r = match op.as_str() {
        "write" => io(std::fs::write(arg(1), b"x")),
        "create" => io(std::fs::File::create_new(arg(1)).map(drop)),
        "mkdir" => io(std::fs::create_dir(arg(1))),
        "rename" => io(std::fs::rename(arg(1), arg(2))),
        "truncate" => io(std::fs::OpenOptions::new()
            .write(true)
            .open(arg(1))
            .and_then(|f| f.set_len(0))),
        "unlink" => io(std::fs::remove_file(arg(1))),
        "read" => io(std::fs::read(arg(1)).map(drop)),
        "exec" => {
            let p = CString::new(arg(1)).unwrap();
            nix::unistd::execv(&p, &[&p]).map(drop)
        }
        "bind" => {
            let port: u16 = arg(1).parse().unwrap();
            io(std::net::TcpListener::bind(("127.0.0.1", port)).map(drop))
        }
        "connect" => {
            let port: u16 = arg(1).parse().unwrap();
            io(std::net::TcpStream::connect(("127.0.0.1", port)).map(drop))
        }
        "connect-abstract" => {
            use std::os::linux::net::SocketAddrExt;
            let addr =
                std::os::unix::net::SocketAddr::from_abstract_name(arg(1).as_bytes()).unwrap();
            io(std::os::unix::net::UnixStream::connect_addr(&addr).map(drop))
        }
        "kill" => {
            let pid: i32 = arg(1).parse().unwrap();
            let sig: i32 = arg(2).parse().unwrap();
            // SAFETY: kill takes two integers.
            raw(unsafe { nix::libc::kill(pid, sig) }.into())
        }
        "ptrace" => {
            let pid: i32 = arg(1).parse().unwrap();
            // SAFETY: PTRACE_ATTACH with a pid and null addr/data reads no memory.
            raw(unsafe { nix::libc::ptrace(nix::libc::PTRACE_ATTACH, pid, 0usize, 0usize) })
        }
        "mount" => {
            // A bad target: a real mount is not the point, reaching the syscall is.
            nix::mount::mount(
                Some("none"),
                "/nonexistent-stockade-probe",
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            )
        }
        "securebits" => {
            // SAFETY: PR_GET_SECUREBITS takes no pointer.
            let bits = unsafe { nix::libc::prctl(nix::libc::PR_GET_SECUREBITS, 0, 0, 0, 0) };
            println!("securebits={bits:#x}");
            Ok(())
        }
        "setuid0" => nix::unistd::setuid(nix::unistd::Uid::from_raw(0)),
        "unshare-user" => nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER),
        "clone3" => {
            // SAFETY: a NULL args pointer with size 0: the kernel (or the filter) rejects it
            // without reading memory.
            raw(unsafe { nix::libc::syscall(nix::libc::SYS_clone3, 0usize, 0usize) })
        }
        "io-uring" => {
            // SAFETY: io_uring_setup with 0 entries and a NULL params pointer fails early.
            raw(unsafe { nix::libc::syscall(nix::libc::SYS_io_uring_setup, 0u32, 0usize) })
        }
        "x32" => {
            // getpid through the x32 ABI.
            // SAFETY: getpid takes no arguments.
            raw(unsafe { nix::libc::syscall(0x4000_0000 | nix::libc::SYS_getpid) })
        }
        "i386" => i386_getpid(),
        "sleep" => {
            println!("ready");
            let _ = std::io::stdout().flush();
            std::thread::sleep(std::time::Duration::from_secs(arg(1).parse().unwrap_or(30)));
            Ok(())
        }
        "status" => io(std::fs::read_to_string("/proc/self/status").map(|s| print!("{s}"))),
        "fds" => io(std::fs::read_dir("/proc/self/fd").map(|d| {
            let mut v: Vec<String> = d
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect();
            v.sort();
            println!("fds={}", v.join(","));
        })),
        "chmod" => {
            let mode = u32::from_str_radix(&arg(2), 8).unwrap();
            nix::sys::stat::fchmodat(
                nix::fcntl::AT_FDCWD,
                arg(1).as_str(),
                nix::sys::stat::Mode::from_bits_truncate(mode),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
        }
        "utime" => {
            let t = nix::sys::time::TimeSpec::new(1, 0);
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                arg(1).as_str(),
                &t,
                &t,
                nix::sys::stat::UtimensatFlags::FollowSymlink,
            )
        }
        "connect-unix" => io(std::os::unix::net::UnixStream::connect(arg(1)).map(drop)),
        "mmap-exec" => mmap_exec(&arg(1), args.get(2).map(String::as_str)),
        "ldso" => {
            let copied = io(std::fs::copy(arg(1), arg(2)).map(drop));
            if copied.is_err() {
                report(copied);
                return;
            }
            let ld = CString::new("/lib64/ld-linux-x86-64.so.2").unwrap();
            let file = CString::new(arg(2)).unwrap();
            let status = CString::new("status").unwrap();
            nix::unistd::execv(&ld, &[&ld, &file, &status]).map(drop)
        }
        "nolandlock" => no_landlock(&args[1..]),
        other => {
            eprintln!("probe: unknown op '{other}'");
            std::process::exit(2);
        }
    };
    report(r);
}

/// Map `dst` with PROT_EXEC (after copying `src` there, if given): what the dynamic loader does
/// with a library or `ld.so FILE`. A noexec mount refuses it with EPERM.
fn mmap_exec(dst: &str, src: Option<&str>) -> Result<(), Errno> {
    if let Some(src) = src {
        io(std::fs::copy(src, dst).map(drop))?;
    }
    let f = std::fs::File::open(dst).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
    use nix::libc;
    use std::os::fd::AsRawFd;
    // SAFETY: a fresh private mapping of a file we opened; it is unmapped right away and never
    // read or run.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::MAP_PRIVATE,
            f.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(Errno::last());
    }
    // SAFETY: `p` is the mapping made above, 4096 bytes.
    raw(unsafe { libc::munmap(p, 4096) }.into())
}

#[cfg(target_arch = "x86_64")]
fn i386_getpid() -> Result<(), Errno> {
    let nr: i64 = 20; // getpid in the i386 table
    let ret: i64;
    // SAFETY: int 0x80 with eax=20 (getpid) reads no memory; the kernel (or seccomp's arch
    // check) handles it.
    unsafe {
        std::arch::asm!("int 0x80", inlateout("rax") nr => ret, options(nostack));
    }
    if ret < 0 {
        Err(Errno::from_raw(-ret as i32))
    } else {
        Ok(())
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn i386_getpid() -> Result<(), Errno> {
    Err(Errno::ENOSYS)
}

/// Make landlock_create_ruleset answer ENOSYS (a kernel without Landlock), then exec.
fn no_landlock(cmd: &[String]) -> Result<(), Errno> {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
    let rules = [(nix::libc::SYS_landlock_create_ruleset, vec![])]
        .into_iter()
        .collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(nix::libc::ENOSYS as u32),
        TargetArch::x86_64,
    )
    .unwrap();
    let prog: BpfProgram = filter.try_into().unwrap();
    seccompiler::apply_filter(&prog).unwrap();
    let c: Vec<CString> = cmd
        .iter()
        .map(|s| CString::new(s.as_str()).unwrap())
        .collect();
    nix::unistd::execv(&c[0], &c).map(drop)
}
