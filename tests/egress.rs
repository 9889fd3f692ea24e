//! Egress: every way out but plain TCP (which Landlock governs) and UNIX sockets is closed by the
//! fixed seccomp rules, in every profile. Each attempt is made from inside the confined probe
//! (uid 65534, Landlock, seccomp); the test checks from outside that nothing arrived at a loopback
//! listener it owns, and that the errno is the one runtimes fall back on. Each refused path also
//! has a control: the same probe unconfined (or with the opt-in) does get through, so these tests
//! can fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// One test at a time: a test copying the probe into its sandbox while another forks would see
/// ETXTBSY when it runs the copy (the fork holds the write fd until its exec).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The test profile with `connect_tcp` set and extra `[seccomp]` keys.
fn profile(sb: &Sandbox, port: u16, seccomp_extra: &str) -> PathBuf {
    let p = sb.profile(port, "");
    let text = std::fs::read_to_string(&p).unwrap();
    let text = text
        .replacen("connect_tcp = []", &format!("connect_tcp = [{port}]"), 1)
        .replacen("[seccomp]\n", &format!("[seccomp]\n{seccomp_extra}"), 1);
    std::fs::write(&p, text).unwrap();
    p
}

fn outcome(profile: &std::path::Path, sb: &Sandbox, args: &[&str]) -> String {
    let out = confined(profile, &sb.probe(), args);
    match out.status.code() {
        Some(0) => stdout(&out),
        other => format!(
            "exit={other:?} stdout={} stderr={}",
            stdout(&out),
            stderr(&out)
        ),
    }
}

fn unconfined(sb: &Sandbox, args: &[&str]) -> String {
    stdout(&run(
        Command::new(sb.probe()).args(args),
        Duration::from_secs(10),
    ))
}

