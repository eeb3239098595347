//! A JSON body read for a few top-level fields, without building the rest of it.
//!
//! Billing needs a handful of values from each request (`model`, `stream`, the output cap) and
//! each response (`usage`), but a body is mostly other things: the prompt's messages, the answer's
//! choices, base64 images. [`parse`] checks the whole body's syntax as `serde_json` does, keeps the
//! named fields as [`Value`]s and skips everything else without allocating, so the readers built
//! on `Value` (`get`, `pointer`) work unchanged on what it returns.

use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// How a kept field is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    /// The whole value.
    Whole,
    /// An array's length only: as an array of that many `null`s (anything else as `null`).
    Length,
}

/// `body` as JSON with, of each object at its top level (or, when it is an array, of each object
/// in it), only the fields `keep` names; `None` when the body is not JSON.
///
/// Equal to `serde_json::from_slice::<Value>(body)` for every reader that only looks at those
/// fields: a duplicated field keeps its last value, as there. Values other than objects at the top
/// level (and other than objects in a top-level array) come back as `null`.
pub(crate) fn parse(body: &[u8], keep: &[(&str, Keep)]) -> Option<Value> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = Top { keep, in_array: false }.deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    Some(value)
}

/// A visitor's methods for JSON's scalars (`null`, booleans, numbers, strings): each is `null`.
macro_rules! scalars_are_null {
    () => {
        fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_str<E>(self, _: &str) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
    };
}

/// An object whose fields are filtered; at the top level an array of such objects.
#[derive(Clone, Copy)]
struct Top<'k> {
    keep: &'k [(&'k str, Keep)],
    in_array: bool,
}

impl<'de> DeserializeSeed<'de> for Top<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut kept = Map::new();
        while let Some(index) = map.next_key_seed(FieldIndex(self.keep))? {
            match index.map(|i| self.keep[i]) {
                Some((name, Keep::Whole)) => {
                    kept.insert(name.to_owned(), map.next_value::<Value>()?);
                }
                Some((name, Keep::Length)) => {
                    kept.insert(name.to_owned(), map.next_value_seed(Length)?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(kept))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        if self.in_array {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(Value::Null);
        }
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Top { in_array: true, ..self })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    scalars_are_null!();
}

/// A field's name, as its index in the kept names (`None`: skipped), read without allocating.
struct FieldIndex<'k>(&'k [(&'k str, Keep)]);

impl<'de> DeserializeSeed<'de> for FieldIndex<'_> {
    type Value = Option<usize>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Option<usize>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldIndex<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E>(self, name: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|(kept, _)| *kept == name))
    }
}

/// An array's length, as that many `null`s; anything else as `null`.
struct Length;

impl<'de> DeserializeSeed<'de> for Length {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Length {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut length = 0usize;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            length += 1;
        }
        Ok(Value::Array(vec![Value::Null; length]))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Value::Null)
    }

    scalars_are_null!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEEP: &[(&str, Keep)] = &[("model", Keep::Whole), ("usage", Keep::Whole), ("data", Keep::Length)];

    /// What [`parse`] must equal: the whole tree, filtered.
    fn reference(body: &[u8]) -> Option<Value> {
        let filter = |value: Value| match value {
            Value::Object(fields) => Value::Object(
                fields
                    .into_iter()
                    .filter_map(|(name, value)| match KEEP.iter().find(|(kept, _)| *kept == name)?.1 {
                        Keep::Whole => Some((name, value)),
                        Keep::Length => Some((
                            name,
                            value.as_array().map_or(Value::Null, |items| Value::Array(vec![Value::Null; items.len()])),
                        )),
                    })
                    .collect(),
            ),
            _ => Value::Null,
        };
        Some(match serde_json::from_slice::<Value>(body).ok()? {
            Value::Array(items) => Value::Array(items.into_iter().map(filter).collect()),
            other => filter(other),
        })
    }

    #[test]
    fn only_the_kept_fields_are_read_and_the_last_duplicate_wins() {
        let body = br#"{"id":"x","model":"a","choices":[{"message":{"content":"hi"}}],"model":"b",
            "usage":{"prompt_tokens":3},"data":[{"b64_json":"AAAA"},{"url":"u"}]}"#;
        let parsed = parse(body, KEEP).unwrap();
        assert_eq!(parsed, serde_json::json!({"model": "b", "usage": {"prompt_tokens": 3}, "data": [null, null]}));
    }

    #[test]
    fn a_body_that_is_not_json_is_none() {
        for body in [&b""[..], b"not json", br#"{"model":"a""#, br#"{"model":"a"} trailing"#, br#"{"x":[1,}"#] {
            assert_eq!(parse(body, KEEP), None, "{}", String::from_utf8_lossy(body));
        }
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[a-z\\\\\"é]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("(model|usage|data|choices|x)", inner), 0..5)
                    .prop_map(|fields| Value::Object(fields.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn the_sparse_reading_equals_the_whole_tree_filtered(value in json(), dup in "(model|usage|data)", raw in any::<u8>()) {
            let text = value.to_string();
            prop_assert_eq!(parse(text.as_bytes(), KEEP), reference(text.as_bytes()));
            // A duplicated field, spliced into an object by hand (a `Value` cannot hold one).
            if let Some(rest) = text.strip_prefix('{') {
                let spliced = format!("{{\"{dup}\":{raw},{rest}");
                prop_assert_eq!(parse(spliced.as_bytes(), KEEP), reference(spliced.as_bytes()));
            }
        }
    }
}
