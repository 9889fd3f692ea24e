//! Regression tests for the security review in issue 14 (items 2, 4, 5, 8, 9, 11, 12, 13, 15 and
//! the code-quality notes), each against the real stockade binary and the real kernel. Every wait
//! is bounded; every process ended here is one this test started, by pid.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Sandbox, require_root, run, stderr, stdout};

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn script(p: &Path, body: &str) {
    std::fs::write(p, body).unwrap();
    chmod(p, 0o755);
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p).map_or(0, |s| s.lines().count())
}

/// Wait (bounded) for a child we started; on timeout kill it (by its pid) and return None.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    let end = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)));
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A supervision profile over the sandbox: `[supervise]` lines appended.
fn supervise_profile(sb: &Sandbox, pid_namespace: &str, supervise: &str) -> PathBuf {
    sb.profile(
        common::free_port(),
        &format!("[supervise]\npid_namespace = \"{pid_namespace}\"\n{supervise}\n"),
    )
}

fn spawn_stockade(profile: &Path, argv: &[&str], log: &Path) -> Child {
    Command::new(common::stockade())
        .arg("--profile")
        .arg(profile)
        .arg("--")
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .env("STOCKADE_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .spawn()
        .unwrap()
}

/// Item 4: a TERM that arrives while stockade cleans up the failed server's leftovers (a child
/// that ignores TERM keeps the cleanup busy for leftover_grace_ms) must stop stockade, not be
/// swallowed by a restart.
#[test]
fn stop_signal_during_leftover_cleanup_prevents_the_restart() {
    require_root();
    for ns in ["never", "auto"] {
        let sb = Sandbox::new();
        let count = sb.path("rw/starts");
        let p = supervise_profile(
            &sb,
            ns,
            "leftover_grace_ms = 3000\n[supervise.restart]\nmode = \"on-failure\"\n\
             max_restarts = 5\nbackoff_initial_ms = 50",
        );
        let cmd = format!(
            "echo x >> {}; trap '' TERM; sleep 30 & exit 1",
            count.display()
        );
        let log = sb.path("stderr.log");
        let mut child = spawn_stockade(&p, &["/bin/sh", "-c", &cmd], &log);
        let end = Instant::now() + Duration::from_secs(10);
        while lines(&count) == 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(lines(&count), 1, "{ns}: the first server did not start");
        // 1 s into the 3 s leftover cleanup (the server exits at once).
        std::thread::sleep(Duration::from_secs(1));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let t_term = Instant::now();
        let code = wait_bounded(&mut child, Duration::from_secs(15));
        println!(
            "[review] pid_namespace {ns}: TERM 1 s into the cleanup: {} starts, exit {code:?} {:.2} s after the TERM",
            lines(&count),
            t_term.elapsed().as_secs_f64()
        );
        let err = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(
            lines(&count),
            1,
            "{ns}: a server started after the TERM:\n{err}"
        );
        assert_eq!(
            code,
            Some(1),
            "{ns}: stockade did not stop with the server's code:\n{err}"
        );
        assert!(!err.contains("server restarted"), "{ns}: {err}");
    }
}

/// Item 5: an instantly failing server whose TERM-ignoring child keeps the cleanup busy longer
/// than backoff_max_ms still counts as failing: max_restarts = 2 gives three starts, then stop.
#[test]
fn max_restarts_is_reached_when_cleanup_outlasts_the_backoff() {
    require_root();
    let sb = Sandbox::new();
    let count = sb.path("rw/starts");
    let p = supervise_profile(
        &sb,
        "never",
        "leftover_grace_ms = 800\n[supervise.restart]\nmode = \"on-failure\"\n\
         max_restarts = 2\nbackoff_initial_ms = 50\nbackoff_max_ms = 300",
    );
    let cmd = format!(
        "echo x >> {}; trap '' TERM; sleep 30 & exit 3",
        count.display()
    );
    let log = sb.path("stderr.log");
    let t0 = Instant::now();
    let mut child = spawn_stockade(&p, &["/bin/sh", "-c", &cmd], &log);
    let code = wait_bounded(&mut child, Duration::from_secs(15));
    println!(
        "[review] max_restarts = 2, cleanup 0.8 s > backoff_max 0.3 s: {} starts, exit {code:?} after {:.2} s",
        lines(&count),
        t0.elapsed().as_secs_f64()
    );
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        (code, lines(&count)),
        (Some(3), 3),
        "exit code and number of starts:\n{err}"
    );
    assert!(err.contains("giving up"), "{err}");
    assert!(!err.contains("restart count reset"), "{err}");
}

