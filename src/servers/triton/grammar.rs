//! tritonserver 2.51 option table and a tokenizer that reproduces glibc
//! `getopt_long(argc, argv, "", long_options, ..)` (research §1.1, §1.5).
//!
//! The server accepts unique prefixes and takes the next argv element as a value
//! whatever it looks like, so matching flag names as strings can be bypassed.
//! Everything here resolves each element to an option first and only then
//! looks at values.

use std::ffi::OsString;
use std::net::IpAddr;

use super::RewriteError;

/// Value syntax of an option, as tritonserver parses it (research §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `no_argument` in getopt terms.
    NoArg,
    /// `ParseOption<bool>`: case-insensitive true/on/1/false/off/0.
    Bool,
    /// `--log-verbose`: integer, or case-insensitive true (1) / false (0).
    IntOrBool,
    /// Non-negative `int` (the server's `std::stoi` accepts garbage; we do not).
    Int,
    /// Non-negative `int64` (`std::stoll`).
    Int64,
    /// TCP port 1..=65535 (the server does not range-check: 0 is ephemeral, 70000 binds 4464).
    Port,
    /// Non-negative decimal float.
    Float,
    /// Free text without control characters.
    Str,
    /// A name pasted into file names or shell strings: `[A-Za-z0-9._-]+`.
    Name,
    /// Fixed word list; `bool` = case-sensitive.
    Enum(&'static [&'static str], bool),
    /// Literal IP address (no host names).
    Address,
    /// Filesystem path (checked further by the rewrite step).
    Path,
    /// RE2 header-name pattern.
    Regex,
    /// `<cat>[,<cat>...]:<key>=<value>`.
    Restricted,
    /// `[<name>,]<key>=<value>`; `true` = name required.
    NameKv(bool),
    /// `<key>=<value>`.
    Kv,
    /// `<int>:<int>`.
    IntPair,
    /// `<int>:<float>`.
    IntFloatPair,
    /// `<int>-<int>`.
    IntRange,
    /// `<name>:<count>[:<device>]`.
    RateResource,
    /// Trace level word.
    TraceLevel,
}

/// What repeating the option does inside tritonserver (research §1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rep {
    /// Plain assignment: the last occurrence wins.
    Last,
    /// `std::set::insert`: deduplicated.
    Set,
    /// Applied in order.
    List,
    /// `std::map::emplace`: the first value per device wins.
    MapFirst,
    /// A category may appear only once over all groups (hard error otherwise).
    UniqueCategory,
    /// No-argument flag; repeating changes nothing.
    Idempotent,
    /// Levels are OR-ed; only `--trace-level=OFF` forces tracing off.
    OrLevels,
}

#[derive(Debug)]
pub struct OptSpec {
    /// The name getopt matches against.
    pub name: &'static str,
    /// Canonical name emitted (differs only for the `model-store` alias).
    pub id: &'static str,
    pub kind: Kind,
    pub rep: Rep,
}

const fn o(name: &'static str, kind: Kind, rep: Rep) -> OptSpec {
    OptSpec {
        name,
        id: name,
        kind,
        rep,
    }
}

use Kind::*;
use Rep::*;

