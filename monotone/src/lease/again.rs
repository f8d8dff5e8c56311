//! The re-join rule: what a join (a claim) finds when its process (owner)
//! is in the queue (holds a claim) already. Written once, here; the rules of
//! `queue/state.rs` and `claim/state.rs` apply it and word its outcome.
//!
//! | the request | the ticket or claim there | outcome |
//! |---|---|---|
//! | by holder H | made by H | the existing one, nothing written (a resent request is harmless) |
//! | by holder H | leased, by another holder or by none | [`Again::Held`]: nothing written; the holder waits for it to go |
//! | by holder H | permanent | [`Again::Differs`]: a holder cannot hold it |
//! | no holder | the same tags, lease kind and duration | the existing one, nothing written (as in monotone 0.4) |
//! | no holder | other tags, another lease | [`Again::Differs`], naming what differs |
//!
//! Holders are compared first: a holder's own request, sent again, finds its
//! record whatever else it says. Candidates are not compared: an owner's
//! claim is its claim, whichever list it was claimed from.

use crate::lease::record::LeaseRecord;
use crate::queue::ticket::Tags;

/// What a join or claim finds where its process or owner has a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Again {
    /// It is the record asked for: return it, write nothing.
    Same,
    /// Another holder's, or a holder asked for one made without a holder.
    Held,
    /// It is not what was asked for: what it has, and what was asked, of
    /// what differs (for example `no lease` and `a lease of 5s`).
    Differs { held: String, asked: String },
}

/// The rule (see the [module docs](self)) for a record with `tags` and
/// `lease` (`None`: permanent) and a request for `asked_tags` and
/// `asked_lease`, whose holder is the lease's.
pub(crate) fn again(
    tags: &Tags,
    lease: Option<&LeaseRecord>,
    asked_tags: &Tags,
    asked_lease: Option<&LeaseRecord>,
) -> Again {
    let holder = lease.and_then(|l| l.holder);
    if let Some(asking) = asked_lease.and_then(|l| l.holder) {
        return match lease {
            _ if holder == Some(asking) => Again::Same,
            Some(_) => Again::Held,
            None => Again::Differs {
                held: "no lease, which no holder can hold".into(),
                asked: "a lease".into(),
            },
        };
    }
    let duration = |l: Option<&LeaseRecord>| l.map(|l| l.duration_ms);
    let mut held = Vec::new();
    let mut asked = Vec::new();
    if duration(lease) != duration(asked_lease) {
        held.push(show_lease(duration(lease)));
        asked.push(show_lease(duration(asked_lease)));
    }
    if tags != asked_tags {
        held.push(show_tags(tags));
        asked.push(show_tags(asked_tags));
    }
    if held.is_empty() {
        Again::Same
    } else {
        Again::Differs {
            held: held.join(" and "),
            asked: asked.join(" and "),
        }
    }
}

/// `no lease`, `a lease of 5s`, `a lease of 1500ms`.
fn show_lease(ms: Option<u64>) -> String {
    match ms {
        None => "no lease".into(),
        Some(ms) if ms % 1000 == 0 => format!("a lease of {}s", ms / 1000),
        Some(ms) => format!("a lease of {ms}ms"),
    }
}

/// `no tags`, `tags {az=b, role=zk}`.
fn show_tags(tags: &Tags) -> String {
    if tags.is_empty() {
        return "no tags".into();
    }
    let pairs: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("tags {{{}}}", pairs.join(", "))
}

/// The lease of a request for a lease of `lease` ms by `holder`, for tests.
#[cfg(test)]
pub(crate) fn asked(
    lease: Option<u64>,
    holder: Option<crate::lease::holder_id::HolderId>,
) -> Option<LeaseRecord> {
    lease.map(|ms| LeaseRecord::new(std::time::Duration::from_millis(ms), 0).held_by(holder))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::holder_id::HolderId;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_rule_table() {
        let (h1, h2) = (HolderId::new(1), HolderId::new(2));
        let none = Tags::new();
        let zk = tags(&[("role", "zk")]);
        let differs = |held: &str, asked: &str| Again::Differs {
            held: held.into(),
            asked: asked.into(),
        };
        // (tags, lease there, tags asked, lease asked) -> outcome
        let cases = [
            // A holder's own record, whatever the request says besides.
            (
                &none,
                asked(Some(500), h1),
                &zk,
                asked(Some(900), h1),
                Again::Same,
            ),
            // Another holder's, or one made without a holder: held.
            (
                &none,
                asked(Some(500), h1),
                &none,
                asked(Some(500), h2),
                Again::Held,
            ),
            (
                &none,
                asked(Some(500), None),
                &none,
                asked(Some(500), h2),
                Again::Held,
            ),
            // A permanent one cannot be held.
            (
                &none,
                None,
                &none,
                asked(Some(500), h2),
                differs("no lease, which no holder can hold", "a lease"),
            ),
            // No holder: the same tags and lease, even a holder's record.
            (&zk, None, &zk, None, Again::Same),
            (
                &zk,
                asked(Some(5000), h1),
                &zk,
                asked(Some(5000), None),
                Again::Same,
            ),
            (
                &none,
                asked(Some(5000), None),
                &none,
                asked(Some(5000), None),
                Again::Same,
            ),
            // Anything else differs, and says what.
            (
                &none,
                None,
                &none,
                asked(Some(5000), None),
                differs("no lease", "a lease of 5s"),
            ),
            (
                &none,
                asked(Some(1500), None),
                &none,
                None,
                differs("a lease of 1500ms", "no lease"),
            ),
            (
                &none,
                asked(Some(5000), None),
                &none,
                asked(Some(6000), None),
                differs("a lease of 5s", "a lease of 6s"),
            ),
            (&zk, None, &none, None, differs("tags {role=zk}", "no tags")),
            (
                &zk,
                None,
                &tags(&[("az", "b"), ("role", "zk")]),
                asked(Some(5000), None),
                differs(
                    "no lease and tags {role=zk}",
                    "a lease of 5s and tags {az=b, role=zk}",
                ),
            ),
        ];
        for (i, (t, l, at, al, outcome)) in cases.into_iter().enumerate() {
            assert_eq!(again(t, l.as_ref(), at, al.as_ref()), outcome, "case {i}");
        }
    }
}
