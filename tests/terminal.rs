//! The operator's terminal: stockade runs under a shell on the slave side of a real pty, as from an
//! interactive root shell. From inside, the confined probe tries TIOCSTI (plain and with high bits
//! set in the request, which the kernel ignores) and TIOCLINUX; from outside, the test checks that
//! no byte reached the terminal's input queue and that the shell reads only what the test typed.
//! Positive controls: the same probe unconfined does inject (so the harness can see it), a
//! confined REPL reads its terminal, Ctrl-C gives 130, and the foreground comes back to the shell.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// One test at a time: a test copying the probe into its sandbox while another forks would see
/// ETXTBSY when it runs the copy (the fork holds the write fd until its exec).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A shell on a fresh pty: session leader with the pty as controlling terminal (setsid --ctty),
/// so it holds the foreground, as an interactive shell does.
struct Pty {
    master: std::fs::File,
    slave: OwnedFd,
    shell: Child,
    seen: Arc<Mutex<String>>,
}

impl Pty {
    fn start(script: &str) -> Pty {
        let pty = nix::pty::openpty(None, None).unwrap();
        let io = || Stdio::from(pty.slave.try_clone().unwrap());
        let shell = Command::new("setsid")
            .args(["--ctty", "sh", "-c", script])
            .stdin(io())
            .stdout(io())
            .stderr(io())
            .spawn()
            .unwrap();
        let master = std::fs::File::from(pty.master);
        let seen = Arc::new(Mutex::new(String::new()));
        let (mut reader, out) = (master.try_clone().unwrap(), seen.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once the last slave fd is closed.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Pty {
            master,
            slave: pty.slave,
            shell,
            seen,
        }
    }

    /// Wait (bounded) until the terminal showed `text`; returns everything shown so far.
    fn wait_for(&mut self, text: &str, limit: Duration) -> String {
        let end = Instant::now() + limit;
        loop {
            let seen = self.seen.lock().unwrap().clone();
            if seen.contains(text) {
                return seen;
            }
            if Instant::now() > end {
                kill_and_reap(&mut self.shell);
                panic!("terminal never showed {text:?} within {limit:?}; it showed:\n{seen}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn type_in(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
    }

    /// Is a line waiting in the terminal's input queue? (Canonical mode: readable means a
    /// complete line is there; an injected line would be.)
    fn input_pending(&self) -> bool {
        let mut fds = [nix::poll::PollFd::new(
            self.slave.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).unwrap() > 0
    }

    /// The terminal's foreground process group, read through the master side.
    fn foreground(&self) -> i32 {
        nix::unistd::tcgetpgrp(&self.master).unwrap().as_raw()
    }

    fn finish(mut self) {
        let end = Instant::now() + Duration::from_secs(10);
        while self.shell.try_wait().unwrap().is_none() {
            if Instant::now() > end {
                kill_and_reap(&mut self.shell);
                panic!("the shell did not finish");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn confined_cmd(sb: &Sandbox, args: &str) -> String {
    format!(
        "'{}' --profile '{}' -- '{}' {args}",
        stockade().display(),
        sb.path("profile.toml").display(),
        sb.probe()
    )
}

#[test]
fn the_server_cannot_push_input_into_the_terminal() {
    require_root();
    let _serial = serial();
    let sb = Sandbox::new();
    sb.profile(free_port(), "");
    let probe = sb.probe();
    // Control first: unconfined, the same probe does inject (dev.tty.legacy_tiocsti=1 here, and
    // the probe is in the terminal's session), and the shell reads the injected line.
    let script = format!(
        "'{probe}' tiocsti 'echo control\\n'; read c; echo \"control=[$c]\"; \
         {plain}; echo \"rc1=$?\"; {high}; echo \"rc2=$?\"; {linux}; echo \"rc3=$?\"; \
         echo probes-done; sleep 2; read l; echo \"got=[$l]\"",
        plain = confined_cmd(&sb, "tiocsti 'id -u\\n'"),
        high = confined_cmd(&sb, "tiocsti-high 'id -u\\n'"),
        linux = confined_cmd(&sb, "tioclinux"),
    );
    let mut pty = Pty::start(&script);
    pty.wait_for("control=[echo control]", Duration::from_secs(20));
    let seen = pty.wait_for("probes-done", Duration::from_secs(60));
    // Nothing is waiting in the terminal's input queue while the shell sleeps.
    assert!(
        !pty.input_pending(),
        "bytes reached the terminal's input queue:\n{seen}"
    );
    for rc in ["rc1=0", "rc2=0", "rc3=0"] {
        assert!(seen.contains(rc), "{rc} missing:\n{seen}");
    }
    // The probe reports EPERM from the filter: plain, high bits set, and TIOCLINUX (whose own
    // answer on a pty would be EINVAL).
    assert_eq!(
        seen.matches("errno=EPERM").count(),
        3,
        "expected three EPERM answers:\n{seen}"
    );
    pty.type_in(b"typed\n");
    let seen = pty.wait_for("got=[", Duration::from_secs(10));
    pty.wait_for("got=[typed]", Duration::from_secs(5));
    assert!(!seen.contains("got=[id -u]"), "{seen}");
    pty.finish();
}

#[test]
fn ctrl_c_gives_130_and_the_terminal_comes_back_to_the_shell() {
    require_root();
    let _serial = serial();
    let sb = Sandbox::new();
    // With the PID namespace (the outer half hands back) and without (the supervisor does).
    for extra in ["", "[supervise]\npid_namespace = \"never\"\n"] {
        sb.profile(free_port(), extra);
        let script = format!(
            "{}; echo \"rc=$?\"; read l; echo \"got=[$l]\"",
            confined_cmd(&sb, "sleep 30")
        );
        let mut pty = Pty::start(&script);
        let shell = i32::try_from(pty.shell.id()).unwrap();
        pty.wait_for("ready", Duration::from_secs(20));
        // The server holds the foreground while it runs (job control reaches it, as under a
        // shell).
        assert_ne!(pty.foreground(), shell, "{extra}");
        pty.type_in(&[0x03]); // Ctrl-C
        pty.wait_for("rc=130", Duration::from_secs(20));
        // Handed back: the shell is the foreground again and reads what is typed (no EIO).
        assert_eq!(pty.foreground(), shell, "{extra}");
        pty.type_in(b"after\n");
        let seen = pty.wait_for("got=[after]", Duration::from_secs(10));
        assert!(!seen.contains("WARN"), "{extra}: {seen}");
        pty.finish();
    }
}

#[test]
fn a_confined_repl_reads_its_terminal() {
    require_root();
    let _serial = serial();
    let sb = Sandbox::new();
    sb.profile(free_port(), "");
    let script = format!("{}; echo \"rc=$?\"", confined_cmd(&sb, "read-line"));
    let mut pty = Pty::start(&script);
    std::thread::sleep(Duration::from_millis(300));
    pty.type_in(b"2+2\n");
    let seen = pty.wait_for("rc=", Duration::from_secs(20));
    assert!(seen.contains("line=2+2") && seen.contains("rc=0"), "{seen}");
    pty.finish();
}

/// Window-size changes reach the server (SIGWINCH to the foreground group it holds) and it reads
/// the new size with TIOCGWINSZ, an ioctl the terminal rule leaves alone.
#[test]
fn window_size_changes_reach_the_server() {
    require_root();
    let _serial = serial();
    let sb = Sandbox::new();
    sb.profile(free_port(), "");
    let script = format!("{}; echo \"rc=$?\"", confined_cmd(&sb, "winsize"));
    let mut pty = Pty::start(&script);
    pty.wait_for("ready size=", Duration::from_secs(20));
    // stty on the slave sets the size (TIOCSWINSZ); the kernel signals the foreground group.
    let tty = nix::unistd::ttyname(&pty.slave).unwrap();
    let out = run(
        Command::new("stty")
            .arg("-F")
            .arg(&tty)
            .args(["rows", "41", "cols", "113"]),
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = pty.wait_for("rc=", Duration::from_secs(20));
    assert!(
        seen.contains("sigwinch size=41x113") && seen.contains("rc=0"),
        "{seen}"
    );
    pty.finish();
}
