//! Items as they are stored: attribute builders and readers, items as
//! monotone 0.4 writes them, and 0.4's way of writing them.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::Table;

/// An item: its attributes by name.
pub type Item = HashMap<String, AttributeValue>;

pub fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub fn ss(v: &[&str]) -> AttributeValue {
    AttributeValue::Ss(v.iter().map(|x| x.to_string()).collect())
}

pub fn m(pairs: &[(&str, AttributeValue)]) -> AttributeValue {
    AttributeValue::M(item(pairs))
}

pub fn item(pairs: &[(&str, AttributeValue)]) -> Item {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// A counter, byte for byte as monotone 0.4 writes it.
pub fn counter_item(id: &str, version: u64, value: u64) -> Item {
    item(&[
        ("ID", s(id)),
        ("Type", s("COUNTER")),
        ("Version", n(version)),
        ("Value", n(value)),
    ])
}

/// The number `name` of `it`.
pub fn number(it: &Item, name: &str) -> u64 {
    match it.get(name) {
        Some(AttributeValue::N(v)) => v.parse().unwrap(),
        other => panic!("{name}: {other:?}"),
    }
}

/// The members of an `Items` set, sorted.
pub fn members(it: &Item) -> Vec<String> {
    match it.get("Items") {
        Some(AttributeValue::Ss(v)) => {
            let mut v = v.clone();
            v.sort();
            v
        }
        None => vec![],
        other => panic!("Items is not a string set: {other:?}"),
    }
}

/// monotone 0.4's queue entry, as it parses `Items`.
#[derive(serde::Deserialize, Debug, PartialEq)]
pub struct QueuePosition04 {
    pub process_id: String,
    pub counter: u64,
}

impl Table {
    /// monotone 0.4's write: the whole item `it` as it was read but for
    /// what 0.4 changed, one version up, conditional on the version read.
    pub async fn write_as_0_4(&self, mut it: Item) {
        let version = number(&it, "Version");
        it.insert("Version".into(), n(version + 1));
        self.raw
            .put_item()
            .table_name(&self.name)
            .set_item(Some(it))
            .condition_expression("Version = :version OR attribute_not_exists(Version)")
            .expression_attribute_values(":version", n(version))
            .send()
            .await
            .expect("0.4's conditional write on what the store wrote");
    }
}
