//! The readiness probe's parsers: the profile's `http_get` URL (`HttpGet::parse`) and the status
//! line the (untrusted, confined) server answers (`ready::status_of`).
//! Properties: no panic; an accepted URL is loopback, re-parses to the same value from its own
//! text, and puts no space or control character into the request line or Host header; an
//! accepted status line starts with `HTTP/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stockade::ready::{self, HttpGet};

fuzz_target!(|data: &[u8]| {
    // First byte picks the parser, the rest is the input.
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which & 1 == 0 {
        if let Ok(status) = ready::status_of(rest) {
            let line = rest.split(|b| *b == b'\n').next().unwrap_or_default();
            let line = String::from_utf8_lossy(line);
            assert!(
                line.trim_start().starts_with("HTTP/"),
                "{line:?} gave {status}"
            );
        }
        return;
    }
    let Ok(url) = std::str::from_utf8(rest) else {
        return;
    };
    let Ok(get) = HttpGet::parse(url) else {
        return;
    };
    assert!(get.addr.ip().is_loopback(), "{url:?} -> {}", get.addr);
    assert_ne!(get.addr.port(), 0, "{url:?}");
    assert_eq!(HttpGet::parse(get.url()).as_ref(), Ok(&get), "{url:?}");
    for (what, v) in [("path", &get.path), ("host", &get.host)] {
        assert!(
            !v.is_empty() && !v.bytes().any(|b| b.is_ascii_control() || b == b' '),
            "{what} {v:?} of {url:?} would break the request"
        );
    }
    assert!(get.path.starts_with('/'), "{url:?}");
});
