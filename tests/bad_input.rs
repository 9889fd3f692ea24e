//! Bad input: one clear message naming the problem and where, a distinct exit code, and nothing
//! started (the server command would create a marker file; it must not exist afterwards).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

struct Case {
    name: &'static str,
    /// (from, to) replacements applied to the sandbox's good profile.
    edit: &'static [(&'static str, &'static str)],
    /// Extra text appended to the profile.
    append: &'static str,
    /// stockade arguments; `PROFILE` and `SERVER...` are filled in.
    args: &'static [&'static str],
    code: i32,
    message: &'static str,
}

const RUN: &[&str] = &["--profile", "PROFILE", "--", "SERVER"];

const CASES: &[Case] = &[
    Case {
        name: "malformed toml",
        edit: &[("[seccomp]", "[seccomp")],
        append: "",
        args: RUN,
        code: 65,
        message: "profile.toml:12:9: unclosed table",
    },
    Case {
        name: "unknown top-level key",
        edit: &[],
        append: "colour = 1\n",
        args: RUN,
        code: 65,
        message: "unknown field `colour`",
    },
    Case {
        name: "unknown key in identity",
        edit: &[("user = \"nobody\"", "user = \"nobody\"\nusr = 1")],
        append: "",
        args: RUN,
        code: 65,
        message: "profile.toml:5:1: unknown field `usr`",
    },
    Case {
        name: "unknown key in landlock",
        edit: &[("connect_tcp = []", "connect_tcp = []\nread_writ = []")],
        append: "",
        args: RUN,
        code: 65,
        message: "unknown field `read_writ`",
    },
    Case {
        name: "unknown key in seccomp",
        edit: &[("default_action", "defualt = 1\ndefault_action")],
        append: "",
        args: RUN,
        code: 65,
        message: "unknown field `defualt`",
    },
    Case {
        name: "unknown key in allow_if",
        edit: &[("any_of = [1, 2, 10]", "any_of = [1, 2, 10]\nop = \"eq\"")],
        append: "",
        args: RUN,
        code: 65,
        message: "unknown field `op`",
    },
    Case {
        name: "unknown key in env",
        edit: &[("[env]", "[env]\nkeep = []")],
        append: "",
        args: RUN,
        code: 65,
        message: "unknown field `keep`",
    },
    Case {
        name: "unknown key in supervise",
        edit: &[],
        append: "[supervise]\ngrace = 3\n",
        args: RUN,
        code: 65,
        message: "unknown field `grace`",
    },
    Case {
        name: "unknown key in rlimits",
        edit: &[],
        append: "[rlimits]\nfiles = 3\n",
        args: RUN,
        code: 65,
        message: "unknown field `files`",
    },
    Case {
        name: "unknown key in capabilities",
        edit: &[],
        append: "[capabilities]\nadd = []\n",
        args: RUN,
        code: 65,
        message: "unknown field `add`",
    },
    Case {
        name: "unknown key in server",
        edit: &[],
        append: "[server]\nbinary = \"/x\"\n",
        args: RUN,
        code: 65,
        message: "unknown field `binary`",
    },
    Case {
        name: "wrong type for version",
        edit: &[("version = 1", "version = \"1\"")],
        append: "",
        args: RUN,
        code: 65,
        message: "profile.toml:1:11: invalid type: string \"1\"",
    },
    Case {
        name: "wrong type for a port",
        edit: &[("connect_tcp = []", "connect_tcp = [\"http\"]")],
        append: "",
        args: RUN,
        code: 65,
        message: "invalid type: string \"http\"",
    },
    Case {
        name: "port out of range",
        edit: &[("connect_tcp = []", "connect_tcp = [70000]")],
        append: "",
        args: RUN,
        code: 65,
        message: "profile.toml:11:",
    },
    Case {
        name: "unsupported version",
        edit: &[("version = 1", "version = 2")],
        append: "",
        args: RUN,
        code: 65,
        message: "profile.toml:1:11: unsupported profile version 2",
    },
    Case {
        name: "relative landlock path",
        edit: &[("read_write = [", "read_write = [\"scratch\", ")],
        append: "",
        args: RUN,
        code: 65,
        message: "landlock path 'scratch' must be absolute",
    },
    Case {
        name: "missing landlock path",
        edit: &[("read_write = [", "read_write = [\"/nonexistent/models\", ")],
        append: "",
        args: RUN,
        code: 66,
        message: "'/nonexistent/models': No such file or directory",
    },
    Case {
        name: "unknown user",
        edit: &[("user = \"nobody\"", "user = \"tritonx\"")],
        append: "",
        args: RUN,
        code: 67,
        message: "profile.toml:4:8: unknown user 'tritonx'",
    },
    Case {
        name: "unknown group",
        edit: &[("group = \"nogroup\"", "group = \"nogroupx\"")],
        append: "",
        args: RUN,
        code: 67,
        message: "profile.toml:5:9: unknown group 'nogroupx'",
    },
    Case {
        name: "uid 0 as target",
        edit: &[("user = \"nobody\"", "user = \"root\"")],
        append: "",
        args: RUN,
        code: 77,
        message: "profile.toml:4:8: uid 0 (root) is refused",
    },
    Case {
        name: "uid 0 by number",
        edit: &[("user = \"nobody\"", "user = 0")],
        append: "",
        args: RUN,
        code: 77,
        message: "uid 0 (root) is refused",
    },
    Case {
        name: "gid 0 as target",
        edit: &[("group = \"nogroup\"", "group = 0")],
        append: "",
        args: RUN,
        code: 77,
        message: "profile.toml:5:9: gid 0 (root) is refused",
    },
    Case {
        name: "root supplementary group",
        edit: &[(
            "group = \"nogroup\"",
            "group = \"nogroup\"\ngroups = [\"root\"]",
        )],
        append: "",
        args: RUN,
        code: 77,
        message: "supplementary gid 0 (root)",
    },
    Case {
        name: "unknown syscall",
        edit: &[("\"@process\"]", "\"@process\", \"opne\"]")],
        append: "",
        args: RUN,
        code: 65,
        message: "unknown syscall 'opne'",
    },
    Case {
        name: "unknown syscall group",
        edit: &[("\"@process\"]", "\"@proc\"]")],
        append: "",
        args: RUN,
        code: 65,
        message: "unknown syscall group '@proc'",
    },
    Case {
        name: "allowing a killed syscall",
        edit: &[("\"@process\"]", "\"@process\", \"ptrace\"]")],
        append: "",
        args: RUN,
        code: 65,
        message: "'ptrace' is in the kill set",
    },
    Case {
        name: "bad default action",
        edit: &[("errno:ENOSYS", "errno:EWHATEVER")],
        append: "",
        args: RUN,
        code: 65,
        message: "unknown errno name 'EWHATEVER'",
    },
    Case {
        name: "bad allow_if argument index",
        edit: &[("arg = 0\nany_of", "arg = 7\nany_of")],
        append: "",
        args: RUN,
        code: 65,
        message: "argument index 7 is not 0..=5",
    },
    Case {
        name: "unknown capability",
        edit: &[],
        append: "[capabilities]\nkeep = [\"CAP_FLY\"]\n",
        args: RUN,
        code: 65,
        message: "unknown capability 'CAP_FLY'",
    },
    Case {
        name: "unknown landlock feature",
        edit: &[(
            "connect_tcp = []",
            "connect_tcp = []\nbest_effort = [\"net\"]",
        )],
        append: "",
        args: RUN,
        code: 65,
        message: "unknown landlock feature 'net'",
    },
    Case {
        name: "unknown scope",
        edit: &[(
            "connect_tcp = []",
            "connect_tcp = []\nscopes = [\"ptrace\"]",
        )],
        append: "",
        args: RUN,
        code: 65,
        message: "unknown scope 'ptrace'",
    },
    Case {
        name: "loader variable passed",
        edit: &[("[env]", "[env]\npass = [\"LD_PRELOAD\"]")],
        append: "",
        args: RUN,
        code: 65,
        message: "'LD_PRELOAD' is a loader variable",
    },
    Case {
        name: "variable against a deny prefix",
        edit: &[(
            "[env]",
            "[env]\ndeny_prefixes = [\"AIP_\"]\npass = [\"AIP_MODE\"]",
        )],
        append: "",
        args: RUN,
        code: 65,
        message: "'AIP_MODE' matches deny prefix 'AIP_'",
    },
    Case {
        name: "missing required key",
        edit: &[("default_action = \"errno:ENOSYS\"\n", "")],
        append: "",
        args: RUN,
        code: 65,
        message: "missing field `default_action`",
    },
    Case {
        name: "missing identity section",
        edit: &[("[identity]\nuser = \"nobody\"\ngroup = \"nogroup\"\n", "")],
        append: "",
        args: RUN,
        code: 65,
        message: "profile.toml:1:1: missing field `identity`",
    },
    Case {
        name: "triton kind without policy",
        edit: &[],
        append: "[server]\nkind = \"triton\"\n",
        args: RUN,
        code: 65,
        message: "needs a [triton] section",
    },
    Case {
        name: "mlserver policy on another kind",
        edit: &[],
        append: "[mlserver]\nmax_parallel_workers = 2\n",
        args: RUN,
        code: 65,
        message: "[mlserver] applies only with server.kind = \"mlserver\"",
    },
    Case {
        name: "bentoml policy on another kind",
        edit: &[],
        append: "[bentoml]\ndefault_port = 3001\n",
        args: RUN,
        code: 65,
        message: "[bentoml] applies only with server.kind = \"bentoml\"",
    },
    Case {
        name: "unknown key in mlserver policy",
        edit: &[],
        append: "[mlserver]\nlisten = []\n",
        args: RUN,
        code: 65,
        message: "unknown field `listen`",
    },
    Case {
        name: "mlserver kind with an argv that is not `start FOLDER`",
        edit: &[],
        append: "[server]\nkind = \"mlserver\"\n",
        args: RUN,
        code: 78,
        message: "server flag refused: create: only `mlserver start FOLDER` serves",
    },
    Case {
        name: "relative cwd",
        edit: &[],
        append: "[server]\ncwd = \"srv\"\n",
        args: RUN,
        code: 65,
        message: "server.cwd 'srv' must be absolute",
    },
    Case {
        name: "empty command",
        edit: &[],
        append: "",
        args: &["--profile", "PROFILE", "--"],
        code: 64,
        message: "no server command",
    },
    Case {
        name: "server not found",
        edit: &[],
        append: "",
        args: &["--profile", "PROFILE", "--", "no-such-server-xyz"],
        code: 127,
        message: "server 'no-such-server-xyz': not found",
    },
    Case {
        name: "server not executable",
        edit: &[],
        append: "",
        args: &["--profile", "PROFILE", "--", "NOEXEC"],
        code: 126,
        message: "model.bin': not executable",
    },
    Case {
        name: "server outside read_exec",
        edit: &[],
        append: "",
        args: &["--profile", "PROFILE", "--", "RWEXEC"],
        code: 126,
        message: "cannot execute the server: Permission denied (EACCES); Landlock allows exec only below [landlock] read_exec paths",
    },
    Case {
        name: "profile file missing",
        edit: &[],
        append: "",
        args: &["--profile", "/nonexistent/p.toml", "--", "SERVER"],
        code: 66,
        message: "profile '/nonexistent/p.toml': No such file",
    },
    Case {
        name: "unknown built-in profile",
        edit: &[],
        append: "",
        args: &["--profile", "tritonn", "--", "SERVER"],
        code: 66,
        message: "profile 'tritonn': no such built-in profile",
    },
    Case {
        name: "conflicting options",
        edit: &[],
        append: "",
        args: &["--list-profiles", "--profile", "PROFILE"],
        code: 64,
        message: "cannot be used with",
    },
    Case {
        name: "format without dry run",
        edit: &[],
        append: "",
        args: &["--profile", "PROFILE", "--format", "json", "--", "SERVER"],
        code: 64,
        message: "--dry-run",
    },
    Case {
        name: "unknown option",
        edit: &[],
        append: "",
        args: &["--profile", "PROFILE", "--no-seccomp", "--", "SERVER"],
        code: 64,
        message: "unexpected argument '--no-seccomp'",
    },
];

