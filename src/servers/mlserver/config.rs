//! MLServer 1.7.1's effective configuration, read the way MLServer reads it.
//!
//! `mlserver start FOLDER` (mlserver/cli/serve.py) builds `Settings` from `FOLDER/settings.json`
//! when it exists, as init keywords; pydantic-settings then fills every key the file does not set
//! from `MLSERVER_*` environment variables (case-insensitive), then from a `.env` file in the
//! server's cwd, then the defaults (mlserver/settings.py). Each model comes from a
//! `model-settings.json` found recursively under FOLDER, with `MLSERVER_MODEL_*` variables (and
//! the `.env`) filling what the file leaves out, the nested `parameters` included. File keys are
//! matched case-insensitively too ("HOST" works). Verified on
//! 1.7.1: file `http_port` beat `MLSERVER_HTTP_PORT`; `mlserver_metrics_port` (lower case) beat
//! the `.env`; `MLSERVER_MODEL_ENVIRONMENT_TARBALL` reached a file model's parameters.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Where an effective value came from (named in refusals and in the dry run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Env(String),
    DotEnv(PathBuf, String),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Env(n) => write!(f, "environment variable {n}"),
            Source::DotEnv(p, n) => write!(f, "{} ({n})", p.display()),
            Source::Default => f.write_str("MLServer's default"),
        }
    }
}

/// A refusal: the file (or variable) and key, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub source: String,
    pub key: String,
    pub reason: String,
}

pub fn refuse(source: &Source, key: &str, reason: impl Into<String>) -> Refusal {
    Refusal {
        source: source.to_string(),
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// A value and its source; `Value::String` for variables (pydantic parses them later).
#[derive(Debug, Clone)]
pub struct Found {
    pub value: Value,
    pub source: Source,
}

/// The `.env` file's `KEY=VALUE` pairs, in order.
#[derive(Debug, Default)]
pub struct DotEnv {
    pub path: PathBuf,
    pub vars: Vec<(String, String)>,
}

/// A JSON file and its top-level object.
pub type JsonFile = (PathBuf, serde_json::Map<String, Value>);

/// Where the settings live, read once.
#[derive(Debug, Default)]
pub struct Inputs {
    /// `FOLDER/settings.json` and its top-level object, when the file exists.
    pub settings: Option<JsonFile>,
    /// The server's environment.
    pub env: Vec<(String, String)>,
    pub dotenv: Option<DotEnv>,
}

impl Inputs {
    /// A server setting: the file's key, else `MLSERVER_<KEY>`, else the `.env`.
    pub fn server(&self, key: &str) -> Result<Option<Found>, Refusal> {
        if let Some((path, obj)) = &self.settings {
            let src = Source::File(path.clone());
            if let Some(v) = get_ci(obj, key, &src)? {
                return Ok(Some(Found {
                    value: v.clone(),
                    source: src,
                }));
            }
        }
        self.variable(&format!("MLSERVER_{key}"))
    }

    /// `NAME` from the environment (case-insensitively, as pydantic-settings matches), else
    /// from the `.env`.
    pub fn variable(&self, name: &str) -> Result<Option<Found>, Refusal> {
        let hits: Vec<&(String, String)> = self
            .env
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .collect();
        if let Some((k, v)) = hits.first() {
            if hits.iter().any(|(_, v2)| v2 != v) {
                return Err(refuse(
                    &Source::Env(k.clone()),
                    name,
                    "set more than once with different letter case and different values; \
                     which one MLServer takes depends on dict order",
                ));
            }
            return Ok(Some(Found {
                value: Value::String(v.clone()),
                source: Source::Env(k.clone()),
            }));
        }
        if let Some(d) = &self.dotenv {
            // python-dotenv keeps the last assignment.
            if let Some((k, v)) = d
                .vars
                .iter()
                .rev()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
            {
                return Ok(Some(Found {
                    value: Value::String(v.clone()),
                    source: Source::DotEnv(d.path.clone(), k.clone()),
                }));
            }
        }
        Ok(None)
    }
}

/// A key of a settings file, matched as pydantic-settings matches it: case-insensitively
/// (verified on 1.7.1: `"HOST"` in settings.json and `"PARAMETERS": {"ENVIRONMENT_TARBALL"}` in
/// model-settings.json both take effect). Two spellings with different values are refused:
/// which one MLServer takes is an accident of dict order.
pub fn get_ci<'a>(
    obj: &'a serde_json::Map<String, Value>,
    key: &str,
    source: &Source,
) -> Result<Option<&'a Value>, Refusal> {
    let mut hits = obj.iter().filter(|(k, _)| k.eq_ignore_ascii_case(key));
    let Some((_, first)) = hits.next() else {
        return Ok(None);
    };
    if hits.any(|(_, v)| v != first) {
        return Err(refuse(
            source,
            key,
            "set more than once with different letter case and different values",
        ));
    }
    Ok(Some(first))
}

/// Read `FOLDER/settings.json`: absent is fine, anything but a JSON object is refused.
pub fn read_settings(folder: &Path) -> Result<Option<JsonFile>, Refusal> {
    let path = folder.join("settings.json");
    if !path.is_file() {
        return Ok(None);
    }
    read_object(&path).map(|o| Some((path, o)))
}

fn read_object(path: &Path) -> Result<serde_json::Map<String, Value>, Refusal> {
    let src = Source::File(path.to_path_buf());
    let text = std::fs::read_to_string(path)
        .map_err(|e| refuse(&src, "", format!("cannot be read: {e}")))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(refuse(&src, "", "is not a JSON object")),
        Err(e) => Err(refuse(&src, "", format!("is not valid JSON: {e}"))),
    }
}

