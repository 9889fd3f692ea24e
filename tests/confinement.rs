//! The confinement pipeline against the real kernel: the probe runs confined, the test reads its
//! /proc status from outside and asserts real denials with their errno.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Start `stockade -- probe sleep 30` and return (stockade child, probe pid).
fn start_sleeper(sb: &Sandbox, prefix: &[&str]) -> (std::process::Child, u32) {
    let profile = sb.profile(free_port(), "");
    let mut cmd = Command::new(prefix.first().copied().unwrap_or("env"));
    cmd.args(prefix.iter().skip(1))
        .arg(stockade())
        .arg("--profile")
        .arg(&profile)
        .arg("--")
        .arg(sb.probe())
        .args(["sleep", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    // The launcher may sit below `setpriv`/`env` (which exec), so its pid is the child's.
    let probe = wait_child_exe(child.id(), &sb.path("bin/probe"), Duration::from_secs(10));
    (child, probe)
}

fn assert_zero_caps(st: &std::collections::BTreeMap<String, String>, with_bounding: bool) {
    let mut sets = vec!["CapInh", "CapPrm", "CapEff", "CapAmb"];
    if with_bounding {
        sets.push("CapBnd");
    }
    for k in sets {
        assert_eq!(st[k], "0000000000000000", "{k}");
    }
}

#[test]
fn confined_child_has_target_ids_no_caps_nnp_and_seccomp() {
    require_root();
    let sb = Sandbox::new();
    let (mut child, probe) = start_sleeper(&sb, &[]);
    let st = status(probe);
    kill_and_reap(&mut child);
    assert_eq!(st["Uid"], "65534\t65534\t65534\t65534");
    assert_eq!(st["Gid"], "65534\t65534\t65534\t65534");
    assert_eq!(st["Groups"], "");
    assert_zero_caps(&st, true);
    assert_eq!(st["NoNewPrivs"], "1");
    assert_eq!(st["Seccomp"], "2");
    // One program: allow-list, kill set, clone3 ENOSYS, default (src/bpf.rs).
    assert_eq!(st["Seccomp_filters"], "1");
    // Securebits are not in /proc: the probe asks the kernel. NOROOT, NO_SETUID_FIXUP_LOCKED,
    // KEEP_CAPS_LOCKED, NO_CAP_AMBIENT_RAISE, each locked where a lock exists.
    let out = confined(&sb.path("profile.toml"), &sb.probe(), &["securebits"]);
    assert_eq!(
        stdout(&out).lines().next(),
        Some("securebits=0xeb"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn supervisor_stays_resident_as_the_parent() {
    require_root();
    let sb = Sandbox::new();
    let (mut child, probe) = start_sleeper(&sb, &[]);
    let ppid: u32 = status(probe)["PPid"].parse().unwrap();
    let parent_exe = std::fs::read_link(format!("/proc/{ppid}/exe")).unwrap();
    let alive = child.try_wait().unwrap().is_none();
    let below_launcher = ppid == child.id() || descendants(child.id()).contains(&ppid);
    kill_and_reap(&mut child);
    assert_eq!(parent_exe, stockade());
    assert!(below_launcher && alive);
}

/// One denial or permission: the probe's output (or its death) for one operation.
fn outcome(sb: &Sandbox, args: &[&str]) -> String {
    let profile = sb.path("profile.toml");
    let out = confined(&profile, &sb.probe(), args);
    match out.status.code() {
        Some(0) => stdout(&out),
        Some(159) => "killed=SIGSYS".into(),
        other => format!(
            "exit={other:?} stdout={} stderr={}",
            stdout(&out),
            stderr(&out)
        ),
    }
}

#[test]
fn read_only_and_unlisted_paths_deny_every_write_with_eacces() {
    require_root();
    let sb = Sandbox::new();
    sb.profile(free_port(), "");
    let ro = |p: &str| sb.path(p).display().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["write".into(), ro("ro/model.bin")], "errno=EACCES"),
        (vec!["create".into(), ro("ro/new")], "errno=EACCES"),
        (vec!["mkdir".into(), ro("ro/newdir")], "errno=EACCES"),
        (
            vec!["rename".into(), ro("ro/model.bin"), ro("ro/moved")],
            "errno=EACCES",
        ),
        // rw/ is its own (noexec) mount in a root start: the kernel refuses the rename across
        // mounts before Landlock is asked.
        (
            vec!["rename".into(), ro("ro/model.bin"), ro("rw/stolen")],
            "errno=EXDEV",
        ),
        (vec!["truncate".into(), ro("ro/model.bin")], "errno=EACCES"),
        (vec!["unlink".into(), ro("ro/model.bin")], "errno=EACCES"),
        (vec!["create".into(), ro("ro/sub/new")], "errno=EACCES"),
        (vec!["read".into(), ro("deny/secret")], "errno=EACCES"),
        (
            vec!["write".into(), "/etc/stockade-probe".into()],
            "errno=EACCES",
        ),
        (vec!["write".into(), ro("bin/probe")], "errno=EACCES"),
        // What the profile allows still works.
        (vec!["read".into(), ro("ro/model.bin")], "ok"),
        (vec!["create".into(), ro("rw/scratch")], "ok"),
        (vec!["mkdir".into(), ro("rw/d")], "ok"),
        (
            vec!["rename".into(), ro("rw/scratch"), ro("rw/moved")],
            "ok",
        ),
        (vec!["unlink".into(), ro("rw/moved")], "ok"),
    ];
    for (args, want) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(outcome(&sb, &a), want, "{args:?}");
    }
    assert_eq!(std::fs::read(sb.path("ro/model.bin")).unwrap(), b"weights");
}

/// `make_dirs` (triton-modelmesh's /tmp): directories come and go, no file can be created, written
/// or truncated below, even one the file permissions leave open (0666).
#[test]
fn make_dirs_allows_directories_and_refuses_files() {
    require_root();
    let sb = Sandbox::new();
    let profile = sb.profile(free_port(), "");
    let rw = sb.path("rw").display().to_string();
    let text = std::fs::read_to_string(&profile).unwrap().replace(
        &format!("read_write = [\"{rw}\", \"/dev/null\"]"),
        &format!("read_write = [\"/dev/null\"]\nmake_dirs = [\"{rw}\"]"),
    );
    assert!(text.contains("make_dirs"), "{text}");
    std::fs::write(&profile, text).unwrap();
    std::fs::write(sb.path("rw/open"), b"old").unwrap();
    let mut perm = std::fs::metadata(sb.path("rw/open")).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o666);
    std::fs::set_permissions(sb.path("rw/open"), perm).unwrap();
    let p = |r: &str| sb.path(r).display().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["mkdir".into(), p("rw/d")], "ok"),
        (vec!["mkdir".into(), p("rw/d/e")], "ok"),
        (vec!["create".into(), p("rw/new")], "errno=EACCES"),
        (vec!["create".into(), p("rw/d/e/model.py")], "errno=EACCES"),
        (vec!["write".into(), p("rw/open")], "errno=EACCES"),
        (vec!["truncate".into(), p("rw/open")], "errno=EACCES"),
        (vec!["read".into(), p("rw/open")], "ok"),
        (vec!["exec".into(), p("rw/open")], "errno=EACCES"),
    ];
    for (args, want) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(outcome(&sb, &a), want, "{args:?}");
    }
    // Checked from outside: the directories exist, no file appeared, the open file is intact.
    assert!(sb.path("rw/d/e").is_dir());
    assert!(!sb.path("rw/new").exists() && !sb.path("rw/d/e/model.py").exists());
    assert_eq!(std::fs::read(sb.path("rw/open")).unwrap(), b"old");
}

