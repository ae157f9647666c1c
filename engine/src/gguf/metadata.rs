//! Ordered metadata with typed, range-checked accessors.

use std::collections::HashMap;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::error::GgufError;
use super::value::{Array, Value, ValueType};

/// Key/value metadata in file order, with lookup by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

impl Metadata {
    /// Adds a key; returns false (and changes nothing) if the key is already present.
    pub fn insert(&mut self, key: String, value: Value) -> bool {
        if self.index.contains_key(&key) {
            return false;
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value));
        true
    }

    /// Sets a key, replacing any earlier value in place.
    pub fn set(&mut self, key: &str, value: Value) {
        match self.index.get(key) {
            Some(&i) => self.entries[i].1 = value,
            None => {
                self.insert(key.to_string(), value);
            }
        }
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    /// Entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn require(&self, key: &str) -> Result<&Value, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            key: key.to_string(),
        })
    }

    fn int<T: TryFrom<i128>>(
        &self,
        key: &str,
        expected: &'static str,
    ) -> Result<Option<T>, GgufError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let wide = v.as_i128().ok_or_else(|| GgufError::WrongKeyType {
            key: key.to_string(),
            expected,
            found: v.value_type(),
        })?;
        T::try_from(wide)
            .map(Some)
            .map_err(|_| GgufError::KeyOutOfRange {
                key: key.to_string(),
                value: wide.to_string(),
                expected,
            })
    }

    /// An integer key that fits u32 (any integer type is accepted), if present.
    pub fn get_opt_u32(&self, key: &str) -> Result<Option<u32>, GgufError> {
        self.int(key, "an unsigned 32-bit integer")
    }

    /// An integer key that fits u64, if present.
    pub fn get_opt_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.int(key, "an unsigned 64-bit integer")
    }

    /// A required integer key that fits u32.
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.get_opt_u32(key)?.ok_or_else(|| GgufError::MissingKey {
            key: key.to_string(),
        })
    }

    /// A float key (f32 or f64), if present.
    pub fn get_opt_f32(&self, key: &str) -> Result<Option<f32>, GgufError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        v.as_f64()
            .map(|f| Some(f as f32))
            .ok_or_else(|| GgufError::WrongKeyType {
                key: key.to_string(),
                expected: "float32",
                found: v.value_type(),
            })
    }

    /// A bool key, if present.
    pub fn get_opt_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(GgufError::WrongKeyType {
                key: key.to_string(),
                expected: "bool",
                found: v.value_type(),
            }),
        }
    }

    /// A string key, if present.
    pub fn get_opt_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(GgufError::WrongKeyType {
                key: key.to_string(),
                expected: "string",
                found: v.value_type(),
            }),
        }
    }

    /// A required string key.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        self.get_opt_str(key)?.ok_or_else(|| GgufError::MissingKey {
            key: key.to_string(),
        })
    }

    /// An array key whose elements have type `elem`, if present.
    pub fn get_opt_array(
        &self,
        key: &str,
        elem: ValueType,
        expected: &'static str,
    ) -> Result<Option<&Array>, GgufError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match v {
            Value::Array(a) if a.elem == elem => Ok(Some(a)),
            _ => Err(GgufError::WrongKeyType {
                key: key.to_string(),
                expected,
                found: v.value_type(),
            }),
        }
    }

    /// A required array of strings.
    pub fn get_string_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        self.require(key)?;
        let a = self
            .get_opt_array(key, ValueType::String, "array of string")?
            .ok_or_else(|| GgufError::MissingKey {
                key: key.to_string(),
            })?;
        Ok(a.items.iter().filter_map(Value::as_str).collect())
    }
}

impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (k, v) in &self.entries {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}
