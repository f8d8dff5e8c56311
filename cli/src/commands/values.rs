//! Argument values that several commands take and read the same way:
//! durations (`--ttl`, `--timeout`, `--kill-after`), poll intervals
//! (`--poll`) and `-t KEY=VALUE` tags. The clap value parsers here are named
//! in the commands' `#[arg(value_parser = ...)]`; what clap cannot check
//! (a tag key given twice) is checked once the command runs.

use std::time::Duration;

use monotone::Tags;

use super::CommandError;

/// A duration such as `15s`, `1m30s` or `500ms`. A negative one is named
/// as such (the arguments that take durations accept a leading `-`, so
/// that `--ttl -5s` reaches this message rather than clap's "unexpected
/// argument").
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.trim_start().starts_with('-') {
        return Err(format!(
            "`{s}` is negative: a duration is 0 or more, like 15s, 2m or 500ms"
        ));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration like 15s, 2m or 500ms ({e})"))
}

/// A document version: a whole number from 0.
pub fn parse_version(s: &str) -> Result<u64, String> {
    if s.trim_start().starts_with('-') {
        return Err(format!(
            "`{s}` is negative: a version is a whole number from 0"
        ));
    }
    s.parse().map_err(|_| {
        format!(
            "`{s}` is not a version: a whole number from 0 to {}",
            u64::MAX
        )
    })
}

/// The shortest `--ttl`, the same for `queue join`, `lock` and `claim`: a
/// renewal takes milliseconds to tens of milliseconds, and a lease must
/// leave room for a slow one or two. (The library accepts leases from
/// `monotone::lease::MIN_LEASE`, for tests on a paused clock; on the
/// command line a lease is renewed over a real network.)
pub const MIN_TTL: Duration = Duration::from_millis(200);

/// A `--ttl` from [`MIN_TTL`] to the longest lease; the same check and
/// message for every command that takes one, before anything is written.
pub fn check_ttl(ttl: Duration) -> Result<(), String> {
    if ttl < MIN_TTL {
        return Err(format!(
            "--ttl {} is too short to renew safely; use at least {}",
            humantime::format_duration(ttl),
            humantime::format_duration(MIN_TTL)
        ));
    }
    if ttl > monotone::lease::MAX_LEASE {
        return Err(format!(
            "--ttl {} is longer than the longest lease, {}",
            humantime::format_duration(ttl),
            humantime::format_duration(monotone::lease::MAX_LEASE)
        ));
    }
    Ok(())
}

/// A poll interval: a duration from 10 ms to an hour.
pub fn parse_poll(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(10) || d > Duration::from_secs(3600) {
        return Err(format!("`{s}` is out of range: poll between 10ms and 1h"));
    }
    Ok(d)
}

/// One `-t KEY=VALUE`: the key is up to the first `=`, and not empty.
pub fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some(("", _)) => Err(format!("tag `{s}` has an empty key")),
        Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
        None => Err(format!("tag `{s}` is not of the form KEY=VALUE")),
    }
}

/// The `-t KEY=VALUE` pairs as tags; a key given twice is a usage error.
pub fn tag_map(pairs: Vec<(String, String)>) -> Result<Tags, CommandError> {
    let mut tags = Tags::new();
    for (k, v) in pairs {
        if tags.contains_key(&k) {
            return Err(CommandError::Usage(format!(
                "tag `{k}` is given more than once"
            )));
        }
        tags.insert(k, v);
    }
    Ok(tags)
}