#[test]
fn every_bad_input_has_its_message_code_and_starts_nothing() {
    require_root();
    assert!(CASES.len() >= 25);
    let mut failures = Vec::new();
    for case in CASES {
        let sb = Sandbox::new();
        let good = sb.profile(free_port(), "");
        let mut text = std::fs::read_to_string(&good).unwrap();
        for (from, to) in case.edit {
            assert!(
                text.contains(from),
                "{}: '{from}' not in the profile",
                case.name
            );
            text = text.replacen(from, to, 1);
        }
        text.push_str(case.append);
        std::fs::write(&good, &text).unwrap();
        let marker = sb.path("rw/started");
        let mut cmd = Command::new(stockade());
        for a in case.args {
            match *a {
                "PROFILE" => {
                    cmd.arg(&good);
                }
                "NOEXEC" => {
                    cmd.arg(sb.path("ro/model.bin"));
                }
                "RWEXEC" => {
                    std::fs::copy(sb.path("bin/probe"), sb.path("rw/probe")).unwrap();
                    cmd.arg(sb.path("rw/probe")).arg("create").arg(&marker);
                }
                "SERVER" => {
                    cmd.arg(sb.probe()).arg("create").arg(&marker);
                }
                other => {
                    cmd.arg(other);
                }
            }
        }
        let out = run(&mut cmd, Duration::from_secs(20));
        let err = stderr(&out);
        let ok = out.status.code() == Some(case.code)
            && err.contains(case.message)
            && !marker.exists()
            && err.lines().count() <= 3
            && !err.contains("panicked");
        if !ok {
            failures.push(format!(
                "{}: want {} '{}', got {:?} '{}' (marker {})",
                case.name,
                case.code,
                case.message,
                out.status.code(),
                err,
                marker.exists()
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_good_profile_runs_the_same_command() {
    // The control: with the unedited profile the marker is created, so the cases above can fail.
    require_root();
    let sb = Sandbox::new();
    let good = sb.profile(free_port(), "");
    let marker = sb.path("rw/started");
    let out = confined(&good, &sb.probe(), &["create", marker.to_str().unwrap()]);
    assert_eq!(stdout(&out), "ok", "{}", stderr(&out));
    assert!(marker.exists());
}

#[test]
fn the_relay_variable_from_outside_starts_nothing() {
    // STOCKADE_INTERNAL_RELAY tells a fresh image of stockade it is the PID-namespace relay
    // (supervise/pidns.rs). Set by anyone else (no such child of ours), it is refused.
    require_root();
    let sb = Sandbox::new();
    let good = sb.profile(free_port(), "");
    let marker = sb.path("rw/started");
    for spec in ["1,-1,-1,-1,0", "garbage", "1,2"] {
        let mut cmd = Command::new(stockade());
        cmd.env("STOCKADE_INTERNAL_RELAY", spec)
            .arg("--profile")
            .arg(&good)
            .arg("--")
            .arg(sb.probe())
            .arg("create")
            .arg(&marker);
        let out = run(&mut cmd, Duration::from_secs(20));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(64), "{spec}: {err}");
        assert!(
            err.contains("STOCKADE_INTERNAL_RELAY is internal to stockade; unset it"),
            "{spec}: {err}"
        );
        assert!(!marker.exists(), "{spec}: the server started");
    }
}
