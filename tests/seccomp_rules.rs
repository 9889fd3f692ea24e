//! seccomp on the real kernel: long argument rules (the generator once saturated their jumps at
//! 255 and let a denied call through), and the one line stockade prints when seccomp kills the
//! server, naming the syscall from the kernel's own record.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

/// One test at a time: a test copying the probe into its sandbox while another forks would see
/// ETXTBSY when it runs the copy (the fork holds the write fd until its exec).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn sixty_five_anded_checks_do_not_let_a_denied_call_through() {
    require_root();
    let _serial = serial();
    let sb = Sandbox::new();
    // getppid (in @default) narrowed by 71 ANDed rules: arg 1 == 0 first, then arg 0 == 0 x63,
    // then "bit 8 of arg 0 clear" x7. On b33bc58 the first check's failure jump saturated at 255
    // and landed on the 65th check (a JSET with the failed value still loaded), so getppid(0, 7)
    // and getppid(7, 0) were allowed: reproduced with the b33bc58 binary.
    let mut rules =
        String::from("[[seccomp.allow_if]]\nsyscall = \"getppid\"\narg = 1\nany_of = [0]\n");
    for _ in 0..63 {
        rules.push_str("[[seccomp.allow_if]]\nsyscall = \"getppid\"\narg = 0\nany_of = [0]\n");
    }
    for _ in 0..7 {
        rules
            .push_str("[[seccomp.allow_if]]\nsyscall = \"getppid\"\narg = 0\nbits_clear = 0x100\n");
    }
    let p = sb.profile(free_port(), "");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replacen("[env]", &format!("{rules}[env]"), 1);
    std::fs::write(&p, text).unwrap();
    let probe = sb.probe();
    let answer =
        |a: &str, b: &str| stdout(&confined(&p, &probe, &["syscall-args", "getppid", a, b]));
    assert_eq!(answer("0", "0"), "ok");
    assert_eq!(answer("0", "7"), "errno=ENOSYS");
    assert_eq!(answer("7", "0"), "errno=ENOSYS");
}

/// Run the probe to its seccomp death and return stockade's stderr. Without an audit daemon the
/// kernel prints its records through printk's rate limit (10 per 5 s, shared with every other
/// process dying of seccomp on this machine): when stockade says the record was dropped, wait for
/// the limit to refill and try again, a bounded number of times.
fn killed(p: &std::path::Path, sb: &Sandbox, args: &[&str]) -> String {
    for _ in 0..5 {
        let out = confined(p, &sb.probe(), args);
        assert_eq!(out.status.code(), Some(159), "{}", stderr(&out));
        let err = stderr(&out);
        if !err.contains("no seccomp record") {
            return err;
        }
        std::thread::sleep(std::time::Duration::from_secs(6));
    }
    panic!("no seccomp record reached the kernel log in 5 tries");
}

#[test]
fn a_seccomp_kill_names_the_syscall() {
    require_root();
    let _serial = serial();
    let sb = Sandbox::new();
    // With the PID namespace the supervisor sees a local pid (the record is matched by uid);
    // without, by the global pid.
    for extra in ["", "[supervise]\npid_namespace = \"never\"\n"] {
        let p = sb.profile(free_port(), extra);
        let err = killed(&p, &sb, &["ptrace", "1"]);
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("killed by seccomp"))
            .collect();
        assert_eq!(lines.len(), 1, "{extra}: {err}");
        assert!(
            lines[0].starts_with("stockade: ")
                && lines[0].contains("'ptrace' (nr 101)")
                && lines[0].contains("fixed kill set"),
            "{extra}: {err}"
        );
        // A syscall the profile itself kills: the line says what to change.
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(
            &p,
            text.replacen("allow = [", "kill = [\"@setid\"]\nallow = [", 1),
        )
        .unwrap();
        let err = killed(&p, &sb, &["setuid0"]);
        assert!(
            err.contains("'setuid' (nr 105)") && err.contains("from [seccomp] kill"),
            "{extra}: {err}"
        );
    }
}

#[test]
fn an_ambiguous_rule_is_refused_with_its_position_and_nothing_starts() {
    require_root();
    let _serial = serial();
    let sb = Sandbox::new();
    let marker = sb.path("rw/started");
    for (rule, says) in [
        // A deny compared on 64 bits of an int would be bypassed through the high bits: the width
        // must be stated.
        ("when = [{ arg = 1, eq = 0x5413 }]", "missing field `width`"),
        (
            "when = [{ arg = 1, width = 32, mask = 0xf, eq = 0x10 }]",
            "ambiguous",
        ),
        (
            "when = [{ arg = 1, width = 32, eq = 1 }]\naction = \"errno:EBOGUS\"",
            "unknown rule action",
        ),
    ] {
        let p = sb.profile(free_port(), "");
        let action = if rule.contains("action") {
            ""
        } else {
            "\naction = \"errno:EPERM\""
        };
        let text = std::fs::read_to_string(&p).unwrap().replacen(
            "[env]",
            &format!("[[seccomp.rules]]\nsyscall = \"ioctl\"\n{rule}{action}\n[env]"),
            1,
        );
        std::fs::write(&p, text).unwrap();
        let out = confined(&p, "/usr/bin/touch", &[marker.to_str().unwrap()]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(65), "{err}");
        assert!(err.starts_with("stockade: ") && err.contains(says), "{err}");
        assert!(err.contains("profile.toml:"), "no position: {err}");
        assert!(!marker.exists());
    }
}

/// A real libuv event loop (Node.js; libuv 1.46 here, told to use io_uring) probes io_uring and
/// falls back to its thread pool on ENOSYS. b33bc58 killed io_uring_setup: the server died with
/// exit 159 and no message (checked by hand with the b33bc58 binary).
#[test]
fn a_libuv_server_falls_back_from_io_uring_and_serves() {
    require_root();
    let _serial = serial();
    use std::io::{BufRead, Read, Write};
    let sb = Sandbox::new();
    let port = free_port();
    let p = sb.profile(port, "");
    let text = std::fs::read_to_string(&p).unwrap().replacen(
        "set = { PATH = \"/usr/bin:/bin\" }",
        "set = { PATH = \"/usr/bin:/bin\", HOME = \"/nonexistent\", UV_USE_IO_URING = \"1\" }",
        1,
    );
    assert!(
        text.contains("UV_USE_IO_URING"),
        "test profile's [env] changed"
    );
    std::fs::write(&p, text).unwrap();
    // Each request reads a file through libuv's fs layer, the part that uses io_uring.
    let script = format!(
        "require('http').createServer((q, r) => require('fs').readFile('{}', (e, d) => \
         r.end(e ? 'err ' + e.code : 'file ' + d.length))).listen({port}, '127.0.0.1', \
         () => console.log('listening'))",
        sb.path("ro/model.bin").display()
    );
    let mut child = std::process::Command::new(stockade())
        .arg("--profile")
        .arg(&p)
        .args(["--", "/usr/bin/node", "-e", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    if first.trim() != "listening" {
        let status = child.wait().unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        panic!("node did not come up ({status}): {first} {err}");
    }
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    let alive = child.try_wait().unwrap().is_none();
    kill_and_reap(&mut child);
    assert!(alive, "the server died");
    assert!(reply.ends_with("file 7"), "{reply}");
}