/// `sh -c 'close fds 3-9; exec stockade ...'`: the fd numbers below 10 are then known free.
fn stockade_with_fds_closed(profile: &Path, opened: &str, argv: &[&str]) -> Output {
    let mut c = Command::new("/bin/sh");
    c.arg("-c")
        .arg(format!(
            "for fd in 3 4 5 6 7 8 9; do eval \"exec $fd>&-\"; done; {opened} exec \"$@\""
        ))
        .arg("sh")
        .arg(common::stockade())
        .arg("--profile")
        .arg(profile)
        .arg("--")
        .args(argv);
    run(&mut c, Duration::from_secs(10))
}

/// Item 8: a pass_fds entry that is not open at start is refused (exit 72, nothing started),
/// whatever number stockade's own pipes would get; an fd the caller did open reaches the server
/// and none of stockade's does.
#[test]
fn pass_fds_must_be_open_at_start() {
    require_root();
    let sb = Sandbox::new();
    let marker = sb.path("rw/started");
    let touch = format!(": > {}; ls /proc/self/fd", marker.display());
    for fd in 3..=9 {
        let p = supervise_profile(&sb, "never", &format!("pass_fds = [{fd}]"));
        let out = stockade_with_fds_closed(&p, "", &["/bin/sh", "-c", &touch]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(72), "fd {fd}: {err}");
        assert!(
            err.starts_with(&format!("stockade: supervise.pass_fds: fd {fd}: not open")),
            "fd {fd}: {err}"
        );
        assert!(!marker.exists(), "fd {fd}: the server started");
    }
    for bad in ["-1", "1"] {
        let p = supervise_profile(&sb, "never", &format!("pass_fds = [{bad}]"));
        let out = stockade_with_fds_closed(&p, "", &["/bin/true"]);
        assert_eq!(out.status.code(), Some(72), "{bad}: {}", stderr(&out));
    }
    // A passed fd that is open: the server sees 0, 1, 2, that fd (and ls's own directory fd);
    // nothing of stockade's (report pipe, signal pipe) reaches it.
    let p = supervise_profile(&sb, "never", "pass_fds = [4]");
    let check = format!("ls -l /proc/$$/fd; : > {}", marker.display());
    let out = stockade_with_fds_closed(&p, "exec 4</dev/null;", &["/bin/sh", "-c", &check]);
    // The server shell's own fds: 0-2 (ours: pipes to this test), and 4.
    let fds: Vec<String> = stdout(&out)
        .lines()
        .filter_map(|l| l.split_once(" -> "))
        .map(|(l, target)| format!("{}={target}", l.split_whitespace().last().unwrap()))
        .filter(|f| !f.starts_with("0=") && !f.starts_with("1=") && !f.starts_with("2="))
        .collect();
    assert_eq!(fds, ["4=/dev/null"], "{}", stderr(&out));
    assert!(marker.exists());
}

