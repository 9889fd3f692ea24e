//! Capabilities: the keep list (parent) and the five sets (child).

use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};

use crate::error::Result;
use crate::profile::{CapabilitiesSection, Loaded};

pub fn parse_keep(loaded: &Loaded, s: &CapabilitiesSection) -> Result<Vec<Capability>> {
    s.keep
        .iter()
        .map(|c| {
            let name = c.get_ref().to_ascii_uppercase();
            let name = if name.starts_with("CAP_") {
                name
            } else {
                format!("CAP_{name}")
            };
            Capability::from_str(&name)
                .map_err(|_| loaded.err(c.span(), format!("unknown capability '{}'", c.get_ref())))
        })
        .collect()
}

/// The kernel's highest capability number. The caps crate knows only the capabilities it was
/// built with; a newer kernel may have more, and they must be dropped and checked too.
pub fn last_cap() -> std::result::Result<u32, nix::errno::Errno> {
    let s = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").map_err(|e| {
        e.raw_os_error()
            .map_or(nix::errno::Errno::EIO, nix::errno::Errno::from_raw)
    })?;
    parse_last_cap(&s).ok_or(nix::errno::Errno::EINVAL)
}

fn parse_last_cap(s: &str) -> Option<u32> {
    s.trim().parse::<u32>().ok().filter(|n| *n < 64)
}

/// A capability list as the kernel's 64-bit mask.
pub fn mask(list: &[Capability]) -> u64 {
    list.iter().fold(0, |m, c| m | c.bitmask())
}

/// Drop every capability not kept from the bounding set, by number up to the kernel's
/// `cap_last_cap`. Needs CAP_SETPCAP, so it runs before the uid change. Dropping one that is
/// already out succeeds, so there is no read before each drop (one prctl per capability, not
/// two); the callers read the whole set back (`verify`).
pub fn drop_bounding(keep: &[Capability]) -> std::result::Result<(), nix::errno::Errno> {
    let keep = mask(keep);
    for n in 0..=last_cap()? {
        if keep & (1 << n) == 0 {
            crate::sys::capbset_drop(n)?;
        }
    }
    Ok(())
}

/// The errno inside a caps crate error: it keeps only the message, which ends with std's
/// "(os error N)". An error without one (the crate's own checks) is EINVAL.
pub fn errno_of(e: &caps::errors::CapsError) -> nix::errno::Errno {
    let s = e.to_string();
    s.rsplit_once("(os error ")
        .and_then(|(_, n)| n.trim_end_matches(')').parse::<i32>().ok())
        .map_or(nix::errno::Errno::EINVAL, nix::errno::Errno::from_raw)
}

/// Set inheritable, permitted, effective and ambient to exactly `keep`.
pub fn set_all(keep: &[Capability]) -> std::result::Result<(), caps::errors::CapsError> {
    let set: CapsHashSet = keep.iter().copied().collect();
    caps::clear(None, CapSet::Ambient)?;
    caps::set(None, CapSet::Inheritable, &set)?;
    caps::set(None, CapSet::Effective, &set)?;
    caps::set(None, CapSet::Permitted, &set)?;
    for c in keep {
        caps::raise(None, CapSet::Ambient, *c)?;
    }
    Ok(())
}

/// Read the sets back from the kernel (all 64 bits of /proc/self/status, including capabilities
/// the caps crate does not know): each must be exactly `keep` (the bounding set only when
/// `check_bounding`).
pub fn verify(keep: &[Capability], check_bounding: bool) -> bool {
    let Ok(status) = crate::sys::read_proc("/proc/self/status") else {
        return false;
    };
    let mut fields = vec!["CapEff", "CapPrm", "CapInh", "CapAmb"];
    if check_bounding {
        fields.push("CapBnd");
    }
    verify_status(&status, mask(keep), &fields)
}

fn verify_status(status: &str, want: u64, fields: &[&str]) -> bool {
    fields.iter().all(|f| {
        status
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k == f)
            .and_then(|(_, v)| u64::from_str_radix(v.trim(), 16).ok())
            == Some(want)
    })
}

pub fn names(list: &[Capability]) -> Vec<String> {
    list.iter().map(|c| c.to_string()).collect()
}

/// Capabilities left in the bounding set (reported in rootless mode, which cannot drop them
/// without CAP_SETPCAP).
pub fn bounding_now() -> Vec<String> {
    caps::read(None, CapSet::Bounding)
        .map(|s| {
            let mut v: Vec<String> = s.iter().map(|c| c.to_string()).collect();
            v.sort();
            v
        })
        .unwrap_or_default()
}

pub fn has_setpcap() -> bool {
    caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_beyond_the_caps_crate_fail_verification() {
        let status = "CapInh:\t0000000000000000\nCapPrm:\t0000020000000000\n\
                      CapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\n";
        // Bit 41 is beyond CAP_CHECKPOINT_RESTORE (40), the last one the caps crate knows.
        assert!(!verify_status(status, 0, &["CapEff", "CapPrm"]));
        assert!(verify_status(
            status,
            0,
            &["CapEff", "CapInh", "CapBnd", "CapAmb"]
        ));
        assert!(!verify_status("CapEff:\tzz\n", 0, &["CapEff"]));
        assert!(!verify_status("", 0, &["CapEff"]));
    }

    #[test]
    fn cap_last_cap_is_read_as_a_number_below_64() {
        assert_eq!(parse_last_cap("40\n"), Some(40));
        assert_eq!(parse_last_cap("63"), Some(63));
        assert_eq!(parse_last_cap("64"), None);
        assert_eq!(parse_last_cap(""), None);
        assert!(last_cap().is_ok_and(|n| n >= 40));
    }

    #[test]
    fn caps_errors_keep_their_errno() {
        let e =
            caps::errors::CapsError::from("capset failure: Operation not permitted (os error 1)");
        assert_eq!(errno_of(&e), nix::errno::Errno::EPERM);
        let e = caps::errors::CapsError::from(
            "PR_CAPBSET_DROP failure: Invalid argument (os error 22)",
        );
        assert_eq!(errno_of(&e), nix::errno::Errno::EINVAL);
        let e = caps::errors::CapsError::from("not a base set");
        assert_eq!(errno_of(&e), nix::errno::Errno::EINVAL);
    }
}
