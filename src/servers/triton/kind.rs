//! Triton behind the server-kind seam: the `[triton]` argv rewrite, and what the final flags
//! mean for Landlock, the readiness probe and the restricted-API secret.

use std::ffi::OsString;

use crate::error::{Error, Result};
use crate::landlock_policy::Access3;
use crate::servers::{Kind, Prepared, Request};

pub struct Triton;

impl Kind for Triton {
    fn prepare(&self, req: &Request<'_>) -> Result<Prepared> {
        let p = &req.loaded.profile;
        let policy = p
            .triton
            .as_ref()
            .ok_or_else(|| Error::Internal("triton profile without policy".into()))?;
        if policy.get_ref().open_model_repository.is_some() {
            override_files_blocked(req)?;
        }
        let rw = super::rewrite(policy.get_ref(), req.args, req.dry_run).map_err(|e| {
            if e.missing {
                Error::MissingFlagPath(e.to_string())
            } else {
                Error::ServerFlag {
                    flag: e.flag.clone(),
                    reason: e.reason.clone(),
                }
            }
        })?;
        if u64::from(rw.exit_timeout_secs) >= req.supervise.stop_grace_secs {
            return Err(Error::ServerFlag {
                flag: "--exit-timeout-secs".into(),
                reason: format!(
                    "{}s must be shorter than the profile's supervise.stop_grace_secs ({}s), or \
                     Triton is killed while it drains",
                    rw.exit_timeout_secs, req.supervise.stop_grace_secs
                ),
            });
        }
        let mut out = Prepared::default();
        out.repositories
            .extend(rw.model_repositories.iter().cloned());
        let extra = &mut out.extra;
        for d in &rw.model_repositories {
            extra
                .rules
                .push((d.clone(), Access3::ReadOnly, "--model-repository".into()));
        }
        for d in &rw.read_exec_dirs {
            extra
                .rules
                .push((d.clone(), Access3::ReadExec, "triton directory flag".into()));
        }
        for f in &rw.read_files {
            extra
                .rules
                .push((f.clone(), Access3::ReadOnly, "triton file flag".into()));
        }
        for f in &rw.write_files {
            if req.dry_run && !f.exists() {
                out.notes
                    .push(format!("would create {} for the server", f.display()));
                continue;
            }
            if !req.dry_run {
                crate::servers::precreate_file(f, req.identity)?;
            }
            out.extra
                .rules
                .push((f.clone(), Access3::ReadWrite, "--log-file".into()));
        }
        if let Some(ready) = req.supervise.ready.as_ref().filter(|r| r.from_server_flags) {
            let Some(addr) = rw.http_endpoint else {
                return Err(Error::ServerFlag {
                    flag: "--allow-http".into(),
                    reason: "the profile's readiness probe (supervise.ready.from_server_flags) \
                             needs the HTTP endpoint, which the final flags disable"
                        .into(),
                });
            };
            out.ready = Some(crate::servers::ready_from(req.loaded, ready, addr)?);
        }
        out.extra.bind_tcp.extend(&rw.bind_ports);
        out.extra.connect_tcp.extend(&rw.connect_ports);
        out.notes.extend(rw.notes.iter().cloned());
        if rw.args.iter().any(|a| {
            a.starts_with("--http-restricted-api=") || a.starts_with("--grpc-restricted-protocol=")
        }) {
            let hidepid = super::exposure::proc_hidepid(
                &std::fs::read_to_string("/proc/self/mountinfo")
                    .map_err(|e| Error::os("/proc/self/mountinfo", e))?,
            );
            let (exposure, warning) = super::exposure::secret_exposure(&hidepid, req.identity.uid);
            out.secret_exposure = Some(exposure);
            out.warnings.extend(warning);
        }
        out.display_args = rw.redacted_args();
        out.args = rw.args.iter().map(OsString::from).collect();
        Ok(out)
    }
}

/// Triton writes a load request's `file:` overrides (a whole model: config and code) to
/// `/tmp/folderXXXXXX` (core `kDefaultMountDirectory`, not configurable). With the load API open
/// ([triton.open_model_repository]) the server must not be able to create files there: /tmp may
/// be `make_dirs` (the python backend's `python_env_XXXXXX` is a bare directory), never
/// `read_write`, nor below a `read_write` path.
fn override_files_blocked(req: &Request<'_>) -> Result<()> {
    let tmp = std::path::Path::new(OVERRIDE_DIR);
    for e in &req.loaded.profile.landlock.read_write {
        let p = std::path::Path::new(e.get_ref().path());
        let canon = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        if tmp.starts_with(&canon) {
            return Err(req.loaded.err(
                e.span(),
                format!(
                    "[triton.open_model_repository] needs {OVERRIDE_DIR} out of landlock \
                     read_write ({} is listed): a load's file: overrides are written to \
                     {OVERRIDE_DIR}/folderXXXXXX and executed; list {OVERRIDE_DIR} in make_dirs \
                     instead",
                    p.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Where tritonserver 2.51 localizes load overrides (core `kDefaultMountDirectory`).
const OVERRIDE_DIR: &str = "/tmp";
