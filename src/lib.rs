//! stockade: put an inference server into least privilege, then supervise it.
//!
//! Pipeline: `profile` (parse) → `plan` (resolve everything fallible) → `supervisor::spawn`
//! (fork) → `confine` (child: ids, caps, no_new_privs, Landlock, seccomp, exec) → `supervisor`
//! (parent: signals, reaping, exit status). See docs/ARCHITECTURE.md.

pub mod app;
pub mod bpf;
pub mod bpf_interp;
pub mod capabilities;
pub mod cli;
pub mod confine;
pub mod env;
pub mod error;
pub mod identity;
pub mod landlock_policy;
pub mod mounts;
pub mod notify;
pub mod pidns;
pub mod plan;
pub mod profile;
pub mod ready;
pub mod render;
pub mod report;
pub mod seccomp_policy;
pub mod supervisor;
pub mod sys;
pub mod triton;