/// Every option of `tritonserver --help` 2.51, in `--help` order (research §1.5).
/// Emission follows this order too, so the final argv is deterministic.
pub static OPTIONS: &[OptSpec] = &[
    o("help", NoArg, Idempotent),
    o("id", Str, Last),
    o("exit-timeout-secs", Int, Last),
    o("log-verbose", IntOrBool, Last),
    o("log-info", Bool, Last),
    o("log-warning", Bool, Last),
    o("log-error", Bool, Last),
    o("log-format", Enum(&["default", "ISO8601"], true), Last),
    o("log-file", Path, Last),
    OptSpec {
        name: "model-store",
        id: "model-repository",
        kind: Path,
        rep: Set,
    },
    o("model-repository", Path, Set),
    o("exit-on-error", Bool, Last),
    o("disable-auto-complete-config", NoArg, Idempotent),
    o("strict-readiness", Bool, Last),
    o(
        "model-control-mode",
        Enum(&["none", "poll", "explicit"], false),
        Last,
    ),
    o("repository-poll-secs", Int, Last),
    o("load-model", Name, Set),
    o("model-config-name", Name, Last),
    o("model-load-thread-count", Int, Last),
    o("model-load-retry-count", Int, Last),
    o("model-namespacing", Bool, Last),
    o("enable-peer-access", Bool, Last),
    o("allow-http", Bool, Last),
    o("http-address", Address, Last),
    o("http-port", Port, Last),
    o("reuse-http-port", Bool, Last),
    o("http-header-forward-pattern", Regex, Last),
    o("http-thread-count", Int, Last),
    o("http-restricted-api", Restricted, UniqueCategory),
    o("allow-grpc", Bool, Last),
    o("grpc-address", Address, Last),
    o("grpc-port", Port, Last),
    o("reuse-grpc-port", Bool, Last),
    o("grpc-header-forward-pattern", Regex, Last),
    o("grpc-infer-allocation-pool-size", Int, Last),
    o("grpc-use-ssl", Bool, Last),
    o("grpc-use-ssl-mutual", Bool, Last),
    o("grpc-server-cert", Path, Last),
    o("grpc-server-key", Path, Last),
    o("grpc-root-cert", Path, Last),
    o(
        "grpc-infer-response-compression-level",
        Enum(&["none", "low", "medium", "high"], false),
        Last,
    ),
    o("grpc-keepalive-time", Int, Last),
    o("grpc-keepalive-timeout", Int, Last),
    o("grpc-keepalive-permit-without-calls", Bool, Last),
    o("grpc-http2-max-pings-without-data", Int, Last),
    o("grpc-http2-min-recv-ping-interval-without-data", Int, Last),
    o("grpc-http2-max-ping-strikes", Int, Last),
    o("grpc-max-connection-age", Int, Last),
    o("grpc-max-connection-age-grace", Int, Last),
    o("grpc-restricted-protocol", Restricted, UniqueCategory),
    o("allow-sagemaker", Bool, Last),
    o("sagemaker-port", Port, Last),
    o("sagemaker-safe-port-range", IntRange, Last),
    o("sagemaker-thread-count", Int, Last),
    o("allow-vertex-ai", Bool, Last),
    o("vertex-ai-port", Port, Last),
    o("vertex-ai-thread-count", Int, Last),
    o("vertex-ai-default-model", Name, Last),
    o("allow-metrics", Bool, Last),
    o("allow-gpu-metrics", Bool, Last),
    o("allow-cpu-metrics", Bool, Last),
    o("metrics-address", Address, Last),
    o("metrics-port", Port, Last),
    // Documented as float, parsed with ParseOption<int> (research §1.2).
    o("metrics-interval-ms", Int, Last),
    o("metrics-config", Kv, List),
    o("trace-config", NameKv(false), List),
    o("backend-directory", Path, Last),
    o("backend-config", NameKv(false), List),
    o("repoagent-directory", Path, Last),
    o("cache-config", NameKv(true), List),
    o("cache-directory", Path, Last),
    o("rate-limit", Enum(&["execution_count", "off"], false), Last),
    o("rate-limit-resource", RateResource, List),
    o("pinned-memory-pool-byte-size", Int64, Last),
    o("cuda-memory-pool-byte-size", IntPair, List),
    o("cuda-virtual-address-size", IntPair, List),
    o("min-supported-compute-capability", Float, Last),
    o("buffer-manager-thread-count", Int, Last),
    o("host-policy", NameKv(true), List),
    o("model-load-gpu-limit", IntFloatPair, MapFirst),
    o("strict-model-config", Bool, Last),
    o("response-cache-byte-size", Int64, Last),
    o("trace-file", Path, Last),
    o("trace-level", TraceLevel, OrLevels),
    o("trace-rate", Int, Last),
    o("trace-count", Int, Last),
    o("trace-log-frequency", Int, Last),
];

/// Restricted API / protocol categories (restricted_features.h:52-57); case-sensitive.
pub const CATEGORIES: &[&str] = &[
    "health",
    "metadata",
    "inference",
    "shared-memory",
    "model-config",
    "model-repository",
    "statistics",
    "trace",
    "logging",
];

/// Looks up an option by its full name (aliases included).
pub fn by_name(name: &str) -> Option<&'static OptSpec> {
    OPTIONS.iter().find(|s| s.name == name)
}

