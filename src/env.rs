//! The server's environment: empty, plus what the profile passes or sets.

use crate::error::{Error, Result};
use crate::profile::{EnvSection, Loaded};

/// Variables that change how the dynamic loader or libc load code.
const LOADER_PREFIXES: &[&str] = &["LD_", "GLIBC_TUNABLES", "GCONV_PATH", "MALLOC_"];

#[derive(Debug, Clone, serde::Serialize)]
pub struct EnvPlan {
    pub vars: Vec<(String, String)>,
    /// Names in stockade's own environment that match a deny prefix or a loader prefix: they
    /// never reach the server (logged at start so operators see what was scrubbed).
    pub scrubbed: Vec<String>,
    /// systemd socket activation for stockade: fds `3..3 + listen_fds` reach the server, with
    /// LISTEN_FDS (in `vars`) and LISTEN_PID = the server's own pid (set in the child). 0: none.
    pub listen_fds: i32,
}

/// The socket-activation variables; a deny prefix that matches one of them turns it off.
const ACTIVATION_VARS: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/// sd_listen_fds(3)'s rules: the variables are for stockade only when LISTEN_PID is its own pid
/// (otherwise they were left for some other process and are ignored); then LISTEN_FDS must be a
/// count, and every fd from 3 on that it names must be open.
pub fn socket_activation(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    own_pid: i32,
    is_open: impl Fn(i32) -> bool,
) -> Result<i32> {
    if listen_pid.and_then(|p| p.trim().parse::<i32>().ok()) != Some(own_pid) {
        return Ok(0);
    }
    let Some(raw) = listen_fds else {
        return Ok(0);
    };
    let n = raw
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|n| *n >= 0 && n.checked_add(3).is_some())
        .ok_or_else(|| {
            Error::Usage(format!(
                "socket activation: LISTEN_FDS='{raw}' is not a count of file descriptors \
                 (LISTEN_PID names this process)"
            ))
        })?;
    if let Some(fd) = (3..3 + n).find(|fd| !is_open(*fd)) {
        return Err(Error::Usage(format!(
            "socket activation: LISTEN_FDS={n} but fd {fd} is not open (LISTEN_PID names this \
             process)"
        )));
    }
    Ok(n)
}

fn is_loader(name: &str) -> bool {
    LOADER_PREFIXES.iter().any(|p| name.starts_with(p))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('=') && !name.contains('\0')
}

pub fn build(loaded: &Loaded, s: &EnvSection) -> Result<EnvPlan> {
    let denied = |name: &str| {
        s.deny_prefixes
            .iter()
            .find(|p| name.starts_with(p.as_str()))
    };
    let check = |name: &str, span: std::ops::Range<usize>| -> Result<()> {
        if !valid_name(name) {
            return Err(loaded.err(span, format!("invalid environment variable name '{name}'")));
        }
        if name == "NOTIFY_SOCKET" {
            return Err(loaded.err(
                span,
                "NOTIFY_SOCKET is stockade's own (it sends READY=1 after the probe passes)",
            ));
        }
        if let Some(p) = denied(name) {
            return Err(loaded.err(
                span,
                format!("environment variable '{name}' matches deny prefix '{p}'"),
            ));
        }
        if is_loader(name) && !s.allow_loader_variables {
            return Err(loaded.err(
                span,
                format!(
                    "'{name}' is a loader variable; set env.allow_loader_variables = true to pass it"
                ),
            ));
        }
        Ok(())
    };
    let mut vars: Vec<(String, String)> = Vec::new();
    for p in &s.pass {
        check(p.get_ref(), p.span())?;
        if let Ok(v) = std::env::var(p.get_ref()) {
            vars.push((p.get_ref().clone(), v));
        }
    }
    for (k, v) in &s.set {
        check(k.get_ref(), k.span())?;
        if v.contains('\0') {
            return Err(loaded.err(k.span(), format!("value of '{}' contains NUL", k.get_ref())));
        }
        vars.retain(|(name, _)| name != k.get_ref());
        vars.push((k.get_ref().clone(), v.clone()));
    }
    // Socket activation passes through the scrubbed environment on purpose: the variables
    // describe fds the operator's socket unit handed to stockade, for the server.
    let listen_fds = if ACTIVATION_VARS.iter().any(|n| denied(n).is_some()) {
        0
    } else {
        socket_activation(
            std::env::var("LISTEN_PID").ok().as_deref(),
            std::env::var("LISTEN_FDS").ok().as_deref(),
            nix::unistd::getpid().as_raw(),
            crate::sys::fd_is_open,
        )?
    };
    if listen_fds > 0 {
        vars.retain(|(k, _)| !ACTIVATION_VARS.contains(&k.as_str()));
        vars.push(("LISTEN_FDS".into(), listen_fds.to_string()));
        if let Ok(names) = std::env::var("LISTEN_FDNAMES") {
            vars.push(("LISTEN_FDNAMES".into(), names));
        }
    }
    vars.sort();
    let mut scrubbed: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| denied(k).is_some() || is_loader(k))
        .collect();
    scrubbed.sort();
    Ok(EnvPlan {
        vars,
        scrubbed,
        listen_fds,
    })
}

impl EnvPlan {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::socket_activation;

    #[test]
    fn socket_activation_follows_sd_listen_fds() {
        let open = |fd: i32| fd < 5;
        // Not for us: another pid, none, or garbage.
        assert_eq!(
            socket_activation(Some("41"), Some("2"), 42, open).ok(),
            Some(0)
        );
        assert_eq!(socket_activation(None, Some("2"), 42, open).ok(), Some(0));
        assert_eq!(
            socket_activation(Some("x"), Some("2"), 42, open).ok(),
            Some(0)
        );
        // For us.
        assert_eq!(
            socket_activation(Some("42"), Some("2"), 42, open).ok(),
            Some(2)
        );
        assert_eq!(socket_activation(Some("42"), None, 42, open).ok(), Some(0));
        assert_eq!(
            socket_activation(Some("42"), Some("0"), 42, open).ok(),
            Some(0)
        );
        // Bad count, or an fd that is not open.
        for bad in ["-1", "two", "2147483647"] {
            let e = socket_activation(Some("42"), Some(bad), 42, open).unwrap_err();
            assert!(e.to_string().contains("LISTEN_FDS"), "{e}");
        }
        let e = socket_activation(Some("42"), Some("3"), 42, open).unwrap_err();
        assert!(e.to_string().contains("fd 5 is not open"), "{e}");
    }
}
