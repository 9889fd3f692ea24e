//! stockade: put an inference server into least privilege, then supervise it.
//!
//! Pipeline: `profile` (parse) → `plan` (resolve everything fallible) → `supervise`
//! (fork) → `confine` (child: ids, caps, no_new_privs, Landlock, seccomp, exec) → `supervise`
//! (parent: signals, reaping, exit status; `supervise/` also holds the PID namespace,
//! readiness and sd_notify). See docs/ARCHITECTURE.md.

pub mod ability;
pub mod app;
pub mod bpf;
pub mod bpf_interp;
pub mod capabilities;
pub mod cli;
pub mod confine;
pub mod env;
pub mod error;
pub mod files;
pub mod identity;
pub mod landlock_policy;
pub mod learn;
pub mod logging;
pub mod mounts;
pub mod plan;
pub mod profile;
pub mod render;
pub mod report;
pub mod seccomp_policy;
pub mod servers;
pub mod supervise;
pub mod sys;

// The old paths, kept for code outside src/ (fuzz targets) written against them.
pub use supervise::{notify, ready};