/// Looks up the canonical spec of an option id (never the alias entry).
pub fn by_id(id: &str) -> Option<&'static OptSpec> {
    OPTIONS.iter().find(|s| s.name == id && s.id == id)
}

/// One resolved option occurrence.
#[derive(Debug, Clone)]
pub struct Token {
    pub spec: &'static OptSpec,
    /// Raw value (None only for `NoArg`).
    pub value: Option<String>,
    /// The name as the operator spelled it (for messages about abbreviations).
    pub spelled: String,
}

/// Resolves a long-option name the way glibc does: an exact match wins,
/// otherwise a unique prefix. Entries with the same option id and argument
/// kind do not make a prefix ambiguous (glibc compares has_arg/flag/val).
pub fn resolve(name: &str) -> Result<&'static OptSpec, RewriteError> {
    if let Some(spec) = by_name(name) {
        return Ok(spec);
    }
    let candidates: Vec<&'static OptSpec> = OPTIONS
        .iter()
        .filter(|s| s.name.starts_with(name))
        .collect();
    let Some(first) = candidates.first() else {
        return Err(RewriteError::new(
            name,
            "unrecognized option (tritonserver 2.51 has no such flag)",
        ));
    };
    if candidates.iter().all(|c| c.id == first.id) {
        return Ok(first);
    }
    let list: Vec<String> = candidates.iter().map(|c| format!("--{}", c.name)).collect();
    Err(RewriteError::new(
        name,
        format!("ambiguous abbreviation; candidates: {}", list.join(", ")),
    ))
}

/// Splits argv (without argv[0]) into option tokens exactly as getopt_long
/// with an empty optstring would, and refuses everything tritonserver refuses
/// at parse time (unknown or ambiguous names, single-dash options, missing
/// values, values on no-argument flags, positionals and `--`).
pub fn tokenize(args: &[OsString]) -> Result<Vec<Token>, RewriteError> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = utf8(&args[i], i)?;
        i += 1;
        if arg == "--" {
            return Err(RewriteError::new(
                "",
                "'--' ends option parsing; every later argument would be positional and tritonserver rejects positional arguments",
            ));
        }
        let Some(body) = arg.strip_prefix("--") else {
            if arg.starts_with('-') && arg.len() > 1 {
                return Err(RewriteError::new(
                    "",
                    format!(
                        "'{}': single-dash options do not exist; tritonserver takes long options only (--name=value)",
                        shown(arg)
                    ),
                ));
            }
            return Err(RewriteError::new(
                "",
                format!(
                    "unexpected positional argument '{}'; tritonserver rejects positional arguments",
                    shown(arg)
                ),
            ));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        if name.is_empty() {
            return Err(RewriteError::new(
                "",
                format!("'{}': empty option name", shown(arg)),
            ));
        }
        let spec = resolve(name)?;
        let value = if spec.kind == Kind::NoArg {
            if inline.is_some() {
                return Err(RewriteError::new(
                    spec.id,
                    "this flag takes no argument; give it bare",
                ));
            }
            None
        } else if inline.is_some() {
            inline
        } else if let Some(next) = args.get(i) {
            // getopt consumes the next element whatever it looks like, even "--x".
            let v = utf8(next, i)?;
            i += 1;
            Some(v.to_string())
        } else {
            return Err(RewriteError::new(spec.id, "requires an argument"));
        };
        tokens.push(Token {
            spec,
            value,
            spelled: name.to_string(),
        });
    }
    Ok(tokens)
}

/// An argument as an error message may echo it: everything after the first `=` (or `:`) is
/// dropped, since a refused argument may carry a secret (`-http-restricted-api=api:key=SECRET`).
fn shown(arg: &str) -> String {
    match arg.find(['=', ':']) {
        Some(i) => format!("{}{}<redacted>", &arg[..i], &arg[i..=i]),
        None => arg.to_string(),
    }
}

fn utf8(arg: &OsString, index: usize) -> Result<&str, RewriteError> {
    arg.to_str()
        .ok_or_else(|| RewriteError::new("", format!("argument {} is not valid UTF-8", index + 1)))
}

/// Parses a tritonserver boolean (`ParseOption<bool>`, research §1.2).
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "on" | "1" => Some(true),
        "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Strict non-negative decimal: digits only, no sign, no `0x`, no garbage.