/// Item 9: a rootless start with supplementary group 0 is refused (the group cannot be dropped
/// without CAP_SETGID and would reach the server).
#[test]
fn rootless_with_supplementary_group_0_is_refused() {
    require_root();
    let sb = Sandbox::new();
    let p = sb.profile(common::free_port(), "");
    let marker = sb.path("rw/started");
    let out = run(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--groups=65534,0",
                "--inh-caps=-all",
            ])
            .arg(common::stockade())
            .arg("--profile")
            .arg(&p)
            .arg("--")
            .arg("/bin/sh")
            .arg("-c")
            .arg(format!("id; : > {}", marker.display())),
        Duration::from_secs(20),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(77), "{err}\n{}", stdout(&out));
    assert!(err.contains("supplementary gid 0"), "{err}");
    assert!(!marker.exists(), "the server started: {}", stdout(&out));
    // Without group 0 the same start works.
    let out = run(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--groups=65534",
                "--inh-caps=-all",
            ])
            .arg(common::stockade())
            .arg("--profile")
            .arg(&p)
            .arg("--")
            .arg("/bin/sh")
            .arg("-c")
            .arg(format!(": > {}", marker.display())),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(marker.exists());
}

/// Code-quality note: a bare server name is searched in PATH like execvp does: a
/// non-executable file of that name in an earlier directory is skipped.
#[test]
fn path_search_skips_non_executable_files() {
    require_root();
    let sb = Sandbox::new();
    for d in ["bin/a", "bin/b"] {
        std::fs::create_dir(sb.path(d)).unwrap();
        chmod(&sb.path(d), 0o755);
    }
    std::fs::write(sb.path("bin/a/srv"), "not a program\n").unwrap();
    chmod(&sb.path("bin/a/srv"), 0o644);
    script(&sb.path("bin/b/srv"), "#!/bin/sh\necho from-b\n");
    let p = sb.profile(common::free_port(), "");
    let text = std::fs::read_to_string(&p).unwrap().replace(
        "PATH = \"/usr/bin:/bin\"",
        &format!(
            "PATH = \"{}:{}:/usr/bin:/bin\"",
            sb.path("bin/a").display(),
            sb.path("bin/b").display()
        ),
    );
    std::fs::write(&p, text).unwrap();
    let out = common::confined(&p, "srv", &[]);
    assert_eq!(
        (out.status.code(), stdout(&out).as_str()),
        (Some(0), "from-b"),
        "{}",
        stderr(&out)
    );
    // Only a non-executable match: reported as not executable (126), not run.
    std::fs::remove_file(sb.path("bin/b/srv")).unwrap();
    let out = common::confined(&p, "srv", &[]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert!(stderr(&out).contains("not executable"), "{}", stderr(&out));
}

/// Code-quality note: with /proc unreadable stockade cannot count its threads, so it must not
/// assume it has one: it refuses to start.
#[test]
fn unreadable_proc_is_an_error_not_one_thread() {
    require_root();
    let sb = Sandbox::new();
    let p = supervise_profile(&sb, "never", "");
    let marker = sb.path("rw/started");
    let out = run(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "/bin/sh", "-c"])
            .arg("mount -t tmpfs none /proc && exec \"$@\"")
            .arg("sh")
            .arg(common::stockade())
            .arg("--profile")
            .arg(&p)
            .arg("--")
            .arg("/bin/sh")
            .arg("-c")
            .arg(format!(": > {}", marker.display())),
        Duration::from_secs(20),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(71), "{err}");
    assert!(err.contains("/proc/self/task"), "{err}");
    assert!(!marker.exists(), "the server started");
}

