//! Reads only the fields a rule set needs out of an event's JSON bytes: a trie of the wanted paths
//! guides serde_json, which copies wanted values into their slots and skips everything else without
//! allocating.

use super::fields::FieldTable;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;

#[derive(Debug, Default)]
pub struct PathTrie {
    slot: Option<usize>,
    children: Vec<(String, PathTrie)>,
}

impl PathTrie {
    pub fn new(fields: &FieldTable) -> PathTrie {
        let mut root = PathTrie::default();
        for (slot, path) in fields.paths().iter().enumerate() {
            let mut node = &mut root;
            for key in path {
                let index = match node.children.iter().position(|(k, _)| k == key) {
                    Some(index) => index,
                    None => {
                        node.children.push((key.clone(), PathTrie::default()));
                        node.children.len() - 1
                    }
                };
                node = match node.children.get_mut(index) {
                    Some((_, child)) => child,
                    None => return root,
                };
            }
            node.slot = Some(slot);
        }
        root
    }

    fn child(&self, key: &str) -> Option<&PathTrie> {
        self.children.iter().find(|(k, _)| k == key).map(|(_, child)| child)
    }

    /// Fills this node's slot and its descendants' from an already parsed value.
    fn fill_from(&self, value: &Value, slots: &mut [Option<Value>]) {
        if let Some(slot) = self.slot.and_then(|s| slots.get_mut(s)) {
            *slot = Some(value.clone());
        }
        for (key, child) in &self.children {
            let inner = match value {
                Value::Object(map) => map.get(key),
                Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
            if let Some(inner) = inner {
                child.fill_from(inner, slots);
            }
        }
    }

    /// Parses `bytes` (one JSON document), filling `slots`; a document that is not an object fills
    /// nothing.
    pub fn extract(&self, bytes: &[u8], slots: &mut [Option<Value>]) -> Result<(), serde_json::Error> {
        slots.iter_mut().for_each(|slot| *slot = None);
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        TrieSeed { node: self, slots }.deserialize(&mut deserializer)?;
        deserializer.end()
    }
}

struct TrieSeed<'t, 's> {
    node: &'t PathTrie,
    slots: &'s mut [Option<Value>],
}

impl<'de> DeserializeSeed<'de> for TrieSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        if self.node.slot.is_some() {
            let value = Value::deserialize(deserializer)?;
            self.node.fill_from(&value, self.slots);
            Ok(())
        } else {
            deserializer.deserialize_any(self)
        }
    }
}

/// An object key, borrowed from the input when it has no escapes (serde's own `Cow` always copies).
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(key))
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(key.to_owned()))
    }
}

impl<'de> Visitor<'de> for TrieSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match self.node.child(&key) {
                Some(child) => map.next_value_seed(TrieSeed { node: child, slots: self.slots })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    /// Array elements are addressed by index (`items.0`); parse the array and walk it.
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        let value = Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        self.node.fill_from(&value, self.slots);
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}