pub fn parse_uint(v: &str, max: u64) -> Result<u64, String> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{v}' is not a plain non-negative decimal integer"));
    }
    match v.parse::<u64>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!("'{v}' is out of range (0..={max})")),
    }
}

fn parse_float(v: &str) -> Result<String, String> {
    let ok = match v.split_once('.') {
        Some((a, b)) => {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        }
        None => !v.is_empty() && v.bytes().all(|c| c.is_ascii_digit()),
    };
    if ok && v.len() <= 32 {
        Ok(v.to_string())
    } else {
        Err(format!("'{v}' is not a plain non-negative decimal number"))
    }
}

/// Characters safe in anything tritonserver or the python backend may paste
/// into a `bash -c` string or a file name (research §0.6).
pub fn is_safe_word(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 255
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Like `is_safe_word` but also allows `,` and `:` for list-valued settings.
fn is_safe_value(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 255
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b',' | b':'))
}

/// Splits `[<name>,]<key>=<value>` exactly like tritonserver's
/// ParseBackendConfigOption: the name ends at the FIRST comma anywhere in the
/// string, the key at the first `=` after it.
pub fn split_name_kv(v: &str) -> Result<(String, String, String), String> {
    let (name, rest) = match v.find(',') {
        Some(0) => return Err("empty name before ','".into()),
        Some(p) => (&v[..p], &v[p + 1..]),
        None => ("", v),
    };
    let Some((key, value)) = rest.split_once('=') else {
        return Err(format!("'{v}' must have the form [<name>,]<key>=<value>"));
    };
    if key.is_empty() || value.is_empty() {
        return Err(format!("'{v}': empty key or value"));
    }
    Ok((name.to_string(), key.to_string(), value.to_string()))
}

/// Parsed restricted-API group `<cat>[,<cat>]:<key>=<value>`.
#[derive(Clone)]
pub struct Group {
    pub categories: Vec<String>,
    pub key: String,
    pub value: String,
}

/// ParseGenericConfigOption(arg, ":", "="): categories up to the first `:`,
/// key up to the next `=`, the value is the rest (may contain `=`).
pub fn parse_restricted(v: &str) -> Result<Group, String> {
    let Some((cats, rest)) = v.split_once(':') else {
        return Err("format is '<category>[,<category>...]:<key>=<value>'".into());
    };
    let Some((key, value)) = rest.split_once('=') else {
        return Err("format is '<category>[,<category>...]:<key>=<value>'".into());
    };
    if key.is_empty() || value.is_empty() {
        return Err("empty key or value".into());
    }
    let mut categories = Vec::new();
    for c in cats.split(',') {
        if !CATEGORIES.contains(&c) {
            return Err(format!(
                "unknown restricted category '{c}' (case-sensitive; one of {})",
                CATEGORIES.join(", ")
            ));
        }
        if categories.iter().any(|x| x == c) {
            return Err(format!("category '{c}' given twice"));
        }
        categories.push(c.to_string());
    }
    Ok(Group {
        categories,
        key: key.to_string(),
        value: value.to_string(),
    })
}