/// Parse the `.env` in the server's cwd (python-dotenv's format). A line this parser cannot
/// read exactly as python-dotenv would (multi-line quotes, `${VAR}` interpolation, quoted keys)
/// is refused when it could name an MLServer setting, never guessed.
pub fn read_dotenv(cwd: &Path) -> Result<Option<DotEnv>, Refusal> {
    let path = cwd.join(".env");
    if !path.is_file() {
        return Ok(None);
    }
    let src = Source::File(path.clone());
    let text = std::fs::read_to_string(&path)
        .map_err(|e| refuse(&src, "", format!("cannot be read: {e}")))?;
    let mut vars = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .or_else(|| line.strip_prefix("export\t"))
            .map_or(line, str::trim_start);
        let at = format!("line {}", n + 1);
        let mentions_mlserver = line.to_ascii_uppercase().contains("MLSERVER");
        let Some((key, value)) = line.split_once('=') else {
            if mentions_mlserver {
                return Err(refuse(
                    &src,
                    &at,
                    "has no '=': cannot tell what MLServer reads",
                ));
            }
            continue;
        };
        let key = key.trim();
        if key.starts_with('\'') || key.contains(char::is_whitespace) {
            if mentions_mlserver {
                return Err(refuse(
                    &src,
                    &at,
                    "quoted or spaced keys are not read by stockade",
                ));
            }
            continue;
        }
        let value = value.trim_start();
        let parsed = match value.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let body = &value[1..];
                match body.find(q) {
                    Some(end) if !body[..end].contains('\\') => {
                        let rest = body[end + 1..].trim();
                        (rest.is_empty() || rest.starts_with('#')).then(|| body[..end].to_string())
                    }
                    _ => None,
                }
            }
            _ => Some(match value.find(" #") {
                Some(i) => value[..i].trim_end().to_string(),
                None => value.trim_end().to_string(),
            }),
        };
        let Some(v) = parsed.filter(|v| !v.contains("${")) else {
            if mentions_mlserver {
                return Err(refuse(
                    &src,
                    &format!("{at} ({key})"),
                    "multi-line, escaped or interpolated values are not read by stockade",
                ));
            }
            continue;
        };
        vars.push((key.to_string(), v));
    }
    Ok(Some(DotEnv { path, vars }))
}

/// Every `model-settings.json` under the repository. MLServer globs `**/model-settings.json`
/// (following symlinked directories, skipping hidden ones); this walk also enters hidden
/// directories, so it checks at least every file MLServer loads. Bounded in depth and entries.
pub fn model_settings_files(root: &Path) -> Result<Vec<PathBuf>, Refusal> {
    const MAX_DEPTH: usize = 64;
    const MAX_ENTRIES: usize = 200_000;
    let src = Source::File(root.to_path_buf());
    let mut out = Vec::new();
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    let mut entries = 0usize;
    while let Some((dir, depth)) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        use std::os::unix::fs::MetadataExt;
        if !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        let rd = std::fs::read_dir(&dir).map_err(|e| {
            refuse(
                &src,
                "",
                format!("{}: cannot be listed: {e}", dir.display()),
            )
        })?;
        for ent in rd.flatten() {
            entries += 1;
            if entries > MAX_ENTRIES {
                return Err(refuse(
                    &src,
                    "",
                    format!("more than {MAX_ENTRIES} entries: too large to check"),
                ));
            }
            let p = ent.path();
            let Ok(m) = std::fs::metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                if depth + 1 > MAX_DEPTH {
                    return Err(refuse(
                        &src,
                        "",
                        format!("deeper than {MAX_DEPTH} directories: too deep to check"),
                    ));
                }
                stack.push((p, depth + 1));
            } else if ent.file_name() == "model-settings.json" {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// One model's settings file (its top-level object).
pub fn read_model(path: &Path) -> Result<serde_json::Map<String, Value>, Refusal> {
    read_object(path)
}

/// pydantic's lax bool.
pub fn as_bool(f: &Found, key: &str) -> Result<bool, Refusal> {
    let bad = || refuse(&f.source, key, format!("{} is not a boolean", f.value));
    match &f.value {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) => match n.as_i64() {
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            _ => Err(bad()),
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "1" | "on" | "t" | "true" | "y" | "yes" => Ok(true),
            "0" | "off" | "f" | "false" | "n" | "no" => Ok(false),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// pydantic's lax int (a float only when whole).
pub fn as_int(f: &Found, key: &str) -> Result<i64, Refusal> {
    let bad = || refuse(&f.source, key, format!("{} is not an integer", f.value));
    match &f.value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|x| x.fract() == 0.0).map(|x| x as i64))
            .ok_or_else(bad),
        Value::String(s) => s.trim().parse::<i64>().map_err(|_| bad()),
        Value::Bool(b) => Ok(i64::from(*b)),
        _ => Err(bad()),
    }
}

/// A string setting (`null` is `None`).
pub fn as_opt_str(f: &Found, key: &str) -> Result<Option<String>, Refusal> {
    match &f.value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        v => Err(refuse(&f.source, key, format!("{v} is not a string"))),
    }
}

/// A JSON object given inline (file) or as JSON text (variable), for nested settings.
pub fn as_object(f: &Found) -> Option<BTreeMap<String, Value>> {
    match &f.value {
        Value::Object(o) => Some(o.clone().into_iter().collect()),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(o)) => Some(o.into_iter().collect()),
            _ => None,
        },
        _ => None,
    }
}
