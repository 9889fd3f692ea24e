//! Writing a file so that no reader sees half of it and no planted link is followed: used for
//! the Triton admin secret and for a learned profile, both written by root into directories
//! others may share.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;

/// Write `bytes` as `name` in the directory `dir` (opened by the caller, `O_NOFOLLOW`): a new
/// file under a random name (`O_EXCL|O_NOFOLLOW`, `mode`), synced, then renamed over `name`,
/// which replaces a planted symlink instead of following it. Nothing is left behind on error.
pub fn replace_at(dir: &File, name: &OsStr, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use nix::fcntl::OFlag;
    let mut random = [0u8; 16];
    File::open("/dev/urandom")?.read_exact(&mut random)?;
    let tmp: String = format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let fd = nix::fcntl::openat(
        dir.as_fd(),
        tmp.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::from_bits_truncate(mode),
    )?;
    let written = (|| {
        let mut f = File::from(fd);
        // The umask may have narrowed `mode`.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        nix::fcntl::renameat(dir.as_fd(), tmp.as_str(), dir.as_fd(), name)?;
        Ok(())
    })();
    if written.is_err() {
        let _ = nix::unistd::unlinkat(
            dir.as_fd(),
            tmp.as_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
    }
    written
}
