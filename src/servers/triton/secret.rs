//! Restricted-API secrets: read from a file or an inherited fd, or generated
//! and handed to the operator in a 0600 file.
//!
//! tritonserver takes the secret only on its command line, so the value IS
//! visible in `/proc/<pid>/cmdline` of the server to every process that may
//! read that file (same uid, or any uid unless /proc is mounted hidepid=2).
//! The sandbox should keep other tenants out of the server's pid namespace.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use super::RewriteError;
use super::policy::RestrictedGroup;

/// Shortest secret accepted from a file or fd (characters).
const MIN_LEN: usize = 16;
/// Longest secret accepted (keeps the header and argv sane).
const MAX_LEN: usize = 512;
/// Random bytes per generated secret (hex-encoded: twice as many characters).
const GENERATED_BYTES: usize = 32;

/// A secret header value. Debug never shows it; only `expose` does.
#[derive(Clone)]
pub struct Secret(pub(super) String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Where the secret came from, for notes (never contains the value).
pub enum Origin {
    File(std::path::PathBuf),
    Fd(u32),
    Generated {
        path: std::path::PathBuf,
        written: bool,
    },
}

fn flag(g: &RestrictedGroup) -> &'static str {
    g.protocols
        .first()
        .map_or("http-restricted-api", |p| p.flag())
}

fn validate(g: &RestrictedGroup, raw: String) -> Result<Secret, RewriteError> {
    let v = raw.strip_suffix('\n').unwrap_or(&raw);
    let v = v.strip_suffix('\r').unwrap_or(v);
    // Printable ASCII without spaces: valid in an HTTP header, gRPC ASCII metadata and argv.
    let ok =
        (MIN_LEN..=MAX_LEN).contains(&v.len()) && v.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if ok {
        Ok(Secret(v.to_string()))
    } else {
        Err(RewriteError::new(
            flag(g),
            format!(
                "secret for group '{}' must be {MIN_LEN}..={MAX_LEN} printable ASCII characters without spaces",
                g.name
            ),
        ))
    }
}

fn io_err(g: &RestrictedGroup, what: &str, path: &Path, e: std::io::Error) -> RewriteError {
    RewriteError::new(
        flag(g),
        format!("group '{}': {what} {}: {e}", g.name, path.display()),
    )
}

/// Obtains the group's secret. In `dry_run` a generated secret is neither
/// created nor written; a placeholder stands in (callers emit `<redacted>`).
pub fn obtain(g: &RestrictedGroup, dry_run: bool) -> Result<(Secret, Origin), RewriteError> {
    if let Some(path) = &g.secret_file {
        let mut s = String::new();
        File::open(path)
            .and_then(|f| f.take(MAX_LEN as u64 + 2).read_to_string(&mut s))
            .map_err(|e| io_err(g, "cannot read secret file", path, e))?;
        return Ok((validate(g, s)?, Origin::File(path.clone())));
    }
    if let Some(fd) = g.secret_fd {
        // Re-opening through /proc avoids unsafe fd adoption; read it once.
        let path = Path::new("/proc/self/fd").join(fd.to_string());
        let mut s = String::new();
        File::open(&path)
            .and_then(|f| f.take(MAX_LEN as u64 + 2).read_to_string(&mut s))
            .map_err(|e| io_err(g, "cannot read secret fd", &path, e))?;
        return Ok((validate(g, s)?, Origin::Fd(fd)));
    }
    let Some(path) = &g.generate_secret_file else {
        return Err(RewriteError::new(
            flag(g),
            format!("group '{}' has no secret source", g.name),
        ));
    };
    if dry_run {
        let origin = Origin::Generated {
            path: path.clone(),
            written: false,
        };
        return Ok((Secret(String::new()), origin));
    }
    let secret = generate().map_err(|e| io_err(g, "cannot read", Path::new("/dev/urandom"), e))?;
    write_secret_file(path, &secret).map_err(|e| io_err(g, "cannot write secret file", path, e))?;
    let origin = Origin::Generated {
        path: path.clone(),
        written: true,
    };
    Ok((secret, origin))
}

fn generate() -> std::io::Result<Secret> {
    let mut bytes = [0u8; GENERATED_BYTES];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Secret(hex))
}

/// Writes the secret for the operator: parent directory created 0700, the file 0600.
///
/// Everything after the directory check works on one directory fd, opened `O_NOFOLLOW`: the
/// directory must be ours (owner = euid) and 0700, so nobody else can add, swap or read an entry
/// in it. The file is created `O_EXCL|O_NOFOLLOW` under a random name, then renamed over the
/// target (which replaces a planted symlink instead of following it).
fn write_secret_file(path: &Path, secret: &Secret) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let parent = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no parent directory"))?;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("no file name"))?;
    if !parent.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW)
        .open(parent)
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("{e} (the directory must be a real directory, not a symlink)"),
            )
        })?;
    let meta = dir.metadata()?;
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid || meta.mode() & 0o077 != 0 {
        return Err(std::io::Error::other(format!(
            "the directory must be owned by uid {euid} with mode 0700; it is uid {} mode {:04o}",
            meta.uid(),
            meta.mode() & 0o7777
        )));
    }
    let mut line = secret.expose().as_bytes().to_vec();
    line.push(b'\n');
    crate::files::replace_at(&dir, name, &line, 0o600)
}
