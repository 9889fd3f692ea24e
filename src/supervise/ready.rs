//! The readiness probe: one HTTP/1.0 GET on a loopback URL, over a plain `TcpStream`.
//!
//! Loopback only, by design: the supervisor is outside the server's sandbox, and a probe that
//! could reach any host would make the profile a way to send requests from there. The URL is
//! checked when the profile is parsed, so a bad one fails before anything starts.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A parsed `http://<loopback>[:port]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGet {
    pub addr: SocketAddr,
    /// The `Host` header value, as written in the URL.
    pub host: String,
    pub path: String,
    url: String,
}

impl HttpGet {
    pub fn parse(url: &str) -> Result<HttpGet, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("'{url}': only http:// URLs are probed (loopback, no TLS needed)")
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(format!("'{url}': credentials in the URL are not supported"));
        }
        if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(format!(
                "'{url}': the path contains spaces or control characters"
            ));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| {
            format!("'{url}': expected http://127.0.0.1:PORT/PATH, http://[::1]:PORT/PATH or http://localhost:PORT/PATH")
        })?;
        // `localhost` is taken literally: resolving it through /etc/hosts could leave loopback.
        let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| {
                    format!(
                        "'{url}': the host must be a loopback address or 'localhost', not '{host}'"
                    )
                })?
        };
        if !ip.is_loopback() {
            return Err(format!(
                "'{url}': {ip} is not a loopback address; the probe only connects to this host's loopback"
            ));
        }
        Ok(HttpGet {
            addr: SocketAddr::new(ip, port),
            host: authority.to_string(),
            path: path.to_string(),
            url: url.to_string(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// One GET, bounded by `timeout` in total. `Ok(status)` for any HTTP answer.
    pub fn probe(&self, timeout: Duration) -> Result<u16, String> {
        let end = Instant::now() + timeout;
        let left = || {
            end.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        };
        let mut s = TcpStream::connect_timeout(&self.addr, left()).map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(left()))
            .map_err(|e| e.to_string())?;
        let req = format!(
            "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: stockade\r\nConnection: close\r\n\r\n",
            self.path, self.host
        );
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        // The status line is all we need; stop reading once we have it.
        let mut buf = [0u8; 512];
        let mut got = 0;
        while got < buf.len() && !buf[..got].contains(&b'\n') {
            if Instant::now() >= end {
                return Err("timed out waiting for the answer".into());
            }
            s.set_read_timeout(Some(left()))
                .map_err(|e| e.to_string())?;
            match s.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        status_of(&buf[..got])
    }
}

fn split_host_port(authority: &str) -> Option<(&str, u16)> {
    if authority.is_empty() {
        return None;
    }
    // [v6]:port, [v6], host:port, host
    let (host, port) = if let Some(end) = authority.find(']') {
        let host = &authority[..=end];
        match &authority[end + 1..] {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => 80,
        Some(p) => p.parse().ok().filter(|p| *p != 0)?,
    };
    Some((host, port))
}

/// The status code of an `HTTP/1.x NNN ...` status line.
pub fn status_of(answer: &[u8]) -> Result<u16, String> {
    let line = answer.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => code
            .parse()
            .map_err(|_| format!("bad status line '{}'", line.trim())),
        _ if answer.is_empty() => Err("connection closed without an answer".into()),
        _ => Err(format!("not an HTTP answer: '{}'", line.trim())),
    }
}

/// A 2xx answer means ready (Triton's /v2/health/ready answers 200 or 400).
pub fn passes(status: u16) -> bool {
    (200..300).contains(&status)
}

impl std::fmt::Display for HttpGet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

impl<'de> serde::Deserialize<'de> for HttpGet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HttpGet::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for HttpGet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn loopback_urls_parse() {
        let g = HttpGet::parse("http://127.0.0.1:8000/v2/health/ready").unwrap();
        assert_eq!(g.addr, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(g.path, "/v2/health/ready");
        assert_eq!(g.host, "127.0.0.1:8000");
        let g = HttpGet::parse("http://[::1]:9/x").unwrap();
        assert_eq!(g.addr, "[::1]:9".parse().unwrap());
        let g = HttpGet::parse("http://localhost").unwrap();
        assert_eq!((g.addr.port(), g.path.as_str()), (80, "/"));
        assert!(HttpGet::parse("http://127.1.2.3:1/").is_ok());
    }

    #[test]
    fn non_loopback_and_odd_urls_are_refused() {
        for bad in [
            "https://127.0.0.1/",
            "http://10.0.0.1:8000/",
            "http://0.0.0.0:8000/",
            "http://example.com/",
            "http://user@127.0.0.1/",
            "http://127.0.0.1:0/",
            "http://127.0.0.1:99999/",
            "http://127.0.0.1:80/a b",
            "http://[::2]:80/",
            "http://:80/",
            "ftp://127.0.0.1/",
        ] {
            assert!(HttpGet::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), Ok(200));
        assert_eq!(status_of(b"HTTP/1.0 400 Bad Request\r\n"), Ok(400));
        assert!(status_of(b"").is_err());
        assert!(status_of(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(passes(200) && passes(204) && !passes(400) && !passes(301));
    }

    #[test]
    fn probes_a_local_listener() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut req = [0u8; 256];
            let n = c.read(&mut req).unwrap();
            c.write_all(b"HTTP/1.0 503 Unavailable\r\n\r\n").unwrap();
            String::from_utf8_lossy(&req[..n]).into_owned()
        });
        let g = HttpGet::parse(&format!("http://127.0.0.1:{port}/ready")).unwrap();
        assert_eq!(g.probe(Duration::from_secs(5)), Ok(503));
        let req = t.join().unwrap();
        assert!(req.starts_with("GET /ready HTTP/1.0\r\n"), "{req}");
        // Nothing listens any more: refused, promptly.
        assert!(g.probe(Duration::from_secs(5)).is_err());
    }
}
