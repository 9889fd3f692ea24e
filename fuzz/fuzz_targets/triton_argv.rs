//! The Triton argv rewriter (`triton::rewrite`, getopt_long-exact tokenizer in `grammar`) on an
//! arbitrary command line, under the built-in `triton` or `triton-explicit` policy.
//!
//! Input: the first byte picks the policy (bit 0); the rest, split at NUL, is the argv without
//! argv[0]. `@ROOT@` in an argument becomes the fixture directory (backends, caches, a model
//! repository, TLS files, a log directory), so seeds can name paths that exist. The fixture's
//! model repository is always given first.
//!
//! Properties beyond "no panic":
//! - an argv naming a denied flag in any spelling or abbreviation is refused;
//! - a refusal is one line;
//! - the canonical argv holds only `--<canonical-name>[=value]` tokens that the tokenizer reads
//!   back to themselves, none of them denied, every pinned value present;
//! - idempotence: the canonical argv, minus the profile's own restricted-API groups (which the
//!   rewriter adds every time), rewrites to the same argv and the same decisions (paths, ports,
//!   listener, exit timeout).
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use stockade::servers::triton::grammar::{self, Kind};
use stockade::servers::triton::{self, Policy, RewriteError, Rewritten};

/// The profile groups' secret (read from a file, so the run is not a dry run and values are real).
const SECRET: &str = "fuzz-secret-0123456789abcdef";

struct Fixture {
    root: PathBuf,
    policies: [Policy; 2],
}

fn policy(name: &str, root: &Path) -> Policy {
    let src = stockade::profile::builtin(name).unwrap_or_else(|| panic!("builtin {name}"));
    let loaded = stockade::profile::parse(name, name, src).unwrap_or_else(|e| panic!("{e}"));
    let mut p = loaded
        .profile
        .triton
        .unwrap_or_else(|| panic!("{name} has [triton]"))
        .into_inner();
    p.code_dirs.backend_directory = root.join("install/backends");
    p.code_dirs.repoagent_directory = root.join("install/repoagents");
    p.code_dirs.cache_directory = root.join("install/caches");
    p.code_dirs.allowed_roots = vec![root.join("install")];
    for g in &mut p.restricted {
        g.generate_secret_file = None;
        g.secret_fd = None;
        g.secret_file = Some(root.join("admin.secret"));
    }
    if let Some(lf) = p.log_file.as_mut() {
        lf.allowed_dirs = vec![root.join("log")];
    }
    p
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = std::env::temp_dir().join("stockade-fuzz-triton");
        for d in [
            "install/backends/python",
            "install/caches/local",
            "install/other",
            "repo/add/1",
            "repo2/m",
            "log",
            "tls",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap_or_else(|e| panic!("{d}: {e}"));
        }
        for f in ["tls/server.crt", "tls/server.key", "tls/ca.crt"] {
            std::fs::write(root.join(f), "x").unwrap_or_else(|e| panic!("{f}: {e}"));
        }
        std::fs::write(root.join("admin.secret"), format!("{SECRET}\n"))
            .unwrap_or_else(|e| panic!("secret: {e}"));
        let policies = [policy("triton", &root), policy("triton-explicit", &root)];
        Fixture { root, policies }
    })
}

/// The decisions a rewrite makes besides the argv.
fn decisions(rw: &Rewritten) -> impl PartialEq + std::fmt::Debug {
    (
        rw.model_repositories.clone(),
        rw.read_exec_dirs.clone(),
        rw.read_files.clone(),
        rw.write_files.clone(),
        rw.bind_ports.clone(),
        rw.http_endpoint,
        rw.connect_ports.clone(),
        rw.exit_timeout_secs,
    )
}

fn rewrite(p: &Policy, args: &[OsString]) -> Result<Rewritten, RewriteError> {
    let r = triton::rewrite(p, args, false);
    if let Err(e) = &r {
        let msg = e.to_string();
        assert!(!msg.contains('\n'), "refusal is not one line: {msg:?}");
    }
    r
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let fx = fixture();
    let policy = &fx.policies[usize::from(which & 1)];
    let root = fx.root.to_str().unwrap_or_default();
    let mut args = vec![OsString::from(format!("--model-repository={root}/repo"))];
    if !rest.is_empty() {
        for a in rest.split(|b| *b == 0) {
            let a = match std::str::from_utf8(a) {
                Ok(s) => s.replace("@ROOT@", root).into_bytes(),
                Err(_) => a.to_vec(),
            };
            args.push(OsString::from_vec(a));
        }
    }

    let result = rewrite(policy, &args);

    // A denied flag in any spelling is refused (when the argv tokenizes at all).
    if let Ok(tokens) = grammar::tokenize(&args)
        && let Some(t) = tokens
            .iter()
            .find(|t| policy.denied.contains_key(t.spec.id))
    {
        assert!(
            result.is_err(),
            "denied --{} given as --{} was accepted",
            t.spec.id,
            t.spelled
        );
    }
    let Ok(rw) = result else {
        return;
    };

    // Canonical form: every token is --<id>[=v], reads back as itself, and is not denied.
    let out: Vec<OsString> = rw.args.iter().map(OsString::from).collect();
    let tokens = grammar::tokenize(&out)
        .unwrap_or_else(|e| panic!("canonical argv does not tokenize: {e}\n{:?}", rw.args));
    assert_eq!(tokens.len(), rw.args.len(), "{:?}", rw.args);
    for (t, a) in tokens.iter().zip(&rw.args) {
        assert!(
            t.spelled == t.spec.id && t.spec.name == t.spec.id,
            "non-canonical spelling {a:?}"
        );
        assert!(
            !policy.denied.contains_key(t.spec.id),
            "denied flag emitted: {a:?}"
        );
        let want = match (t.spec.kind, &t.value) {
            (Kind::NoArg, None) => format!("--{}", t.spec.id),
            (_, Some(v)) => format!("--{}={v}", t.spec.id),
            _ => panic!("token shape {a:?}"),
        };
        assert_eq!(&want, a, "token does not read back as itself");
    }
    for (name, e) in &policy.pinned {
        let spec = grammar::by_id(name).unwrap_or_else(|| panic!("pinned {name}"));
        let v = if spec.kind == Kind::NoArg {
            format!("--{name}")
        } else {
            let v = grammar::canonical(spec, &e.value.raw()).unwrap_or_else(|e| panic!("{e}"));
            format!("--{name}={v}")
        };
        assert!(
            rw.args.contains(&v),
            "pinned {v} missing from {:?}",
            rw.args
        );
    }

    // Idempotence: the profile's own groups are added by every rewrite; drop them first.
    let own: Vec<String> = policy
        .restricted
        .iter()
        .flat_map(|g| {
            g.protocols.iter().map(move |p| {
                format!(
                    "--{}={}:{}={SECRET}",
                    p.flag(),
                    g.categories.join(","),
                    g.header
                )
            })
        })
        .collect();
    let again: Vec<OsString> = rw
        .args
        .iter()
        .filter(|a| !own.contains(a))
        .map(OsString::from)
        .collect();
    let rw2 = rewrite(policy, &again).unwrap_or_else(|e| {
        panic!("canonical argv refused: {e}\nfirst: {args:?}\nthen: {again:?}")
    });
    assert_eq!(rw.args, rw2.args, "not idempotent; input {args:?}");
    assert_eq!(
        decisions(&rw),
        decisions(&rw2),
        "decisions differ; input {args:?}"
    );
});
