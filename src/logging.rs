//! stockade's log output: a minimal `tracing` subscriber writing one line per event to stderr,
//! `2026-12-02T08:51:40.474946Z  WARN message key=value …` (the layout `tracing-subscriber`'s
//! fmt layer had, without its formatting machinery: a quarter of the static binary's growth).
//! No spans are used, so none are recorded; the level is the only filter (`STOCKADE_LOG`).

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// `STOCKADE_LOG=off|error|warn|info|debug|trace` (or 0–5), case-insensitive; default warn.
pub fn level_from(value: Option<&str>) -> LevelFilter {
    let v = value
        .map(str::trim)
        .unwrap_or_default()
        .to_ascii_lowercase();
    match v.as_str() {
        "off" | "0" => LevelFilter::OFF,
        "error" | "1" => LevelFilter::ERROR,
        "info" | "3" => LevelFilter::INFO,
        "debug" | "4" => LevelFilter::DEBUG,
        "trace" | "5" => LevelFilter::TRACE,
        _ => LevelFilter::WARN,
    }
}

/// Installs the stderr subscriber at the `STOCKADE_LOG` level (once; later calls do nothing).
pub fn init() {
    let level = level_from(std::env::var("STOCKADE_LOG").ok().as_deref());
    let _ = tracing::subscriber::set_global_default(Stderr {
        max: level,
        next_id: AtomicU64::new(1),
    });
}

struct Stderr {
    max: LevelFilter,
    next_id: AtomicU64,
}

impl Subscriber for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= &self.max
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        // Span ids must be non-zero; nothing is recorded for them.
        Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed).max(1))
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = String::with_capacity(160);
        timestamp(&mut line, std::time::SystemTime::now());
        let _ = write!(line, " {:>5}", level_name(event.metadata().level()));
        event.record(&mut Fields { line: &mut line });
        line.push('\n');
        // A closed or broken stderr is not an error of the run: a log line never ends stockade.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        _ => "TRACE",
    }
}

/// The message first, then `name=value` pairs (strings quoted, `%x` as Display, `?x` as Debug).
struct Fields<'a> {
    line: &'a mut String,
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        if name == "message" {
            let _ = write!(self.line, " {value:?}");
        } else if !name.starts_with("log.") {
            let name = name.strip_prefix("r#").unwrap_or(name);
            let _ = write!(self.line, " {name}={value:?}");
        }
    }
}

/// RFC 3339 UTC with microseconds, e.g. `2026-12-02T08:51:40.474946Z`.
fn timestamp(out: &mut String, now: std::time::SystemTime) {
    let d = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    );
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn levels_parse_like_before() {
        assert_eq!(level_from(None), LevelFilter::WARN);
        assert_eq!(level_from(Some(" Debug ")), LevelFilter::DEBUG);
        assert_eq!(level_from(Some("info")), LevelFilter::INFO);
        assert_eq!(level_from(Some("off")), LevelFilter::OFF);
        assert_eq!(level_from(Some("5")), LevelFilter::TRACE);
        assert_eq!(level_from(Some("loud")), LevelFilter::WARN);
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let mut s = String::new();
        timestamp(
            &mut s,
            UNIX_EPOCH + Duration::new(1_796_201_500, 474_946_123),
        );
        assert_eq!(s, "2026-12-02T08:51:40.474946Z");
        s.clear();
        timestamp(&mut s, UNIX_EPOCH + Duration::new(951_782_400, 0));
        assert_eq!(s, "2000-02-29T00:00:00.000000Z");
        s.clear();
        timestamp(&mut s, UNIX_EPOCH);
        assert_eq!(s, "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn fields_follow_the_message() {
        let mut line = String::new();
        let mut f = Fields { line: &mut line };
        struct Cs;
        static CS: Cs = Cs;
        impl tracing::callsite::Callsite for Cs {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                &META
            }
        }
        static META: Metadata<'static> = tracing::metadata!(
            name: "t",
            target: "t",
            level: Level::INFO,
            fields: &["message", "pid", "url"],
            callsite: &CS,
            kind: tracing::metadata::Kind::EVENT,
        );
        let fs = META.fields();
        let msg = fs.field("message").expect("message field");
        let pid = fs.field("pid").expect("pid field");
        let url = fs.field("url").expect("url field");
        f.record_debug(&msg, &format_args!("server started"));
        f.record_debug(&pid, &7);
        f.record_str(&url, "http://x/");
        assert_eq!(line, " server started pid=7 url=\"http://x/\"");
    }
}