/// Item 15: every capability set of the server is empty over all 64 bits the kernel reports
/// (/proc/<pid>/status), and the kernel's cap_last_cap is what stockade walks.
#[test]
fn capability_sets_are_empty_up_to_cap_last_cap() {
    require_root();
    let sb = Sandbox::new();
    let p = sb.profile(common::free_port(), "");
    let out = common::confined(
        &p,
        "/bin/sh",
        &[
            "-c",
            "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    assert_eq!(s.lines().count(), 5, "{s}");
    for l in s.lines() {
        assert!(l.ends_with("\t0000000000000000"), "{l}");
    }
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(last >= 40, "cap_last_cap {last}");
}

// ---- Triton argv handling (items 2, 11, 12, 13), with the built-in triton profile pointed at a
// ---- temporary install; the "server" is a script, so these need no Triton.

struct Tx {
    sb: Dir,
    profile: PathBuf,
    repo: PathBuf,
    secret_dir: PathBuf,
}

/// A 0755 directory outside /tmp (the triton profile makes /tmp read-write).
struct Dir(tempfile::TempDir);

impl Dir {
    fn path(&self, rel: &str) -> PathBuf {
        self.0.path().join(rel)
    }
}

impl Tx {
    fn new() -> Tx {
        let sb = Dir(tempfile::Builder::new()
            .prefix("stockade-review-")
            .tempdir_in("/var/tmp")
            .unwrap());
        chmod(sb.0.path(), 0o755);
        for d in [
            "bin",
            "install",
            "install/backends",
            "install/repoagents",
            "install/caches",
            "repo",
            "repo/m1",
            "run",
            "log",
        ] {
            std::fs::create_dir(sb.path(d)).unwrap();
            chmod(&sb.path(d), 0o755);
        }
        let d = sb.0.path().display().to_string();
        let builtin = Command::new(common::stockade())
            .args(["--print-profile", "triton"])
            .output()
            .unwrap();
        let text = String::from_utf8(builtin.stdout)
            .unwrap()
            .replace("\"/opt/tritonserver", &format!("\"{d}/install"))
            .replace(
                "/run/stockade/triton-admin.secret",
                &format!("{d}/run/admin/admin.secret"),
            )
            .replace("/var/log/stockade", &format!("{d}/log"))
            .replace("read_exec = [", &format!("read_exec = [\"{d}/bin\","))
            .replace(
                "defer_stop_until_ready = true",
                "defer_stop_until_ready = false",
            );
        let profile = sb.path("triton.toml");
        std::fs::write(&profile, text).unwrap();
        // Stands in for tritonserver: the shell keeps the rewritten flags in its argv and waits.
        script(&sb.path("bin/server"), "#!/bin/sh\nsleep 30\n");
        Tx {
            repo: sb.path("repo"),
            secret_dir: sb.path("run/admin"),
            profile,
            sb,
        }
    }

    fn cmd(&self, dry_run: bool, extra: &[&str]) -> Command {
        let mut c = Command::new(common::stockade());
        c.arg("--profile").arg(&self.profile);
        if dry_run {
            c.arg("--dry-run");
        }
        c.arg("--")
            .arg(self.sb.path("bin/server"))
            .arg(format!("--model-repository={}", self.repo.display()))
            .args(extra);
        c
    }

    fn dry_run(&self, extra: &[&str]) -> Output {
        run(&mut self.cmd(true, extra), Duration::from_secs(20))
    }
}

/// Item 12: a refused single-dash (or positional) argument is echoed without its value.
#[test]
fn refused_arguments_do_not_echo_a_secret() {
    let tx = Tx::new();
    let secret = "OperatorSecret-0123456789abcdef";
    for arg in [
        format!("-http-restricted-api=model-repository:x-admin={secret}"),
        format!("-grpc-restricted-protocol=model-repository:x-admin={secret}"),
        format!("model-repository:x-admin={secret}"),
    ] {
        let out = tx.dry_run(&[&arg]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(78), "{arg}: {err}");
        assert!(!err.contains(secret), "{arg}: secret echoed: {err}");
        assert!(err.contains("<redacted>"), "{err}");
    }
}

/// Item 11: a symlink in a model repository counts as a model directory: its name, and the
/// name of the directory it points to, must be safe words (they reach the stub's `bash -c`).
#[test]
fn model_repository_symlinks_are_name_checked() {
    let tx = Tx::new();
    assert_eq!(tx.dry_run(&[]).status.code(), Some(0), "baseline");
    let bad = tx.sb.path("bad$(touch x)");
    std::fs::create_dir(&bad).unwrap();
    let ok_target = tx.sb.path("elsewhere");
    std::fs::create_dir(&ok_target).unwrap();
    for (link, target, what) in [
        ("m2;id", &ok_target, "symlink \"m2;id\""),
        ("m3", &bad, "points to"),
        ("m4$(id)", &tx.sb.path("missing"), "symlink \"m4$(id)\""),
    ] {
        let l = tx.repo.join(link);
        std::os::unix::fs::symlink(target, &l).unwrap();
        let out = tx.dry_run(&[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(78), "{link}: {err}");
        assert!(err.contains(what), "{link}: {err}");
        std::fs::remove_file(&l).unwrap();
    }
    // A safe symlink to a safely named directory is accepted.
    std::os::unix::fs::symlink(&ok_target, tx.repo.join("m5")).unwrap();
    assert_eq!(tx.dry_run(&[]).status.code(), Some(0));
}

/// Item 13: the generated secret goes only into a directory stockade's euid owns with mode
/// 0700, reached without following a symlink; the file appears under its name only (random
/// temporary name, renamed), replacing a planted symlink instead of writing through it.
#[test]
fn secret_file_directory_must_be_ours_and_0700() {
    require_root();
    let tx = Tx::new();
    let start = |tx: &Tx| {
        let mut c = tx.cmd(false, &[]);
        c.env("STOCKADE_LOG", "warn");
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A started server sleeps: stop it after the secret is in place (or stockade refused).
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end && child.try_wait().unwrap().is_none() {
            if common::descendants(child.id()).iter().any(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c == "sleep\n")
            }) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if child.try_wait().unwrap().is_none() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            )
            .unwrap();
        }
        common::wait_output(child, Duration::from_secs(20))
    };
    // 0755: readable by others' directory listing, refused.
    std::fs::create_dir(&tx.secret_dir).unwrap();
    chmod(&tx.secret_dir, 0o755);
    let out = start(&tx);
    assert_eq!(out.status.code(), Some(78), "0755: {}", stderr(&out));
    assert!(stderr(&out).contains("mode 0700"), "{}", stderr(&out));
    assert!(!tx.secret_dir.join("admin.secret").exists());
    // 0700 but owned by another uid: refused.
    chmod(&tx.secret_dir, 0o700);
    std::os::unix::fs::chown(&tx.secret_dir, Some(65534), Some(65534)).unwrap();
    let out = start(&tx);
    assert_eq!(out.status.code(), Some(78), "uid 65534: {}", stderr(&out));
    assert!(stderr(&out).contains("owned by uid 0"), "{}", stderr(&out));
    // A symlink to a good directory: refused (O_NOFOLLOW).
    std::fs::remove_dir(&tx.secret_dir).unwrap();
    let real = tx.sb.path("run/real");
    std::fs::create_dir(&real).unwrap();
    chmod(&real, 0o700);
    std::os::unix::fs::symlink(&real, &tx.secret_dir).unwrap();
    let out = start(&tx);
    assert_eq!(out.status.code(), Some(78), "symlink: {}", stderr(&out));
    assert!(std::fs::read_dir(&real).unwrap().next().is_none());
    // Ours, 0700, with a symlink planted at the secret's name: replaced, not followed.
    std::fs::remove_file(&tx.secret_dir).unwrap();
    std::fs::create_dir(&tx.secret_dir).unwrap();
    chmod(&tx.secret_dir, 0o700);
    let victim = tx.sb.path("victim");
    std::fs::write(&victim, "untouched\n").unwrap();
    std::os::unix::fs::symlink(&victim, tx.secret_dir.join("admin.secret")).unwrap();
    let out = start(&tx);
    assert_eq!(out.status.code(), Some(143), "good dir: {}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
    let meta = std::fs::symlink_metadata(tx.secret_dir.join("admin.secret")).unwrap();
    assert!(meta.is_file() && meta.mode() & 0o777 == 0o600 && meta.uid() == 0);
    let names: Vec<String> = std::fs::read_dir(&tx.secret_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["admin.secret"], "left-over temporary files");
}

/// Item 2: the secret on the server's command line is readable by every host user when the
/// host /proc has no hidepid. stockade says so (warning + dry-run line, with the fix), and the
/// claim is checked from outside: uid 1 reads it from the host /proc. With a hidepid /proc the
/// dry run names who can still read it, and there is no warning.
#[test]
fn secret_exposure_in_host_proc_is_detected_and_stated() {
    require_root();
    let hidepid_now = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .rfind(|l| l.split_whitespace().nth(4) == Some("/proc"))
        .is_some_and(|l| {
            l.contains("hidepid=") && !l.contains("hidepid=0") && !l.contains("hidepid=off")
        });
    assert!(
        !hidepid_now,
        "this test needs a host /proc without hidepid (the default)"
    );
    let tx = Tx::new();
    let out = tx.dry_run(&[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let line = text
        .lines()
        .find(|l| l.starts_with("secret "))
        .unwrap_or_else(|| panic!("no secret line in the dry run:\n{text}"));
    assert!(line.contains("EVERY user"), "{line}");
    assert!(
        line.contains("mount -o remount,hidepid=invisible /proc"),
        "{line}"
    );
    assert!(
        text.contains("warning      the restricted-API secret"),
        "{text}"
    );

    // A real start: the warning, and uid 1 reading the secret from the host's /proc.
    std::fs::create_dir(&tx.secret_dir).unwrap();
    chmod(&tx.secret_dir, 0o700);
    let log = tx.sb.path("stderr.log");
    let mut child = tx
        .cmd(false, &[])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .env("STOCKADE_LOG", "warn")
        .spawn()
        .unwrap();
    let sleep = common::wait_child_exe(
        child.id(),
        Path::new("/usr/bin/sleep"),
        Duration::from_secs(10),
    );
    // The server is the shell running bin/server, sleep's parent.
    let stat = std::fs::read_to_string(format!("/proc/{sleep}/stat")).unwrap();
    let server: u32 = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let secret = std::fs::read_to_string(tx.secret_dir.join("admin.secret")).unwrap();
    let read = run(
        Command::new("setpriv")
            .args(["--reuid=1", "--regid=1", "--clear-groups", "cat"])
            .arg(format!("/proc/{server}/cmdline")),
        Duration::from_secs(10),
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let code = wait_bounded(&mut child, Duration::from_secs(20));
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(
        String::from_utf8_lossy(&read.stdout).contains(secret.trim()),
        "uid 1 could not read the secret; the warning would be wrong"
    );
    assert!(
        err.contains("readable by every user on this host")
            && err.contains("mount -o remount,hidepid=invisible /proc"),
        "{err}"
    );
    assert_eq!(code, Some(143), "{err}");

    // With a hidepid /proc (a new instance in a private mount namespace; the host's is not
    // touched): no warning, and the dry run names who can still read it.
    let out = run(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "/bin/sh", "-c"])
            .arg("mount -t proc -o hidepid=invisible,gid=4 proc /proc && exec \"$@\"")
            .arg("sh")
            .args(
                std::iter::once(tx.cmd(true, &[]).get_program().to_owned())
                    .chain(tx.cmd(true, &[]).get_args().map(|a| a.to_owned())),
            ),
        Duration::from_secs(20),
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let line = text.lines().find(|l| l.starts_with("secret ")).unwrap();
    assert!(
        line.contains("root and by processes of uid 65534 and of group 4")
            && line.contains("hidepid=invisible"),
        "{line}"
    );
    assert!(
        !text.contains("warning      the restricted-API secret"),
        "{text}"
    );
}
