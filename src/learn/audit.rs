//! The kernel's own account of a replay's denials: Landlock's audit records (types 1423 and
//! 1424, Landlock ABI 7 with logging after exec) and seccomp's (1326), read from /dev/kmsg as
//! root. Elsewhere the replay reports the errno it saw instead.

use std::collections::{BTreeMap, BTreeSet};

const AUDIT_GET: u16 = 1000;
const AUDIT_SET: u16 = 1001;
const AUDIT_STATUS_ENABLED: u32 = 1;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;

/// Kernel auditing switched on for the length of a replay (without an audit daemon its records
/// go to the kernel log), and back off when the last replay that needed it is done. Needs
/// CAP_AUDIT_CONTROL. Concurrent replays share it through a lock file: each holds it shared;
/// the one that can take it exclusively at its end, with the marker saying stockade turned
/// auditing on, turns it off. Auditing someone else turned on is never turned off.
pub struct AuditOn {
    sock: std::os::fd::OwnedFd,
    lock: Option<nix::fcntl::Flock<std::fs::File>>,
}

const LOCK: &str = "/run/stockade-learn-audit.lock";
const MARK: &str = "/run/stockade-learn-audit.enabled-by-stockade";

fn request(sock: &std::os::fd::OwnedFd, kind: u16, payload: &[u32]) -> Option<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let len = 16 + 4 * payload.len();
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    for w in payload {
        msg.extend_from_slice(&w.to_ne_bytes());
    }
    nix::sys::socket::send(sock.as_raw_fd(), &msg, nix::sys::socket::MsgFlags::empty()).ok()?;
    let mut buf = vec![0u8; 8192];
    // The status (for a GET) and the ACK: two answers at most.
    let mut status = None;
    for _ in 0..2 {
        let n = nix::sys::socket::recv(
            sock.as_raw_fd(),
            &mut buf,
            nix::sys::socket::MsgFlags::empty(),
        )
        .ok()?;
        if n < 20 {
            break;
        }
        let t = u16::from_ne_bytes([buf[4], buf[5]]);
        if t == 2 {
            // NLMSG_ERROR: 0 is the ACK.
            let e = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
            if e != 0 {
                return None;
            }
            if kind == AUDIT_SET {
                return Some(Vec::new());
            }
        } else if t == AUDIT_GET {
            status = Some(buf[16..n].to_vec());
        }
        if status.is_some() && kind == AUDIT_GET {
            return status;
        }
    }
    status
}

impl AuditOn {
    pub fn enable() -> Option<AuditOn> {
        use nix::sys::socket::{AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType};
        use std::os::unix::fs::OpenOptionsExt;
        let sock = nix::sys::socket::socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkAudit,
        )
        .ok()?;
        nix::sys::socket::bind(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            &NetlinkAddr::new(0, 0),
        )
        .ok()?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(LOCK)
            .ok()?;
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockShared).ok()?;
        let st = request(&sock, AUDIT_GET, &[])?;
        let enabled = u32::from_ne_bytes(st.get(4..8)?.try_into().ok()?);
        if enabled == 0 {
            request(
                &sock,
                AUDIT_SET,
                &[AUDIT_STATUS_ENABLED, 1, 0, 0, 0, 0, 0, 0],
            )?;
            let _ = std::fs::write(MARK, b"");
        }
        Some(AuditOn {
            sock,
            lock: Some(lock),
        })
    }
}

impl Drop for AuditOn {
    fn drop(&mut self) {
        let Some(file) = self.lock.take().and_then(|l| l.unlock().ok()) else {
            return;
        };
        // Another replay still holding it shared will do this when it ends.
        if let Ok(last) = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        {
            if std::fs::remove_file(MARK).is_ok() {
                let _ = request(
                    &self.sock,
                    AUDIT_SET,
                    &[AUDIT_STATUS_ENABLED, 0, 0, 0, 0, 0, 0, 0],
                );
            }
            let _ = last.unlock();
        }
    }
}

/// `key=value` of one audit record (a quoted value keeps its quotes off).
fn field<'a>(rec: &'a str, key: &str) -> Option<&'a str> {
    let at = rec.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &rec[at..];
    if let Some(q) = rest.strip_prefix('"') {
        q.split('"').next()
    } else {
        rest.split_whitespace().next()
    }
}

/// The Landlock denials of the domains that `pids` created, one line each with its count.
pub fn landlock_denials(records: &[String], pids: &BTreeSet<i32>) -> BTreeMap<String, u64> {
    let msg = |r: &str| r.split_once(';').map_or(r, |(_, m)| m).trim().to_string();
    let records: Vec<String> = records.iter().map(|r| msg(r)).collect();
    let domains: BTreeSet<&str> = records
        .iter()
        .filter(|r| r.contains("type=1424") && r.contains("status=allocated"))
        .filter(|r| {
            field(r, "pid")
                .and_then(|p| p.parse().ok())
                .is_some_and(|p| pids.contains(&p))
        })
        .filter_map(|r| field(r, "domain"))
        .collect();
    let mut out = BTreeMap::new();
    for r in records.iter().filter(|r| r.contains("type=1423")) {
        if !field(r, "domain").is_some_and(|d| domains.contains(d)) {
            continue;
        }
        let blockers = field(r, "blockers").unwrap_or("?");
        let object = ["path", "sport", "dport", "dest", "src", "opid", "ocomm"]
            .iter()
            .filter_map(|k| field(r, k).map(|v| format!("{k}={v}")))
            .collect::<Vec<_>>()
            .join(" ");
        *out.entry(format!("landlock {blockers} {object}"))
            .or_default() += 1;
    }
    out
}

/// The seccomp kill records (`type=1326`, SIGSYS) of processes running as `uid`: the syscall,
/// named when native.
pub fn seccomp_kills(records: &[String], uid: u32) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| crate::seccomp_policy::parse_kill_record(r, uid))
        .map(|k| {
            let arch = super::record::arch_name(k.killed.arch);
            if k.killed.arch == crate::seccomp_policy::native_audit_arch() {
                format!(
                    "{} ({arch})",
                    super::record::syscall_name(u64::from(k.killed.syscall))
                )
            } else {
                format!("syscall {} ({arch})", k.killed.syscall)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_our_domain_only() {
        let recs = [
            "6,1,2,-;audit: type=1424 audit(1.0:381): domain=1713de81a status=allocated mode=enforcing pid=16002 uid=65534 exe=\"/x/stockade\" comm=\"stockade\"",
            "6,2,2,-;audit: type=1423 audit(1.0:381): domain=1713de81a blockers=fs.make_reg path=\"/tmp/t/deny\" dev=\"vda\" ino=1",
            "6,3,2,-;audit: type=1424 audit(1.0:382): domain=99 status=allocated mode=enforcing pid=7 uid=0 exe=\"/y\" comm=\"y\"",
            "6,4,2,-;audit: type=1423 audit(1.0:382): domain=99 blockers=fs.read_file path=\"/etc/shadow\"",
            "6,5,2,-;audit: type=1423 audit(1.0:383): domain=1713de81a blockers=net.bind_tcp sport=9000",
        ]
        .map(String::from);
        let got = landlock_denials(&recs, &BTreeSet::from([16002]));
        let keys: Vec<&String> = got.keys().collect();
        assert_eq!(
            keys,
            [
                "landlock fs.make_reg path=/tmp/t/deny",
                "landlock net.bind_tcp sport=9000"
            ]
        );
    }
}
