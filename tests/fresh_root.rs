//! The server's filesystem view (root start): a fresh root that holds only the listed paths,
//! read-only binds that refuse metadata changes, nested mounts that inherit read-only/noexec, and
//! writable places a copied binary cannot be mapped executable from. Each attack runs inside the
//! confined probe; the outcome is checked from outside too (listener queue, mode/mtime, files).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// The test profile with a private /tmp and /dev/shm, these writable, and `mounts` appended to
/// its [mounts] table; chmod/utime allowed by seccomp so the mount is what answers them.
fn profile(sb: &Sandbox, mounts: &str, extra_rw: &[&Path]) -> PathBuf {
    let p = sb.profile(free_port(), "");
    let mut text = std::fs::read_to_string(&p).unwrap();
    let rw: String = extra_rw
        .iter()
        .map(|d| format!("\"{}\", ", d.display()))
        .collect();
    text = text.replace("read_write = [", &format!("read_write = [{rw}"));
    text = text.replace(
        "allow = [\"@default\",",
        "allow = [\"@file-metadata\", \"@default\",",
    );
    text.push_str(&format!("[mounts]\n{mounts}\n"));
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = sb.path(&format!("profile-{n}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

const FRESH: &str = "fresh_root = true\ntmpfs = [{ path = \"/tmp\", size_mb = 16 }, { path = \"/dev/shm\", size_mb = 16 }]";

fn out(o: &std::process::Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

/// Run the probe op confined; its answer (`ok`, `errno=...`).
fn attempt(profile: &Path, sb: &Sandbox, args: &[&str]) -> String {
    let o = confined(profile, &sb.probe(), args);
    assert!(o.status.success(), "{args:?}: {}", out(&o));
    stdout(&o).lines().last().unwrap_or("").to_string()
}

/// A world-connectable pathname socket outside every listed path (the D-Bus / container runtime
/// socket case), with its listener kept non-blocking to count what arrived.
struct HostSocket {
    path: PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl HostSocket {
    fn new(dir: &Path) -> HostSocket {
        let path = dir.join(format!("stockade-test-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
        listener.set_nonblocking(true).unwrap();
        HostSocket { path, listener }
    }
    fn arrived(&self) -> usize {
        let mut n = 0;
        while self.listener.accept().is_ok() {
            n += 1;
        }
        n
    }
}

impl Drop for HostSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn fresh_root_holds_only_the_listed_paths() {
    require_root();
    let sb = Sandbox::new();
    let sock = HostSocket::new(Path::new("/run"));
    let host_file = PathBuf::from(format!("/tmp/stockade-host-{}", std::process::id()));
    std::fs::write(&host_file, b"host").unwrap();
    std::fs::set_permissions(&host_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let sock_path = sock.path.display().to_string();

    // Control: without the fresh root the same probe reaches the host socket (Landlock ABI 7
    // does not govern connect to a pathname socket), so the attack is real.
    let plain = profile(&sb, "", &[]);
    assert_eq!(attempt(&plain, &sb, &["connect-unix", &sock_path]), "ok");
    assert_eq!(sock.arrived(), 1, "the control connection did not arrive");

    let fresh = profile(&sb, FRESH, &[Path::new("/tmp")]);
    assert_eq!(
        attempt(&fresh, &sb, &["connect-unix", &sock_path]),
        "errno=ENOENT"
    );
    assert_eq!(sock.arrived(), 0, "a connection reached the host socket");
    // Listed in connect_unix, the socket is bound into the view and reachable.
    let listed = std::fs::read_to_string(&fresh).unwrap().replace(
        "connect_tcp = []",
        &format!("connect_tcp = []\nconnect_unix = [\"{sock_path}\"]"),
    );
    let with_socket = sb.path("listed.toml");
    std::fs::write(&with_socket, listed).unwrap();
    assert_eq!(
        attempt(&with_socket, &sb, &["connect-unix", &sock_path]),
        "ok"
    );
    assert_eq!(sock.arrived(), 1, "the listed socket was not reached");
    // Not in the view at all (Landlock would say EACCES): the host's /tmp and /run.
    let hf = host_file.display().to_string();
    assert_eq!(attempt(&fresh, &sb, &["read", &hf]), "errno=ENOENT");
    // Positive controls: the listed paths work as before, the private /tmp is writable.
    let model = sb.path("ro/model.bin").display().to_string();
    assert_eq!(attempt(&fresh, &sb, &["read", &model]), "ok");
    let created = sb.path("rw/created");
    let c = created.display().to_string();
    assert_eq!(attempt(&fresh, &sb, &["create", &c]), "ok");
    assert!(created.exists(), "a read_write bind did not reach the host");
    assert_eq!(attempt(&fresh, &sb, &["create", "/tmp/private"]), "ok");
    assert!(!Path::new("/tmp/private").exists());
    assert_eq!(attempt(&fresh, &sb, &["read", "/dev/null"]), "ok");

    // From outside: the server's root is a read-only tmpfs and every mount in its view is a
    // listed path, the private tmpfs or its /proc.
    let mut c = Command::new(stockade());
    c.arg("--profile")
        .arg(&fresh)
        .arg("--")
        .arg(sb.probe())
        .args(["sleep", "30"]);
    let mut child = c
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = wait_child_exe(
        child.id(),
        &std::fs::canonicalize(sb.path("bin/probe")).unwrap(),
        Duration::from_secs(20),
    );
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    kill_and_reap(&mut child);
    let mounts: Vec<(String, String, String)> = info
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let fstype = l.split(" - ").nth(1).unwrap().split(' ').next().unwrap();
            (f[4].to_string(), f[5].to_string(), fstype.to_string())
        })
        .collect();
    let root = mounts.iter().find(|m| m.0 == "/").unwrap();
    assert_eq!(root.2, "tmpfs", "{info}");
    assert!(root.1.split(',').any(|o| o == "ro"), "{info}");
    let d = |r: &str| sb.path(r).display().to_string();
    let allowed = [
        "/".to_string(),
        "/usr".into(),
        "/etc".into(),
        "/tmp".into(),
        "/dev/shm".into(),
        "/proc".into(),
        "/dev/null".into(),
        "/dev/urandom".into(),
        d("bin"),
        d("ro"),
        d("rw"),
    ];
    for (point, _, _) in &mounts {
        assert!(
            allowed.iter().any(|a| a == point) || point.starts_with("/proc/"),
            "unlisted mount {point} in the server's view:\n{info}"
        );
    }
    assert!(!mounts.iter().any(|m| m.0.starts_with("/run")), "{info}");
    std::fs::remove_file(&host_file).unwrap();
}

#[test]
fn read_only_paths_refuse_metadata_changes_even_to_their_owner() {
    require_root();
    let sb = Sandbox::new();
    let model = sb.path("ro/model.bin");
    std::os::unix::fs::chown(&model, Some(65534), Some(65534)).unwrap();
    let before = std::fs::metadata(&model).unwrap();
    let m = model.display().to_string();

    let fresh = profile(&sb, FRESH, &[]);
    assert_eq!(attempt(&fresh, &sb, &["chmod", &m, "777"]), "errno=EROFS");
    assert_eq!(attempt(&fresh, &sb, &["utime", &m]), "errno=EROFS");
    let after = std::fs::metadata(&model).unwrap();
    assert_eq!(before.mode(), after.mode(), "mode changed");
    assert_eq!(before.mtime(), after.mtime(), "mtime changed");
    assert_eq!(before.mtime_nsec(), after.mtime_nsec(), "mtime changed");

    // Without a read-only mount the owner's chmod goes through (Landlock does not govern
    // metadata): stockade warns about it, before the start and in the dry run.
    let plain = profile(&sb, "", &[]);
    let dry = run(
        Command::new(stockade()).arg("--profile").arg(&plain).args([
            "--dry-run",
            "--",
            "/bin/true",
        ]),
        Duration::from_secs(20),
    );
    assert!(
        stdout(&dry).contains("is owned by the server's uid 65534"),
        "{}",
        out(&dry)
    );
    let o = confined(&plain, &sb.probe(), &["chmod", &m, "600"]);
    assert!(
        stderr(&o).contains("is owned by the server's uid 65534"),
        "{}",
        out(&o)
    );
    assert_eq!(stdout(&o), "ok", "the residual risk the warning names");
    assert_eq!(std::fs::metadata(&model).unwrap().mode() & 0o777, 0o600);
}

/// A tmpfs the test mounts at REPO/sub, unmounted on drop.
struct NestedTmpfs(PathBuf);

impl NestedTmpfs {
    fn new(at: PathBuf) -> NestedTmpfs {
        nix::mount::mount(
            Some("tmpfs"),
            &at,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("mode=0777,size=32m"),
        )
        .unwrap();
        NestedTmpfs(at)
    }
}

impl Drop for NestedTmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn a_mount_nested_in_a_repository_is_read_only_and_noexec_too() {
    require_root();
    let sb = Sandbox::new();
    let sub = sb.path("ro/sub");
    let nested = NestedTmpfs::new(sub.clone());
    // A "library" a model ships in the nested mount, world-writable on the host side.
    let lib = sub.join("lib.so");
    std::fs::copy(sb.path("bin/probe"), &lib).unwrap();
    std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o777)).unwrap();
    let l = lib.display().to_string();
    let x = sub.join("dropped").display().to_string();
    let ro = sb.path("ro").display().to_string();

    // Today's private mounts (the repository bound read-only noexec), and the fresh root with
    // the whole sandbox writable around the read-only repository.
    let in_place = profile(&sb, &format!("read_only_noexec = [\"{ro}\"]"), &[]);
    let fresh = profile(&sb, FRESH, &[sb.dir.path()]);
    for p in [&in_place, &fresh] {
        assert_eq!(attempt(p, &sb, &["mmap-exec", &l]), "errno=EPERM", "{p:?}");
        assert_eq!(attempt(p, &sb, &["create", &x]), "errno=EROFS", "{p:?}");
        assert_eq!(attempt(p, &sb, &["write", &l]), "errno=EROFS", "{p:?}");
    }
    assert!(!Path::new(&x).exists());
    assert_eq!(
        std::fs::read(&lib).unwrap(),
        std::fs::read(sb.probe()).unwrap()
    );
    drop(nested);
}

#[test]
fn a_binary_copied_to_a_writable_place_cannot_be_mapped_executable() {
    require_root();
    let sb = Sandbox::new();
    let probe = sb.probe();
    let copied = sb.path("rw/copied").display().to_string();
    let ran =
        |o: &std::process::Output| stdout(o).contains("\nUid:") || stdout(o).starts_with("Name:");

    // Rootless (no mount namespace) the attack works: Landlock checks execve, not mmap. This is
    // the residual risk the README states, and the proof that the attempt is real.
    let plain = profile(&sb, "", &[]);
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--",
    ])
    .arg(stockade())
    .arg("--profile")
    .arg(&plain)
    .args(["--", &probe, "ldso", &probe, &copied]);
    let o = run(&mut c, Duration::from_secs(20));
    assert!(ran(&o), "rootless: ld.so did not run the copy: {}", out(&o));
    std::fs::remove_file(&copied).unwrap();

    // Root start, today's mounts: every read_write path is bound noexec (writable_noexec).
    let o = confined(&plain, &probe, &["ldso", &probe, &copied]);
    assert!(!ran(&o), "ld.so ran a copied binary: {}", out(&o));
    assert!(out(&o).contains("failed to map segment"), "{}", out(&o));
    let c2 = sb.path("rw/copied2").display().to_string();
    assert_eq!(
        attempt(&plain, &sb, &["mmap-exec", &c2, &probe]),
        "errno=EPERM"
    );

    // Fresh root: the private /tmp and /dev/shm and the read_write binds.
    let fresh = profile(&sb, FRESH, &[Path::new("/tmp"), Path::new("/dev/shm")]);
    let o = confined(&fresh, &probe, &["ldso", &probe, "/tmp/copied"]);
    assert!(!ran(&o), "ld.so ran a copied binary: {}", out(&o));
    assert!(out(&o).contains("failed to map segment"), "{}", out(&o));
    for dst in ["/tmp/c", "/dev/shm/c", &c2] {
        assert_eq!(
            attempt(&fresh, &sb, &["mmap-exec", dst, &probe]),
            "errno=EPERM",
            "{dst}"
        );
    }
}

#[test]
fn landlock_features_after_abi_6_are_best_effort_unless_required() {
    require_root();
    let sb = Sandbox::new();
    let p = profile(&sb, "", &[]);
    let dry = run(
        Command::new(stockade()).arg("--profile").arg(&p).args([
            "--dry-run",
            "--format",
            "json",
            "--",
            "/bin/true",
        ]),
        Duration::from_secs(20),
    );
    // A missing newer feature the profile did not require keeps the dry run at 0.
    assert_eq!(dry.status.code(), Some(0), "{}", out(&dry));
    let v: serde_json::Value = serde_json::from_str(&stdout(&dry)).unwrap();
    let abi = v["landlock"]["kernel_abi"].as_i64().unwrap();
    let feature = |name: &str| {
        v["landlock"]["features"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["feature"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no feature {name}"))
    };
    for (name, since) in [("audit_log", 7), ("resolve_unix", 9), ("udp", 10)] {
        let f = feature(name);
        assert_eq!(f["required"], false, "{name}");
        assert_eq!(f["supported"], abi >= since, "{name} on ABI {abi}");
    }
    // Required and missing: nothing starts, and the message says how to relax it.
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("connect_tcp = []", "connect_tcp = []\nrequire = [\"udp\"]");
    std::fs::write(&p, text).unwrap();
    let marker = sb.path("rw/started");
    let o = confined(&p, &sb.probe(), &["create", &marker.display().to_string()]);
    if abi >= 10 {
        assert!(o.status.success(), "{}", out(&o));
    } else {
        assert_eq!(o.status.code(), Some(69), "{}", out(&o));
        assert!(
            stderr(&o).contains("landlock feature 'udp' (ABI 10) is required")
                && stderr(&o).contains("remove it from [landlock] require"),
            "{}",
            out(&o)
        );
        assert!(!marker.exists());
    }
}

#[test]
fn a_listed_host_tmp_is_the_hosts_own_in_a_fresh_root() {
    // /tmp is where the fresh root is staged in the child's namespace: a bind of the host's /tmp
    // must show the host's directory, not the staging tree.
    require_root();
    let sb = Sandbox::new();
    let p = profile(&sb, "fresh_root = true", &[Path::new("/tmp")]);
    let file = PathBuf::from(format!("/tmp/stockade-fresh-{}", std::process::id()));
    let f = file.display().to_string();
    assert_eq!(attempt(&p, &sb, &["create", &f]), "ok");
    assert!(
        std::fs::metadata(&file).is_ok_and(|m| m.uid() == 65534),
        "not created in the host's /tmp"
    );
    std::fs::remove_file(&file).unwrap();
    assert_eq!(
        attempt(&p, &sb, &["mmap-exec", &f, &sb.probe()]),
        "errno=EPERM"
    );
    let _ = std::fs::remove_file(&file);
}

#[test]
fn a_restarted_server_gets_a_new_fresh_root_and_its_tmpfs_rules() {
    // restart = on-failure: the first instance fails, the second must get the whole view again
    // (mounts, pivot_root) and a ruleset of its own whose rule for its new /tmp applies.
    require_root();
    let sb = Sandbox::new();
    let mut mounts = FRESH.to_string();
    mounts.push_str(
        "\n[supervise.restart]\nmode = \"on-failure\"\nmax_restarts = 2\nbackoff_initial_ms = 10\n",
    );
    // [supervise.restart] after [mounts]: the table header ends [mounts] first.
    let p = profile(&sb, &mounts, &[Path::new("/tmp")]);
    let first = sb.path("rw/first");
    let script = format!(
        "if [ -e {first} ]; then exec {probe} create /tmp/second; else : > {first}; exit 3; fi",
        first = first.display(),
        probe = sb.probe()
    );
    let mut c = Command::new(stockade());
    c.arg("--profile")
        .arg(&p)
        .args(["--", "/bin/sh", "-c", &script]);
    let o = run(&mut c, Duration::from_secs(30));
    assert!(
        first.exists(),
        "the first instance did not run: {}",
        out(&o)
    );
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(stdout(&o), "ok", "{}", out(&o));
    assert!(stderr(&o).contains("restarting"), "{}", out(&o));
}

#[test]
fn a_server_outside_the_fresh_root_is_refused_before_start() {
    require_root();
    let sb = Sandbox::new();
    let p = profile(&sb, FRESH, &[]);
    let outside = sb.path("deny/probe");
    std::fs::copy(sb.probe(), &outside).unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o755)).unwrap();
    let marker = sb.path("rw/started");
    let o = confined(
        &p,
        &outside.display().to_string(),
        &["create", &marker.display().to_string()],
    );
    assert_eq!(o.status.code(), Some(66), "{}", out(&o));
    assert!(
        stderr(&o).contains("not in the server's view"),
        "{}",
        out(&o)
    );
    assert!(!marker.exists());
}

/// The kernel audit switch (AUDIT_GET / AUDIT_SET over NETLINK_AUDIT), restored on drop.
struct AuditOn {
    fd: std::os::fd::OwnedFd,
    was: u32,
}

impl AuditOn {
    const GET: u16 = 1000;
    const SET: u16 = 1001;

    fn request(fd: &std::os::fd::OwnedFd, kind: u16, payload: &[u8]) -> Vec<u8> {
        use nix::sys::socket::{MsgFlags, recv, send};
        use std::os::fd::AsRawFd;
        let mut msg = Vec::new();
        msg.extend_from_slice(&(16 + payload.len() as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&(1u16 | 4).to_ne_bytes()); // NLM_F_REQUEST | NLM_F_ACK
        msg.extend_from_slice(&1u32.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(payload);
        send(fd.as_raw_fd(), &msg, MsgFlags::empty()).unwrap();
        let mut buf = vec![0u8; 8192];
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
        buf.truncate(n);
        buf
    }

    /// `enabled` in the audit_status the kernel answers AUDIT_GET with (after the ack, if any).
    fn enabled(fd: &std::os::fd::OwnedFd) -> u32 {
        let mut r = Self::request(fd, Self::GET, &[]);
        // NLMSG_ERROR (2) with error 0 is the ack; the status follows in the next message.
        if u16::from_ne_bytes([r[4], r[5]]) == 2 {
            use std::os::fd::AsRawFd;
            let mut buf = vec![0u8; 8192];
            let n = nix::sys::socket::recv(
                fd.as_raw_fd(),
                &mut buf,
                nix::sys::socket::MsgFlags::empty(),
            )
            .unwrap();
            buf.truncate(n);
            r = buf;
        }
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), Self::GET, "{r:?}");
        u32::from_ne_bytes([r[20], r[21], r[22], r[23]])
    }

    fn set(fd: &std::os::fd::OwnedFd, on: u32) {
        // struct audit_status { mask = AUDIT_STATUS_ENABLED, enabled, ... } (zeros after)
        let mut status = vec![0u8; 40];
        status[0..4].copy_from_slice(&1u32.to_ne_bytes());
        status[4..8].copy_from_slice(&on.to_ne_bytes());
        let r = Self::request(fd, Self::SET, &status);
        let err = i32::from_ne_bytes([r[16], r[17], r[18], r[19]]);
        assert_eq!(err, 0, "AUDIT_SET failed: {err}");
    }

    fn new() -> AuditOn {
        use nix::sys::socket::*;
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkAudit,
        )
        .unwrap();
        bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &NetlinkAddr::new(0, 0),
        )
        .unwrap();
        let was = Self::enabled(&fd);
        Self::set(&fd, 1);
        AuditOn { fd, was }
    }
}

