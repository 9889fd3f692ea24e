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
            println!("{name:<16} {desc}");
        }
        return Ok(0);
    }
    if let Some(name) = &cli.print_profile {
        let src = crate::profile::builtin(name).ok_or_else(|| Error::ProfileNotFound {
            name: name.clone(),
            known: crate::profile::builtin_names(),
        })?;
        print!("{src}");
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
            Format::Text => print!("{}", crate::render::text(&plan)),
            Format::Json => println!("{}", crate::render::json(&plan)),
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
    crate::supervisor::run(&mut plan, original_mask)
}
