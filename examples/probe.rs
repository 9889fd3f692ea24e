//! Test probe: attempts one operation and prints `ok` or `errno=NAME` (exit 0 either way).
//! A seccomp kill shows as death by SIGSYS. Built by `cargo test`, run confined by the tests.
//!
//! `probe OP [ARGS]` with OP one of: write FILE, create FILE, mkdir DIR, rename FROM TO,
//! truncate FILE, unlink FILE, read FILE, exec PATH, bind PORT, connect PORT,
//! connect-abstract NAME, kill PID SIG,
//! ptrace PID, mount, securebits, setuid0, unshare-user, clone3, io-uring, x32, i386, sleep SECS, status,
//! fds, cwd, listen-fds (systemd socket activation: print LISTEN_*, then accept one connection
//! on fd 3 and answer it), chmod FILE MODE(octal), utime FILE, connect-unix PATH, mmap-exec FILE
//! [SRC] (copies SRC to FILE if given, then maps FILE executable, as ld.so does), ldso SRC DST
//! (copies SRC to DST and execs the dynamic loader on it with the argument `status`),
//! nolandlock CMD... (installs a filter answering landlock_create_ruleset with ENOSYS and
//! execs CMD: the fail-closed harness).
//! Terminal and egress (seccomp helper): tiocsti TEXT, tiocsti-high TEXT (request with high bits
//! set), tioclinux, read-line, socket DOMAIN TYPE PROTO [PORT] (connect to 127.0.0.1:PORT),
//! udp-send PORT, fastopen PORT, tcp-self PORT, socketpair DOMAIN TYPE, syscall-args NAME A B,
//! winsize (prints the terminal's size, waits for SIGWINCH, prints it again).
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
        "cwd" => io(std::env::current_dir().map(|d| println!("cwd={}", d.display()))),
        "listen-fds" => listen_fds(),
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
        "tiocsti" => inject(&arg(1), 0),
        "tiocsti-high" => inject(&arg(1), 1 << 32),
        "winsize" => winsize_change(),
        "tioclinux" => {
            let mut sub = 2u8; // TIOCL_SETSEL: on a pty the kernel says ENOTTY/EINVAL, not EPERM
            // SAFETY: TIOCLINUX reads one byte (the subcode) from a valid pointer.
            raw(unsafe { nix::libc::syscall(nix::libc::SYS_ioctl, 0, 0x541Cu64, &mut sub) })
        }
        "read-line" => {
            let mut line = String::new();
            io(std::io::stdin().read_line(&mut line).map(|_| {
                println!("line={}", line.trim_end());
            }))
        }
        "socket" => {
            let n = |i: usize| -> i32 { arg(i).parse().unwrap() };
            socket_then(n(1), n(2), n(3), arg(4).parse().ok())
        }
        "udp-send" => {
            let port: u16 = arg(1).parse().unwrap();
            io(std::net::UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.send_to(b"escaped", ("127.0.0.1", port)).map(drop)))
        }
        "fastopen" => fastopen(arg(1).parse().unwrap()),
        "tcp-self" => {
            let port: u16 = arg(1).parse().unwrap();
            io(
                std::net::TcpListener::bind(("127.0.0.1", port)).and_then(|l| {
                    let c = std::net::TcpStream::connect(("127.0.0.1", port))?;
                    let (mut s, _) = l.accept()?;
                    s.write_all(b"x")?;
                    drop(c);
                    Ok(())
                }),
            )
        }
        "socketpair" => {
            let mut fds = [0i32; 2];
            let (d, t): (i32, i32) = (arg(1).parse().unwrap(), arg(2).parse().unwrap());
            // SAFETY: socketpair writes two ints into a valid array.
            let r = raw(unsafe { nix::libc::socketpair(d, t, 0, fds.as_mut_ptr()) }.into());
            if r.is_ok() {
                // SAFETY: both fds were just created by socketpair.
                unsafe {
                    nix::libc::close(fds[0]);
                    nix::libc::close(fds[1]);
                }
            }
            r
        }
        "syscall-args" => {
            let nr = match arg(1).as_str() {
                "getppid" => nix::libc::SYS_getppid,
                other => panic!("syscall-args: unknown syscall {other}"),
            };
            let (a, b): (u64, u64) = (arg(2).parse().unwrap(), arg(3).parse().unwrap());
            // SAFETY: getppid ignores its argument registers.
            raw(unsafe { nix::libc::syscall(nr, a, b) })
        }
        "learn-target" => learn_target(args.get(1).map(String::as_str)),
        "helper" => {
            // The exec'd helper's own syscall (sysinfo: nothing else in the probe makes it).
            let mut si = std::mem::MaybeUninit::<nix::libc::sysinfo>::uninit();
            // SAFETY: sysinfo writes one struct sysinfo into the pointer it is given.
            raw(unsafe { nix::libc::syscall(nix::libc::SYS_sysinfo, si.as_mut_ptr()) })
        }
        other => {
            eprintln!("probe: unknown op '{other}'");
            std::process::exit(2);
        }
    };
    report(r);
}