/// Did a connection arrive at `l` within `wait`?
fn accepted(l: &TcpListener, wait: Duration) -> bool {
    l.set_nonblocking(true).unwrap();
    let end = Instant::now() + wait;
    while Instant::now() < end {
        if l.accept().is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn udp_listener() -> (UdpSocket, String) {
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let port = u.local_addr().unwrap().port().to_string();
    (u, port)
}

fn received(u: &UdpSocket) -> Option<Vec<u8>> {
    let mut buf = [0u8; 64];
    u.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
}

#[test]
fn no_datagram_leaves_unless_the_profile_opts_in() {
    require_root();
    let _serial = serial();
    let sb = Sandbox::new();
    let p = profile(&sb, free_port(), "");
    let (u, port) = udp_listener();
    assert_eq!(
        outcome(&p, &sb, &["udp-send", &port]),
        "errno=EPROTONOSUPPORT"
    );
    assert_eq!(received(&u), None, "a datagram left the sandbox");
    // Every other non-stream IP socket is refused the same way (raw needs no privilege here:
    // the filter answers before the kernel checks).
    for (d, t, pr, want) in [
        ("2", "2", "17", "errno=EPROTONOSUPPORT"),
        ("10", "2", "0", "errno=EPROTONOSUPPORT"),
        ("2", "526338", "0", "errno=EPROTONOSUPPORT"), // SOCK_DGRAM|SOCK_NONBLOCK|SOCK_CLOEXEC
        ("2", "3", "1", "errno=EPROTONOSUPPORT"),
    ] {
        assert_eq!(
            outcome(&p, &sb, &["socket", d, t, pr]),
            want,
            "{d} {t} {pr}"
        );
    }

    // Opt-in: the profile says allow_udp and the dry run shows it; the datagram then arrives
    // (this kernel has no Landlock UDP rights to restrict its ports).
    let p = profile(&sb, free_port(), "allow_udp = true\n");
    assert_eq!(outcome(&p, &sb, &["udp-send", &port]), "ok");
    assert_eq!(received(&u).as_deref(), Some(&b"escaped"[..]));
    let dry = run(
        Command::new(stockade())
            .arg("--profile")
            .arg(&p)
            .args(["--dry-run", "--", "/bin/true"]),
        Duration::from_secs(10),
    );
    assert!(
        stdout(&dry).contains("UDP allowed (allow_udp)"),
        "{}",
        stdout(&dry)
    );
}

#[test]
fn mptcp_sctp_and_other_families_are_refused() {
    require_root();
    let _serial = serial();
    let sb = Sandbox::new();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let lport = l.local_addr().unwrap().port().to_string();
    // Control: unconfined, an MPTCP socket reaches the listener (falling back to TCP).
    assert_eq!(unconfined(&sb, &["socket", "2", "1", "262", &lport]), "ok");
    assert!(accepted(&l, Duration::from_secs(2)));
    // Confined: refused at socket(), even though the port is in connect_tcp (Landlock's TCP
    // rules do not cover MPTCP since its 2025 erratum, so this is the only barrier).
    let lport_n: u16 = lport.parse().unwrap();
    let p = profile(&sb, lport_n, "");
    for (d, t, pr) in [("2", "1", "262"), ("10", "1", "262"), ("2", "1", "256")] {
        assert_eq!(
            outcome(&p, &sb, &["socket", d, t, pr, &lport]),
            "errno=EPROTONOSUPPORT",
            "{d} {t} {pr}"
        );
    }
    assert!(
        !accepted(&l, Duration::from_millis(500)),
        "a connection got out"
    );
    // SCTP: this kernel has no SCTP module, so its own answer to a SEQPACKET SCTP socket is
    // ESOCKTNOSUPPORT; the filter's EPROTONOSUPPORT shows the rule answered first.
    assert_eq!(
        unconfined(&sb, &["socket", "2", "5", "132"]),
        "errno=ESOCKTNOSUPPORT"
    );
    assert_eq!(
        outcome(&p, &sb, &["socket", "2", "5", "132"]),
        "errno=EPROTONOSUPPORT"
    );
    assert_eq!(
        outcome(&p, &sb, &["socket", "2", "1", "132"]),
        "errno=EPROTONOSUPPORT"
    );
    // Other families: vsock, netlink, packet; and socketpair on anything but AF_UNIX.
    assert_eq!(unconfined(&sb, &["socket", "40", "1", "0"]), "ok");
    for (d, t) in [("40", "1"), ("16", "3"), ("17", "3")] {
        assert_eq!(
            outcome(&p, &sb, &["socket", d, t, "0"]),
            "errno=EAFNOSUPPORT",
            "{d} {t}"
        );
    }
    assert_eq!(
        outcome(&p, &sb, &["socketpair", "2", "1"]),
        "errno=EAFNOSUPPORT"
    );
}

#[test]
fn a_fast_open_send_does_not_connect() {
    require_root();
    let _serial = serial();
    let sb = Sandbox::new();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let lport = l.local_addr().unwrap().port().to_string();
    // Control: unconfined, sendto(MSG_FASTOPEN) opens a connection without connect(2).
    assert_eq!(unconfined(&sb, &["fastopen", &lport]), "ok");
    assert!(accepted(&l, Duration::from_secs(2)));
    // Confined, with the port NOT in connect_tcp: Landlock alone would miss this on < 7.2.
    let p = profile(&sb, free_port(), "");
    assert_eq!(outcome(&p, &sb, &["fastopen", &lport]), "errno=EOPNOTSUPP");
    assert!(
        !accepted(&l, Duration::from_millis(500)),
        "fast open connected"
    );
    // And a plain connect is still Landlock's to refuse.
    assert_eq!(outcome(&p, &sb, &["connect", &lport]), "errno=EACCES");
}

#[test]
fn what_servers_need_still_works() {
    require_root();
    let _serial = serial();
    let sb = Sandbox::new();
    let port = free_port();
    let p = profile(&sb, port, "");
    // Its own TCP listener, a connection to it, data over it.
    assert_eq!(outcome(&p, &sb, &["tcp-self", &port.to_string()]), "ok");
    // UNIX sockets of every kind a runtime uses (asyncio, multiprocessing, syslog).
    for t in ["1", "2", "5", "524289"] {
        assert_eq!(
            outcome(&p, &sb, &["socket", "1", t, "0"]),
            "ok",
            "AF_UNIX {t}"
        );
        assert_eq!(outcome(&p, &sb, &["socketpair", "1", t]), "ok", "pair {t}");
    }
    // IPv4/IPv6 stream with protocol 0 or IPPROTO_TCP, with SOCK_NONBLOCK|SOCK_CLOEXEC.
    for (d, t, pr) in [("2", "1", "0"), ("2", "526337", "6"), ("10", "1", "6")] {
        assert_eq!(
            outcome(&p, &sb, &["socket", d, t, pr]),
            "ok",
            "{d} {t} {pr}"
        );
    }
}
