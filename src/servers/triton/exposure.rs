//! Who can read the restricted-API secret that tritonserver takes only in argv.

/// The `hidepid` and `gid` options of the /proc this process sees (the topmost mount on /proc
/// in /proc/self/mountinfo); `None` when /proc is not hidden (no hidepid, or hidepid=0/off).
#[derive(Debug, PartialEq, Eq)]
pub struct Hidepid {
    pub mode: String,
    pub gid: Option<String>,
}

pub fn proc_hidepid(mountinfo: &str) -> Option<Hidepid> {
    let line = mountinfo
        .lines()
        .rfind(|l| l.split_whitespace().nth(4) == Some("/proc"))?;
    // Fields after " - ": fstype, source, super options (where procfs keeps hidepid).
    let (_, tail) = line.split_once(" - ")?;
    let mut t = tail.split_whitespace();
    if t.next() != Some("proc") {
        return None;
    }
    let opts: Vec<&str> = t.nth(1)?.split(',').collect();
    let opt = |k: &str| {
        opts.iter()
            .find_map(|o| o.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .map(str::to_string)
    };
    let mode = opt("hidepid").filter(|m| m != "0" && m != "off")?;
    Some(Hidepid {
        mode,
        gid: opt("gid"),
    })
}

/// Who can read the server's command line, and the warning when that is every host user.
/// tritonserver takes the restricted-API secret only in argv; the server's own PID namespace
/// hides it from the server's side, not from the host's /proc.
pub fn secret_exposure(hidepid: &Option<Hidepid>, server_uid: u32) -> (String, Option<String>) {
    match hidepid {
        None => (
            "the restricted-API secret is in the server's argv: EVERY user on this host can \
             read it in /proc/<pid>/cmdline (this /proc has no hidepid); fix: \
             `mount -o remount,hidepid=invisible /proc` (persist it in /etc/fstab)"
                .to_string(),
            Some(
                "the restricted-API secret in the server's argv is readable by every user on \
                 this host (/proc has no hidepid): run `mount -o remount,hidepid=invisible /proc` \
                 (and persist it in /etc/fstab)"
                    .into(),
            ),
        ),
        Some(h) => (
            format!(
                "the restricted-API secret is in the server's argv: readable in \
                 /proc/<pid>/cmdline by root and by processes of uid {server_uid}{} (/proc has \
                 hidepid={})",
                h.gid
                    .as_ref()
                    .map_or(String::new(), |g| format!(" and of group {g}")),
                h.mode
            ),
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidepid_is_read_from_the_proc_mount() {
        let host = "22 27 0:21 / /proc rw,relatime - proc proc rw\n";
        assert_eq!(proc_hidepid(host), None);
        let hidden = "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
                      99 27 0:50 / /proc rw,nosuid - proc proc rw,gid=4,hidepid=invisible\n";
        assert_eq!(
            proc_hidepid(hidden),
            Some(Hidepid {
                mode: "invisible".into(),
                gid: Some("4".into())
            })
        );
        let off = "22 27 0:21 / /proc rw - proc proc rw,hidepid=off\n";
        assert_eq!(proc_hidepid(off), None);
        let other = "22 27 0:21 / /proc/sys rw - proc proc rw,hidepid=2\n";
        assert_eq!(proc_hidepid(other), None);
    }
}