static TERM: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_term(_: nix::libc::c_int) {
    TERM.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// For `stockade learn`: one distinctive syscall on each path a recorder can miss, then wait
/// for SIGTERM (at most 30 s). A thread: getpriority. A forked child that does not exec:
/// sched_getscheduler. An exec'd helper (`probe helper`): sysinfo. The SIGTERM path: times.
/// With `kill` also a call every profile kills (acct), answered EPERM while learning, and a
/// TIOCSTI (refused by a fixed rule) next to an allowed ioctl.
fn learn_target(extra: Option<&str>) -> Result<(), Errno> {
    let handler = nix::sys::signal::SigHandler::Handler(on_term);
    // SAFETY: the handler only stores to an atomic.
    unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGTERM, handler) }?;
    std::thread::spawn(|| {
        // SAFETY: getpriority takes two integers.
        unsafe { nix::libc::syscall(nix::libc::SYS_getpriority, 0, 0) };
    })
    .join()
    .unwrap();
    // SAFETY: the child only makes one raw syscall and _exits.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            // SAFETY: sched_getscheduler takes a pid; _exit never returns.
            unsafe {
                nix::libc::syscall(nix::libc::SYS_sched_getscheduler, 0);
                nix::libc::_exit(0)
            }
        }
        nix::unistd::ForkResult::Parent { child } => {
            nix::sys::wait::waitpid(child, None)?;
        }
    }
    let me = std::env::current_exe().unwrap();
    let status = std::process::Command::new(me)
        .arg("helper")
        .status()
        .unwrap();
    assert!(status.success());
    if extra == Some("kill") {
        // One ioctl stockade's fixed rule refuses (TIOCSTI) next to one it allows (TCGETS): the
        // refused call must not take the syscall away.
        let mut t = std::mem::MaybeUninit::<nix::libc::termios>::uninit();
        let c = b'x';
        // SAFETY: TCGETS writes one termios; TIOCSTI reads one byte; both on fd 0.
        let (get, sti) = unsafe {
            (
                nix::libc::ioctl(0, nix::libc::TCGETS, t.as_mut_ptr()),
                nix::libc::ioctl(0, nix::libc::TIOCSTI, &c),
            )
        };
        println!(
            "tcgets={} tiocsti={}",
            Errno::result(get).map_or_else(|e| format!("{e:?}"), |_| "ok".into()),
            Errno::result(sti).map_or_else(|e| format!("{e:?}"), |_| "ok".into())
        );
        // SAFETY: acct with NULL turns accounting off; every profile kills it.
        let rc = unsafe { nix::libc::syscall(nix::libc::SYS_acct, 0usize) };
        println!(
            "acct={}",
            Errno::result(rc).map_or_else(|e| format!("{e:?}"), |_| "ok".into())
        );
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    for _ in 0..3000 {
        if TERM.load(std::sync::atomic::Ordering::SeqCst) {
            let mut t = std::mem::MaybeUninit::<nix::libc::tms>::uninit();
            // SAFETY: times writes one struct tms.
            unsafe { nix::libc::syscall(nix::libc::SYS_times, t.as_mut_ptr()) };
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(Errno::ETIMEDOUT)
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

/// sd_listen_fds(3) from the server's side: print what it sees, then serve one connection on
/// the first passed fd with `pid=<own pid> listen_pid=<LISTEN_PID>`.
fn listen_fds() -> Result<(), Errno> {
    use std::os::fd::FromRawFd;
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| "-".into());
    let pid = std::process::id();
    println!(
        "pid={pid} LISTEN_PID={} LISTEN_FDS={} LISTEN_FDNAMES={}",
        var("LISTEN_PID"),
        var("LISTEN_FDS"),
        var("LISTEN_FDNAMES")
    );
    let _ = std::io::stdout().flush();
    // SAFETY: F_GETFD reads no memory.
    raw(unsafe { nix::libc::fcntl(3, nix::libc::F_GETFD) }.into())?;
    // SAFETY: fd 3 is open (above) and the process exits after one connection; ManuallyDrop:
    // it is not ours to close.
    let listener = std::mem::ManuallyDrop::new(unsafe { std::net::TcpListener::from_raw_fd(3) });
    let (mut conn, _) = listener
        .accept()
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
    io(writeln!(conn, "pid={pid} listen_pid={}", var("LISTEN_PID")))
}

/// TIOCSTI each byte of `text` into fd 0, the request ORed with `high` (the kernel reads only
/// the low 32 bits, so a filter comparing 64 would miss it). Stops at the first error.
fn inject(text: &str, high: u64) -> Result<(), Errno> {
    let text = text.replace("\\n", "\n");
    for b in text.as_bytes() {
        // SAFETY: TIOCSTI reads one byte from a valid pointer.
        raw(unsafe { nix::libc::syscall(nix::libc::SYS_ioctl, 0, 0x5412u64 | high, b) })?;
    }
    Ok(())
}

/// socket(d, t, p); with a port, also connect it to 127.0.0.1:port (AF_INET).
fn socket_then(d: i32, t: i32, p: i32, port: Option<u16>) -> Result<(), Errno> {
    // SAFETY: socket takes three integers.
    let fd = unsafe { nix::libc::socket(d, t, p) };
    raw(fd.into())?;
    let r = match port {
        Some(port) => {
            let sin = loopback(port);
            // SAFETY: fd is the socket just created; the address is a valid sockaddr_in.
            raw(unsafe { nix::libc::connect(fd, std::ptr::from_ref(&sin).cast(), SIN_LEN) }.into())
        }
        None => Ok(()),
    };
    // SAFETY: fd is ours.
    unsafe { nix::libc::close(fd) };
    r
}

/// A TCP Fast Open send: connects without connect(2), past Landlock's connect rule (< 7.2).
fn fastopen(port: u16) -> Result<(), Errno> {
    // SAFETY: socket takes three integers.
    let fd = unsafe { nix::libc::socket(nix::libc::AF_INET, nix::libc::SOCK_STREAM, 0) };
    raw(fd.into())?;
    let sin = loopback(port);
    // SAFETY: one valid byte and a valid sockaddr_in.
    let r = raw(unsafe {
        nix::libc::sendto(
            fd,
            b"x".as_ptr().cast(),
            1,
            nix::libc::MSG_FASTOPEN,
            std::ptr::from_ref(&sin).cast(),
            SIN_LEN,
        )
    } as nix::libc::c_long);
    // Give the handshake a moment before the close, so an accept outside would see it.
    std::thread::sleep(std::time::Duration::from_millis(200));
    // SAFETY: fd is ours.
    unsafe { nix::libc::close(fd) };
    r
}

const SIN_LEN: nix::libc::socklen_t = std::mem::size_of::<nix::libc::sockaddr_in>() as _;

fn loopback(port: u16) -> nix::libc::sockaddr_in {
    nix::libc::sockaddr_in {
        sin_family: nix::libc::AF_INET as nix::libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: nix::libc::in_addr {
            s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn winsize_change() -> Result<(), Errno> {
    // SIGWINCH blocked first, so a change after "ready" is not lost.
    let winch = nix::sys::signal::SigSet::from(nix::sys::signal::Signal::SIGWINCH);
    winch.thread_block()?;
    let (r, c) = winsize()?;
    println!("ready size={r}x{c}");
    let _ = std::io::stdout().flush();
    winch.wait()?;
    let (r, c) = winsize()?;
    println!("sigwinch size={r}x{c}");
    Ok(())
}

/// TIOCGWINSZ on fd 0: an ioctl the terminal rule must leave alone.
fn winsize() -> Result<(u16, u16), Errno> {
    let mut w = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into a valid pointer.
    raw(unsafe { nix::libc::ioctl(0, nix::libc::TIOCGWINSZ, &mut w) }.into())?;
    Ok((w.ws_row, w.ws_col))
}
