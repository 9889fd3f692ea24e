//! Top-level flow: load → plan → (dry run | supervise). No syscalls of its own.

use nix::sys::signal::SigSet;
use tracing::{info, warn};

use crate::cli::{Cli, Format};
use crate::error::{Error, Result, code};

pub fn run(cli: &Cli, original_mask: SigSet) -> Result<u8> {
    if cli.list_profiles {
        for (name, src) in crate::profile::BUILTIN {
            let desc = crate::profile::parse(name, name, src)
                .map(|l| l.profile.description)
                .unwrap_or_default();
            out(&format!("{name:<16} {desc}\n"));
        }
        return Ok(0);
    }
    if let Some(name) = &cli.print_profile {
        let src = crate::profile::builtin(name).ok_or_else(|| Error::ProfileNotFound {
            name: name.clone(),
            known: crate::profile::builtin_names(),
        })?;
        out(src);
        return Ok(0);
    }
    let spec = cli
        .profile
        .as_deref()
        .ok_or_else(|| Error::Usage("--profile is required".into()))?;
    let loaded = crate::profile::load(spec)?;
    let mut plan = crate::plan::build(&loaded, &cli.command, cli.dry_run)?;
    if cli.dry_run {
        match cli.format {
            Format::Text => out(&crate::render::text(&plan)),
            Format::Json => out(&format!("{}\n", crate::render::json(&plan))),
        }
        return Ok(if crate::render::fully_enforceable(&plan) {
            0
        } else {
            code::KERNEL
        });
    }
    for w in &plan.warnings {
        warn!("{w}");
    }
    for n in &plan.notes {
        info!("{n}");
    }
    if !plan.env.scrubbed.is_empty() {
        info!(names = ?plan.env.scrubbed, "environment variables that do not reach the server");
    }
    info!(
        profile = %plan.profile,
        uid = plan.identity.uid,
        gid = plan.identity.gid,
        mode = ?plan.identity.mode,
        landlock_rules = plan.landlock.rules.len(),
        bind_tcp = ?plan.landlock.bind_tcp,
        seccomp_default = %plan.seccomp.default_action,
        seccomp_allowed = plan.seccomp.allowed.len(),
        "confinement plan"
    );
    let from = if loaded.profile.server.cwd.is_some() {
        "the profile's server.cwd"
    } else {
        "the directory stockade was started in; set server.cwd to choose another"
    };
    let (uid, cwd) = (plan.identity.uid, plan.cwd.clone());
    let result = crate::supervise::run(&mut plan, original_mask);
    // stockade exits next: freeing the plan and the profile piece by piece would be work for
    // nothing on every launch's exit path (measured: ~0.06 ms).
    std::mem::forget(plan);
    std::mem::forget(loaded);
    result.map_err(|e| match e {
        Error::Confine {
            step: crate::report::Step::Chdir,
            errno,
        } => Error::os(
            format!(
                "confinement step 'chdir': the server (uid {uid}) cannot enter {} ({from})",
                cwd.display()
            ),
            errno,
        ),
        e => e,
    })
}

/// Write to stdout; a reader that went away (`stockade --dry-run | head -1`) ends the output,
/// it is not an error and must not panic (print! would).
fn out(text: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes()).and_then(|()| o.flush());
}