#[test]
fn exec_from_a_writable_directory_is_denied() {
    require_root();
    let sb = Sandbox::new();
    sb.profile(free_port(), "");
    std::fs::copy(sb.path("bin/probe"), sb.path("rw/copy")).unwrap();
    let copy = sb.path("rw/copy").display().to_string();
    assert_eq!(outcome(&sb, &["exec", &copy]), "errno=EACCES");
    // The same binary from the read-exec directory runs (it prints usage and exits 2).
    assert!(outcome(&sb, &["exec", &sb.probe()]).starts_with("exit=Some(2)"));
}

#[test]
fn tcp_bind_and_connect_outside_the_profile_are_denied() {
    require_root();
    let sb = Sandbox::new();
    let allowed = free_port();
    sb.profile(allowed, "");
    // Not the granted port (free_port holds nothing, so it can hand out the same one twice).
    let other = (0..100)
        .map(|_| free_port())
        .find(|p| *p != allowed)
        .unwrap();
    // A listener of ours the probe must not reach.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let lport = listener.local_addr().unwrap().port().to_string();
    assert_eq!(outcome(&sb, &["bind", &other.to_string()]), "errno=EACCES");
    assert_eq!(outcome(&sb, &["connect", &lport]), "errno=EACCES");
    assert!(listener.accept().is_err(), "the probe reached our listener");
    assert_eq!(outcome(&sb, &["bind", &allowed.to_string()]), "ok");
}

