//! The server's environment: empty, plus what the profile passes or sets.

use crate::error::Result;
use crate::profile::{EnvSection, Loaded};

/// Variables that change how the dynamic loader or libc load code.
const LOADER_PREFIXES: &[&str] = &["LD_", "GLIBC_TUNABLES", "GCONV_PATH", "MALLOC_"];

#[derive(Debug, Clone, serde::Serialize)]
pub struct EnvPlan {
    pub vars: Vec<(String, String)>,
    /// Names in stockade's own environment that match a deny prefix or a loader prefix: they
    /// never reach the server (logged at start so operators see what was scrubbed).
    pub scrubbed: Vec<String>,
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
    vars.sort();
    let mut scrubbed: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| denied(k).is_some() || is_loader(k))
        .collect();
    scrubbed.sort();
    Ok(EnvPlan { vars, scrubbed })
}

impl EnvPlan {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}
