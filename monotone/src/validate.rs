//! Input validation shared by every store, so that bad input is refused the
//! same way everywhere and before anything is read or written.

use crate::error::{Error, Result};
use crate::queue::ticket::Tags;

/// Longest id or process id accepted, in bytes (DynamoDB allows 2048 for a
/// hash key; half of that leaves room for prefixes later).
pub const MAX_ID_BYTES: usize = 1024;
/// Longest tag key accepted, in bytes.
pub const MAX_TAG_KEY_BYTES: usize = 256;
/// Longest tag value accepted, in bytes.
pub const MAX_TAG_VALUE_BYTES: usize = 4096;
/// Most tags one ticket may carry.
pub const MAX_TAGS: usize = 64;

/// Check an item id (the `-i` of the CLI).
pub fn id(id: &str) -> Result<()> {
    name("id", id)
}

/// Check a queue member's process id (the `-p` of the CLI).
pub fn process_id(process_id: &str) -> Result<()> {
    name("process id", process_id)
}

/// Check a claim's owner (the `-p` of `monotone claim`).
pub fn owner(owner: &str) -> Result<()> {
    name("owner", owner)
}

fn name(what: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(format!("{what} must not be empty")));
    }
    if value.len() > MAX_ID_BYTES {
        return Err(Error::invalid(format!(
            "{what} is {} bytes long; the limit is {MAX_ID_BYTES}",
            value.len()
        )));
    }
    no_control_chars(what, value)
}

fn no_control_chars(what: &str, value: &str) -> Result<()> {
    match value.char_indices().find(|(_, c)| c.is_control()) {
        Some((at, c)) => Err(Error::invalid(format!(
            "{what} contains the control character {:?} at byte {at}",
            c
        ))),
        None => Ok(()),
    }
}

/// Check a ticket's tags.
pub fn tags(tags: &Tags) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(Error::invalid(format!(
            "{} tags given; the limit is {MAX_TAGS}",
            tags.len()
        )));
    }
    for (key, value) in tags {
        if key.is_empty() {
            return Err(Error::invalid("tag key must not be empty"));
        }
        if key.contains('=') {
            return Err(Error::invalid(format!(
                "tag key `{key}` must not contain `=`"
            )));
        }
        if key.len() > MAX_TAG_KEY_BYTES {
            return Err(Error::invalid(format!(
                "tag key is {} bytes long; the limit is {MAX_TAG_KEY_BYTES}",
                key.len()
            )));
        }
        if value.len() > MAX_TAG_VALUE_BYTES {
            return Err(Error::invalid(format!(
                "tag `{key}` has a value of {} bytes; the limit is {MAX_TAG_VALUE_BYTES}",
                value.len()
            )));
        }
        no_control_chars("tag key", key)?;
        no_control_chars(&format!("tag `{key}`"), value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn kind(r: Result<()>) -> Option<ErrorKind> {
        r.err().map(|e| e.kind())
    }

    #[test]
    fn ids() {
        assert!(id("mycounter").is_ok());
        assert!(id("ünïcødé/with spaces:and.dots").is_ok());
        assert!(id(&"x".repeat(MAX_ID_BYTES)).is_ok());
        assert_eq!(kind(id("")), Some(ErrorKind::InvalidInput));
        assert_eq!(
            kind(id(&"x".repeat(MAX_ID_BYTES + 1))),
            Some(ErrorKind::InvalidInput)
        );
        assert_eq!(kind(id("a\nb")), Some(ErrorKind::InvalidInput));
        assert_eq!(kind(id("a\u{7f}")), Some(ErrorKind::InvalidInput));
        assert_eq!(kind(process_id("")), Some(ErrorKind::InvalidInput));
        let e = process_id("").unwrap_err();
        assert_eq!(e.to_string(), "process id must not be empty");
    }

    #[test]
    fn tag_rules() {
        let ok: Tags = [("role".into(), "zk=1".into()), ("empty".into(), "".into())].into();
        assert!(tags(&ok).is_ok());
        let empty_key: Tags = [("".into(), "v".into())].into();
        assert_eq!(kind(tags(&empty_key)), Some(ErrorKind::InvalidInput));
        let eq_key: Tags = [("a=b".into(), "v".into())].into();
        assert_eq!(kind(tags(&eq_key)), Some(ErrorKind::InvalidInput));
        let ctl: Tags = [("k".into(), "a\u{0}b".into())].into();
        assert_eq!(kind(tags(&ctl)), Some(ErrorKind::InvalidInput));
        let many: Tags = (0..=MAX_TAGS)
            .map(|i| (format!("k{i}"), "v".into()))
            .collect();
        assert_eq!(kind(tags(&many)), Some(ErrorKind::InvalidInput));
        let long: Tags = [("k".into(), "v".repeat(MAX_TAG_VALUE_BYTES + 1))].into();
        assert_eq!(kind(tags(&long)), Some(ErrorKind::InvalidInput));
    }
}