#[test]
fn dangerous_syscalls_are_killed_or_refused() {
    require_root();
    let sb = Sandbox::new();
    sb.profile(free_port(), "");
    let me = std::process::id().to_string();
    let cases: &[(&[&str], &str)] = &[
        (&["mount"], "killed=SIGSYS"),
        (&["unshare-user"], "killed=SIGSYS"),
        (&["ptrace", &me], "killed=SIGSYS"),
        (&["x32"], "killed=SIGSYS"),
        (&["i386"], "killed=SIGSYS"),
        // clone3 answers ENOSYS so libc falls back to clone; io_uring so event loops fall back
        // to epoll (never allowed, never killed).
        (&["clone3"], "errno=ENOSYS"),
        (&["io-uring"], "errno=ENOSYS"),
    ];
    for (args, want) in cases {
        assert_eq!(outcome(&sb, args), *want, "{args:?}");
    }
}

#[test]
fn setuid_is_refused_and_killed_when_the_profile_says_so() {
    require_root();
    let sb = Sandbox::new();
    let profile = sb.profile(free_port(), "");
    // Not in the allow-list: ENOSYS.
    assert_eq!(outcome(&sb, &["setuid0"]), "errno=ENOSYS");
    // The triton profile's `kill = ["@setid"]`: the process dies.
    let text = std::fs::read_to_string(&profile).unwrap();
    let text = text.replacen("allow = [", "kill = [\"@setid\"]\nallow = [", 1);
    std::fs::write(&profile, text).unwrap();
    assert_eq!(outcome(&sb, &["setuid0"]), "killed=SIGSYS");
}

#[test]
fn the_server_cannot_signal_its_supervisor() {
    require_root();
    let sb = Sandbox::new();
    sb.profile(free_port(), "");
    // The probe signals its parent, stockade: sig 0 and SIGTERM.
    let out = Command::new(stockade())
        .arg("--profile")
        .arg(sb.path("profile.toml"))
        .arg("--")
        .arg("/bin/sh")
        .arg("-c")
        .arg(format!(
            "{p} kill $PPID 0; {p} kill $PPID 15",
            p = sb.probe()
        ))
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "errno=EPERM\nerrno=EPERM", "{}", stderr(&out));
    assert!(out.status.success());
}

