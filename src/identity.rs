//! Who the server runs as: resolution in the parent, the drop in the child.

use nix::unistd::{Gid, Group, Uid, User};

use crate::error::{Error, Result};
use crate::profile::{IdentitySection, Loaded, NameOrId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Started as root: change to the profile's user and group.
    Root,
    /// Started unprivileged (e.g. Kubernetes runAsNonRoot): keep the current ids.
    Rootless,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct IdentityPlan {
    pub mode: Mode,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub user: String,
    pub group: String,
    /// The profile's target, for reporting when rootless keeps other ids.
    pub profile_uid: u32,
    pub profile_gid: u32,
}

fn lookup_user(loaded: &Loaded, v: &toml::Spanned<NameOrId>) -> Result<(Uid, Gid, String)> {
    let at = loaded.at(v.span());
    match v.get_ref() {
        NameOrId::Id(n) => {
            let uid = Uid::from_raw(*n);
            // A number need not exist in /etc/passwd (containers often run as bare uids).
            match User::from_uid(uid) {
                Ok(Some(u)) => Ok((uid, u.gid, u.name)),
                _ => Ok((uid, Gid::from_raw(*n), n.to_string())),
            }
        }
        NameOrId::Name(name) => match User::from_name(name) {
            Ok(Some(u)) => Ok((u.uid, u.gid, u.name)),
            _ => Err(Error::UnknownUser {
                at,
                what: "user",
                name: name.clone(),
            }),
        },
    }
}

fn lookup_group(loaded: &Loaded, v: &toml::Spanned<NameOrId>) -> Result<(Gid, String)> {
    match v.get_ref() {
        NameOrId::Id(n) => {
            let gid = Gid::from_raw(*n);
            let name = match Group::from_gid(gid) {
                Ok(Some(g)) => g.name,
                _ => n.to_string(),
            };
            Ok((gid, name))
        }
        NameOrId::Name(name) => match Group::from_name(name) {
            Ok(Some(g)) => Ok((g.gid, g.name)),
            _ => Err(Error::UnknownUser {
                at: loaded.at(v.span()),
                what: "group",
                name: name.clone(),
            }),
        },
    }
}

fn group_name(gid: Gid) -> String {
    match Group::from_gid(gid) {
        Ok(Some(g)) => g.name,
        _ => gid.to_string(),
    }
}

/// Can this process change its ids? (root mode needs CAP_SETUID, CAP_SETGID and CAP_SETPCAP.)
fn can_change_ids() -> bool {
    use caps::{CapSet, Capability};
    [
        Capability::CAP_SETUID,
        Capability::CAP_SETGID,
        Capability::CAP_SETPCAP,
    ]
    .iter()
    .all(|c| caps::has_cap(None, CapSet::Effective, *c).unwrap_or(false))
}

pub fn resolve(loaded: &Loaded, s: &IdentitySection) -> Result<IdentityPlan> {
    let (uid, primary, user) = lookup_user(loaded, &s.user)?;
    if uid.is_root() {
        return Err(Error::RootTarget {
            at: Some(loaded.at(s.user.span())),
            what: "uid",
        });
    }
    let (gid, group) = match &s.group {
        Some(g) => {
            let r = lookup_group(loaded, g)?;
            if r.0.as_raw() == 0 {
                return Err(Error::RootTarget {
                    at: Some(loaded.at(g.span())),
                    what: "gid",
                });
            }
            r
        }
        None => {
            if primary.as_raw() == 0 {
                return Err(Error::RootTarget {
                    at: Some(loaded.at(s.user.span())),
                    what: "gid (the user's primary group)",
                });
            }
            (primary, group_name(primary))
        }
    };
    let mut groups = Vec::new();
    for g in &s.groups {
        let (gid, _) = lookup_group(loaded, g)?;
        if gid.as_raw() == 0 {
            return Err(Error::RootTarget {
                at: Some(loaded.at(g.span())),
                what: "supplementary gid",
            });
        }
        groups.push(gid.as_raw());
    }

    let ids = nix::unistd::getresuid().map_err(|e| Error::os("getresuid", e))?;
    let gids = nix::unistd::getresgid().map_err(|e| Error::os("getresgid", e))?;
    if ids.effective.is_root() {
        if !can_change_ids() {
            return Err(Error::RootTarget {
                at: None,
                what: "uid",
            });
        }
        return Ok(IdentityPlan {
            mode: Mode::Root,
            uid: uid.as_raw(),
            gid: gid.as_raw(),
            groups,
            user,
            group,
            profile_uid: uid.as_raw(),
            profile_gid: gid.as_raw(),
        });
    }
    // Rootless: the ids are what the runtime gave us; none of them may be 0.
    if [ids.real, ids.saved].iter().any(|u| u.is_root()) {
        return Err(Error::RootTarget {
            at: None,
            what: "real or saved uid",
        });
    }
    if [gids.real, gids.effective, gids.saved]
        .iter()
        .any(|g| g.as_raw() == 0)
    {
        return Err(Error::RootTarget {
            at: None,
            what: "gid",
        });
    }
    let current = ids.effective;
    let name = match User::from_uid(current) {
        Ok(Some(u)) => u.name,
        _ => current.to_string(),
    };
    let kept_groups: Vec<u32> = nix::unistd::getgroups()
        .map_err(|e| Error::os("getgroups", e))?
        .into_iter()
        .map(Gid::as_raw)
        .collect();
    // Supplementary groups cannot be cleared without CAP_SETGID: group 0 would reach the server.
    if kept_groups.contains(&0) {
        return Err(Error::RootTarget {
            at: None,
            what: "supplementary gid",
        });
    }
    Ok(IdentityPlan {
        mode: Mode::Rootless,
        uid: current.as_raw(),
        gid: gids.effective.as_raw(),
        groups: kept_groups,
        user: name,
        group: group_name(gids.effective),
        profile_uid: uid.as_raw(),
        profile_gid: gid.as_raw(),
    })
}