/// Validates a raw value against the option's syntax and returns the
/// canonical spelling to emit. Stricter than tritonserver where it is loose
/// (integers, ports) so that the emitted value means exactly one thing.
pub fn canonical(spec: &OptSpec, raw: &str) -> Result<String, String> {
    const I32: u64 = i32::MAX as u64;
    const I64: u64 = i64::MAX as u64;
    match spec.kind {
        NoArg => Ok(String::new()),
        Bool => parse_bool(raw)
            .map(|b| b.to_string())
            .ok_or_else(|| format!("'{raw}' is not a boolean (true/on/1 or false/off/0)")),
        IntOrBool => match parse_bool(raw) {
            Some(b) if !raw.bytes().all(|c| c.is_ascii_digit()) => Ok(u8::from(b).to_string()),
            _ => parse_uint(raw, I32).map(|n| n.to_string()),
        },
        Int => parse_uint(raw, I32).map(|n| n.to_string()),
        Int64 => parse_uint(raw, I64).map(|n| n.to_string()),
        Port => match parse_uint(raw, 65535) {
            Ok(0) => Err("port 0 would bind an ephemeral port; use 1..=65535".into()),
            Ok(n) => Ok(n.to_string()),
            Err(_) => Err(format!("'{raw}' is not a port (plain decimal 1..=65535)")),
        },
        Float => parse_float(raw),
        Str => {
            if raw.is_empty() || raw.len() > 256 || raw.chars().any(char::is_control) {
                Err("must be 1..=256 characters without control characters".into())
            } else {
                Ok(raw.to_string())
            }
        }
        Name => {
            if is_safe_word(raw) || (spec.id == "load-model" && raw == "*") {
                Ok(raw.to_string())
            } else {
                Err(format!("'{raw}' must match [A-Za-z0-9._-]+"))
            }
        }
        Enum(values, case_sensitive) => values
            .iter()
            .find(|w| {
                if case_sensitive {
                    **w == raw
                } else {
                    w.eq_ignore_ascii_case(raw)
                }
            })
            .map(|w| (*w).to_string())
            .ok_or_else(|| {
                let case = if case_sensitive {
                    "case-sensitive"
                } else {
                    "case-insensitive"
                };
                format!("'{raw}' is not one of {} ({case})", values.join(", "))
            }),
        Address => raw
            .parse::<IpAddr>()
            .map(|ip| ip.to_string())
            .map_err(|_| format!("'{raw}' is not a literal IP address (host names are refused)")),
        Path => {
            if raw.is_empty() {
                Err("empty path".into())
            } else {
                Ok(raw.to_string())
            }
        }
        Regex => {
            if raw.is_empty() || raw.chars().any(char::is_control) {
                Err("empty pattern or control characters".into())
            } else {
                Ok(raw.to_string())
            }
        }
        Restricted => parse_restricted(raw).map(|_| raw.to_string()),
        NameKv(name_required) => {
            let (name, key, value) = split_name_kv(raw)?;
            if name_required && name.is_empty() {
                return Err(format!("'{raw}' must have the form <name>,<key>=<value>"));
            }
            if !(name.is_empty() || is_safe_word(&name)) || !is_safe_word(&key) {
                return Err(format!("'{raw}': name and key must match [A-Za-z0-9._-]+"));
            }
            if !is_safe_value(&value) {
                return Err(format!("'{raw}': value must match [A-Za-z0-9._,:-]+"));
            }
            Ok(raw.to_string())
        }
        Kv => match raw.split_once('=') {
            Some((k, v)) if is_safe_word(k) && is_safe_value(v) => Ok(raw.to_string()),
            _ => Err(format!(
                "'{raw}' must have the form <key>=<value> ([A-Za-z0-9._-] key, no ',' before '=')"
            )),
        },
        IntPair => match raw.split_once(':') {
            Some((a, b)) => Ok(format!("{}:{}", parse_uint(a, I32)?, parse_uint(b, I64)?)),
            None => Err(format!("'{raw}' must have the form <int>:<int>")),
        },
        IntFloatPair => match raw.split_once(':') {
            Some((a, b)) => Ok(format!("{}:{}", parse_uint(a, I32)?, parse_float(b)?)),
            None => Err(format!("'{raw}' must have the form <int>:<fraction>")),
        },
        IntRange => match raw.split_once('-') {
            Some((a, b)) => Ok(format!("{}-{}", parse_uint(a, I32)?, parse_uint(b, I32)?)),
            None => Err(format!("'{raw}' must have the form <int>-<int>")),
        },
        RateResource => {
            let parts: Vec<&str> = raw.split(':').collect();
            match parts.as_slice() {
                [n, c] if is_safe_word(n) => Ok(format!("{n}:{}", parse_uint(c, I32)?)),
                [n, c, d] if is_safe_word(n) => Ok(format!(
                    "{n}:{}:{}",
                    parse_uint(c, I32)?,
                    parse_uint(d, I32)?
                )),
                _ => Err(format!(
                    "'{raw}' must have the form <name>:<count>[:<device>]"
                )),
            }
        }
        TraceLevel => match raw.to_ascii_lowercase().as_str() {
            "off" | "false" => Ok("OFF".into()),
            "timestamps" | "true" | "on" | "min" | "max" | "tensors" => {
                Ok(raw.to_ascii_uppercase())
            }
            _ => Err(format!(
                "'{raw}' is not a trace level (OFF, TIMESTAMPS, TENSORS)"
            )),
        },
    }
}
