//! The TOML profile loader (`profile::parse`) on arbitrary text.
//! Properties: no panic; a refusal is one `file:line:col: what` line without control characters
//! (error.rs: "every variant prints as a single line"); an accepted profile renders
//! (`profile::render`) to TOML that parses again and renders identically (print → parse is a
//! fixed point, so the render loses or invents nothing the parser reads).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stockade::profile;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    match profile::parse("fuzz", "fuzz.toml", src) {
        Err(e) => {
            let msg = e.to_string();
            assert!(
                !msg.chars().any(char::is_control),
                "error is not one clean line: {msg:?}"
            );
            assert!(
                msg.starts_with("fuzz.toml:"),
                "error without location: {msg:?}"
            );
        }
        Ok(loaded) => {
            let first = profile::render(&loaded.profile)
                .unwrap_or_else(|e| panic!("accepted profile does not render: {e}"));
            let again = profile::parse("fuzz", "render.toml", &first)
                .unwrap_or_else(|e| panic!("render does not parse: {e}\n{first}"));
            let second = profile::render(&again.profile)
                .unwrap_or_else(|e| panic!("re-parsed profile does not render: {e}"));
            assert_eq!(first, second, "render → parse → render differs");
        }
    }
});
