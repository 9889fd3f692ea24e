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

/// Drop every capability not kept from the bounding set. Needs CAP_SETPCAP, so it runs before
/// the uid change.
pub fn drop_bounding(keep: &[Capability]) -> std::result::Result<(), caps::errors::CapsError> {
    for c in caps::all() {
        if !keep.contains(&c) && caps::has_cap(None, CapSet::Bounding, c).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, c)?;
        }
    }
    Ok(())
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

/// Read the sets back: each must be exactly `keep` (the bounding set only when `check_bounding`).
pub fn verify(keep: &[Capability], check_bounding: bool) -> bool {
    let want: CapsHashSet = keep.iter().copied().collect();
    let mut sets = vec![
        CapSet::Effective,
        CapSet::Permitted,
        CapSet::Inheritable,
        CapSet::Ambient,
    ];
    if check_bounding {
        sets.push(CapSet::Bounding);
    }
    sets.into_iter()
        .all(|s| caps::read(None, s).is_ok_and(|have| have == want))
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
