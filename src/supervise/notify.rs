//! systemd's notify protocol (sd_notify): datagrams such as `READY=1` to `$NOTIFY_SOCKET`.
//!
//! The socket is connected once at start-up, before the supervisor drops its capabilities, so a
//! later send needs no access to the path. The variable never reaches the server: its
//! environment is built from the profile alone.
//!
//! systemd accepts messages from the main pid only (`NotifyAccess=main`). With a PID namespace
//! the supervisor is not that pid, so it relays its messages to the outer process over a pipe
//! (`Notifier::Relay`) and the outer one sends them.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use tracing::{debug, warn};

#[derive(Debug, Default)]
pub enum Notifier {
    /// No `NOTIFY_SOCKET`, or it could not be connected (warned once).
    #[default]
    Off,
    Socket(UnixDatagram),
    /// Write end of a pipe to the outer process, messages separated by NUL (they are multi-line).
    Relay(std::fs::File),
}

impl Notifier {
    /// Connect to `$NOTIFY_SOCKET` if set: a path, or `@name` for an abstract socket.
    pub fn from_env() -> Notifier {
        let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier::Off;
        };
        let target = target.to_string_lossy().into_owned();
        match connect(&target) {
            Ok(s) => {
                debug!(socket = %target, "systemd notify socket connected");
                Notifier::Socket(s)
            }
            Err(e) => {
                warn!(socket = %target, error = %e, "NOTIFY_SOCKET: cannot connect; not notifying systemd");
                Notifier::Off
            }
        }
    }

    pub fn relay(fd: OwnedFd) -> Notifier {
        Notifier::Relay(std::fs::File::from(fd))
    }

    /// The connected socket's fd, for the relay's fresh image (`pidns::exec_relay`).
    pub fn socket_fd(&self) -> Option<i32> {
        use std::os::fd::AsRawFd;
        match self {
            Notifier::Socket(s) => Some(s.as_raw_fd()),
            _ => None,
        }
    }

    /// The socket `socket_fd` named, in the relay's fresh image.
    pub fn adopt_socket(fd: OwnedFd) -> Notifier {
        Notifier::Socket(UnixDatagram::from(fd))
    }

    pub fn is_on(&self) -> bool {
        !matches!(self, Notifier::Off)
    }

    /// Send one message (`READY=1`, `STOPPING=1`, `STATUS=…`); failures are logged, not fatal:
    /// systemd notices a missing READY=1 through its own start timeout.
    pub fn send(&mut self, msg: &str) {
        let r = match self {
            Notifier::Off => return,
            Notifier::Socket(s) => s.send(msg.as_bytes()).map(drop),
            Notifier::Relay(f) => f.write_all(format!("{msg}\0").as_bytes()),
        };
        match r {
            Ok(()) => debug!(msg, "notified"),
            Err(e) => warn!(msg, error = %e, "sd_notify failed"),
        }
    }
}

fn connect(target: &str) -> std::io::Result<UnixDatagram> {
    let addr = if let Some(name) = target.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())?
    } else if target.starts_with('/') {
        SocketAddr::from_pathname(target)?
    } else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "neither an absolute path nor @abstract",
        ));
    };
    let s = UnixDatagram::unbound()?;
    s.connect_addr(&addr)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_and_an_abstract_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let mut n = Notifier::Socket(connect(path.to_str().unwrap()).unwrap());
        n.send("READY=1");
        let mut buf = [0u8; 64];
        let got = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..got], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("stockade-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        let mut n = Notifier::Socket(connect(&format!("@{name}")).unwrap());
        n.send("STOPPING=1");
        let got = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..got], b"STOPPING=1");
        assert!(connect("relative").is_err());
    }
}
