//! A document's rules that no store should write twice: the size limit, the
//! stored text, and what changed between two values (the top-level diff of
//! the change stream).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, ErrorKind, Result};

/// The longest document accepted, in bytes of its compact JSON text:
/// 350 KiB, which leaves room within DynamoDB's 400 KB item limit for the
/// id (at most 1 KiB) and the other attributes.
pub const MAX_DOCUMENT_BYTES: usize = 350 * 1024;

/// The text a store keeps for `value`: compact JSON. Longer than
/// [`MAX_DOCUMENT_BYTES`] is InvalidInput, naming the id and both sizes.
pub(crate) fn encode(id: &str, value: &Value) -> Result<String> {
    let text = serde_json::to_string(value).expect("a JSON value always serializes");
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(Error::invalid(format!(
            "document `{id}` would be {} bytes of JSON; the limit is {MAX_DOCUMENT_BYTES}",
            text.len()
        )));
    }
    Ok(text)
}

/// The value of stored text; Corrupt (naming `place` and the id) if it is
/// not JSON.
pub(crate) fn decode(place: &str, id: &str, text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| {
        Error::new(
            ErrorKind::Corrupt,
            format!("{place}: document `{id}` holds text that is not JSON ({e}); monotone leaves it as it is"),
        )
    })
}

/// What changed at the top level of a document between two versions.
///
/// When both values are JSON objects (or absent, which counts as an object
/// without keys), the change is given key by key; otherwise the value changed
/// as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum Diff {
    /// Key by key; keys whose values are equal are not listed.
    Keys {
        /// Keys that appeared, with their values.
        added: BTreeMap<String, Value>,
        /// Keys whose values changed, with the old and the new value.
        modified: BTreeMap<String, Modified>,
        /// Keys that went, with the values they had.
        removed: BTreeMap<String, Value>,
    },
    /// The value as a whole, where one side is not an object: `None` is an
    /// absent document.
    Whole {
        /// The value before.
        old: Option<Value>,
        /// The value after.
        new: Option<Value>,
    },
}

/// A key's value before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Modified {
    /// The value before.
    pub old: Value,
    /// The value after.
    pub new: Value,
}

impl Diff {
    /// What changed from `old` to `new`.
    pub fn between(old: Option<&Value>, new: Option<&Value>) -> Diff {
        fn keys<'a>(
            v: Option<&'a Value>,
            empty: &'a Map<String, Value>,
        ) -> Option<&'a Map<String, Value>> {
            match v {
                None => Some(empty),
                Some(Value::Object(m)) => Some(m),
                Some(_) => None,
            }
        }
        let empty = Map::new();
        let (Some(before), Some(after)) = (keys(old, &empty), keys(new, &empty)) else {
            return Diff::Whole {
                old: old.cloned(),
                new: new.cloned(),
            };
        };
        let mut added = BTreeMap::new();
        let mut modified = BTreeMap::new();
        let mut removed = BTreeMap::new();
        for (k, v) in after {
            match before.get(k) {
                None => {
                    added.insert(k.clone(), v.clone());
                }
                Some(was) if was != v => {
                    modified.insert(
                        k.clone(),
                        Modified {
                            old: was.clone(),
                            new: v.clone(),
                        },
                    );
                }
                Some(_) => {}
            }
        }
        for (k, v) in before {
            if !after.contains_key(k) {
                removed.insert(k.clone(), v.clone());
            }
        }
        Diff::Keys {
            added,
            modified,
            removed,
        }
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        match self {
            Diff::Keys {
                added,
                modified,
                removed,
            } => added.is_empty() && modified.is_empty() && removed.is_empty(),
            Diff::Whole { old, new } => old == new,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_limit_is_on_the_compact_text() {
        let fits = Value::String("x".repeat(MAX_DOCUMENT_BYTES - 2));
        assert_eq!(encode("d", &fits).unwrap().len(), MAX_DOCUMENT_BYTES);
        let over = Value::String("x".repeat(MAX_DOCUMENT_BYTES - 1));
        let e = encode("d", &over).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("`d`"), "{e}");
        assert_eq!(
            encode("d", &json!({"a": [1, 2]})).unwrap(),
            r#"{"a":[1,2]}"#
        );
    }

    #[test]
    fn text_that_is_not_json_is_corrupt() {
        let e = decode("sqlite database f", "d", "{nope").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(e.to_string().contains("`d`"), "{e}");
    }

    #[test]
    fn objects_diff_key_by_key() {
        let old = json!({"same": 1, "changed": [1], "gone": "x"});
        let new = json!({"same": 1, "changed": [1, 2], "new": null});
        let Diff::Keys {
            added,
            modified,
            removed,
        } = Diff::between(Some(&old), Some(&new))
        else {
            panic!("a key diff")
        };
        assert_eq!(added, BTreeMap::from([("new".into(), Value::Null)]));
        assert_eq!(
            modified,
            BTreeMap::from([(
                "changed".into(),
                Modified {
                    old: json!([1]),
                    new: json!([1, 2])
                }
            )])
        );
        assert_eq!(removed, BTreeMap::from([("gone".into(), json!("x"))]));
        assert!(Diff::between(Some(&old), Some(&old)).is_empty());
    }

    #[test]
    fn absent_is_an_object_without_keys_and_other_values_change_whole() {
        let created = Diff::between(None, Some(&json!({"a": 1})));
        assert_eq!(
            serde_json::to_value(&created).unwrap(),
            json!({"added": {"a": 1}, "modified": {}, "removed": {}})
        );
        let whole = Diff::between(Some(&json!({"a": 1})), Some(&json!([1])));
        assert_eq!(
            serde_json::to_value(&whole).unwrap(),
            json!({"old": {"a": 1}, "new": [1]})
        );
        let removed = Diff::between(Some(&json!(5)), None);
        assert_eq!(
            removed,
            Diff::Whole {
                old: Some(json!(5)),
                new: None
            }
        );
        assert!(Diff::between(None, None).is_empty());
    }
}