impl Drop for AuditOn {
    fn drop(&mut self) {
        Self::set(&self.fd, self.was);
    }
}

#[test]
fn a_landlock_denial_after_exec_reaches_the_audit_log() {
    // ABI 7 (audit_log): without LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON the kernel logs no denial
    // once the server has exec'd. Audit is switched on for the test (no auditd: kauditd prints
    // the records to the kernel log) and restored afterwards.
    require_root();
    let sb = Sandbox::new();
    let p = profile(&sb, "", &[]);
    let kmsg = || {
        let o = Command::new("dmesg").output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // A create in deny/ (no rule) after exec: a make_reg denial whose record names this
    // sandbox's directory. kauditd prints through printk_ratelimit (10 per 5 s), so other tests'
    // seccomp records may crowd one out: try up to three times, 5 s apart.
    let deny = std::fs::canonicalize(sb.path("deny")).unwrap();
    let want = format!("blockers=fs.make_reg path=\"{}\"", deny.display());
    let target = deny.join("created").display().to_string();
    let mut found = String::new();
    for _ in 0..3 {
        let audit = AuditOn::new();
        assert_eq!(attempt(&p, &sb, &["create", &target]), "errno=EACCES");
        drop(audit);
        for _ in 0..25 {
            if let Some(l) = kmsg()
                .lines()
                .find(|l| l.contains("type=1423") && l.contains(&want))
            {
                found = l.to_string();
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        if !found.is_empty() {
            break;
        }
    }
    assert!(
        !found.is_empty(),
        "no Landlock denial record (type=1423, {want}) in the kernel log"
    );
}