#[test]
fn abstract_unix_sockets_outside_the_sandbox_are_unreachable() {
    use std::os::linux::net::SocketAddrExt;
    require_root();
    let sb = Sandbox::new();
    sb.profile(free_port(), "");
    // Bound by us, outside the server's Landlock domain (like a supervisor's or systemd's).
    let name = format!("stockade-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    listener.set_nonblocking(true).unwrap();
    assert_eq!(outcome(&sb, &["connect-abstract", &name]), "errno=EPERM");
    assert!(
        listener.accept().is_err(),
        "the probe reached our abstract socket"
    );
}

#[test]
fn landlock_unavailable_means_nothing_starts() {
    require_root();
    let sb = Sandbox::new();
    let profile = sb.profile(free_port(), "");
    let marker = sb.path("rw/started");
    // stockade under a filter that answers landlock_create_ruleset with ENOSYS.
    let without_landlock = |args: &[&std::ffi::OsStr]| {
        let mut c = Command::new(sb.probe());
        c.arg("nolandlock")
            .arg(stockade())
            .arg("--profile")
            .arg(&profile)
            .args(args);
        run(&mut c, Duration::from_secs(20))
    };
    let out = without_landlock(&[
        "--".as_ref(),
        sb.probe().as_ref(),
        "create".as_ref(),
        marker.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("landlock feature 'fs' (ABI 1) is required") && err.contains("no Landlock"),
        "{err}"
    );
    assert!(!marker.exists());
    // The dry run says the same, without root privileges needed.
    let out = without_landlock(&["--dry-run".as_ref(), "--".as_ref(), "/bin/true".as_ref()]);
    assert_eq!(out.status.code(), Some(69));
    assert!(stdout(&out).contains("NOT SUPPORTED by this kernel"));
}

#[test]
fn only_standard_fds_reach_the_server() {
    require_root();
    let sb = Sandbox::new();
    sb.profile(free_port(), "");
    // An inherited descriptor 5 in stockade must not leak into the server.
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "exec 5</etc/hostname; exec {} --profile {} -- {} fds",
            stockade().display(),
            sb.path("profile.toml").display(),
            sb.probe()
        ))
        .output()
        .unwrap();
    // 0,1,2 and the fd read_dir itself opened.
    let line = stdout(&out);
    let fds: Vec<&str> = line.trim_start_matches("fds=").split(',').collect();
    assert_eq!(&fds[..3], ["0", "1", "2"], "{line}");
    assert_eq!(fds.len(), 4, "{line}: only the directory fd may follow");
}

/// Rootless (runAsNonRoot): started as uid 65534 with no capabilities but a full bounding set.
#[test]
fn rootless_start_still_confines() {
    require_root();
    let sb = Sandbox::new();
    let (mut child, probe) = start_sleeper(
        &sb,
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--",
        ],
    );
    let st = status(probe);
    kill_and_reap(&mut child);
    assert_eq!(st["Uid"], "65534\t65534\t65534\t65534");
    assert_eq!(st["Gid"], "65534\t65534\t65534\t65534");
    assert_zero_caps(&st, false);
    assert_ne!(
        st["CapBnd"], "0000000000000000",
        "setpriv left the bounding set full"
    );
    assert_eq!(st["NoNewPrivs"], "1");
    assert_eq!(st["Seccomp"], "2");
}

#[test]
fn rootless_reports_what_it_could_not_drop_and_still_denies() {
    require_root();
    let sb = Sandbox::new();
    let profile = sb.profile(free_port(), "");
    let setpriv = [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
    ];
    let ro = sb.path("ro/model.bin").display().to_string();
    let out = run(
        Command::new("setpriv")
            .args(setpriv)
            .arg(stockade())
            .arg("--profile")
            .arg(&profile)
            .arg("--")
            .arg("/bin/sh")
            .arg("-c")
            .arg(format!(
                "{p} write {ro}; {p} kill $PPID 0; {p} mount",
                p = sb.probe()
            )),
        Duration::from_secs(20),
    );
    let err = stderr(&out);
    assert!(
        err.contains("bounding set cannot be cleared without CAP_SETPCAP"),
        "{err}"
    );
    // Same uid as the supervisor now: only Landlock's signal scope stops the kill.
    assert!(
        stdout(&out).starts_with("errno=EACCES\nerrno=EPERM"),
        "{}",
        stdout(&out)
    );
    // The shell's last command, mount, was killed by seccomp: 128+SIGSYS.
    assert_eq!(out.status.code(), Some(159), "{err}");
}

#[test]
fn rootless_drops_capabilities_it_inherited() {
    require_root();
    let sb = Sandbox::new();
    let profile = sb.profile(free_port(), "");
    let marker = sb.path("rw/started");
    // uid 65534 but permitted/effective CAP_NET_RAW kept through ambient: stockade must drop
    // it before exec, and the server must not have it.
    let out = run(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=+net_raw",
                "--ambient-caps=+net_raw",
            ])
            .arg(stockade())
            .arg("--profile")
            .arg(&profile)
            .arg("--")
            .arg("/bin/sh")
            .arg("-c")
            .arg(format!(
                "grep -E 'Cap(Prm|Eff|Amb)' /proc/self/status; : > {}",
                marker.display()
            )),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for l in stdout(&out).lines() {
        assert!(l.ends_with("0000000000000000"), "{l}");
    }
    assert!(marker.exists());
}
