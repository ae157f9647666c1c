//! One case mapping holds the common header keys and the kind's own keys side by side.
//! serde's `flatten` would lose both strictness and error positions, so this reads the
//! header keys itself and hands every other key, unbuffered, to the kind's strict struct:
//! an unknown key is reported by that struct at the key's own line.

use std::collections::BTreeSet;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::{BackendPair, Capability};

/// The keys every case has, whatever its kind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Header {
    pub id: String,
    pub description: Option<String>,
    pub needs: BTreeSet<Capability>,
    pub backends: Vec<BackendPair>,
}

/// A case mapping: the header plus the kind's parameters `P`.
#[derive(Debug)]
pub(crate) struct Entry<P> {
    pub header: Header,
    pub params: P,
}

#[derive(Clone, Copy)]
enum HeaderKey {
    Id,
    Description,
    Needs,
    Backends,
}

impl HeaderKey {
    fn from_name(name: &str) -> Option<HeaderKey> {
        match name {
            "id" => Some(HeaderKey::Id),
            "description" => Some(HeaderKey::Description),
            "needs" => Some(HeaderKey::Needs),
            "backends" => Some(HeaderKey::Backends),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            HeaderKey::Id => "id",
            HeaderKey::Description => "description",
            HeaderKey::Needs => "needs",
            HeaderKey::Backends => "backends",
        }
    }
}

#[derive(Default)]
struct PartialHeader {
    id: Option<String>,
    description: Option<String>,
    needs: Option<BTreeSet<Capability>>,
    backends: Option<Vec<BackendPair>>,
}

impl<'de, P: Deserialize<'de>> Deserialize<'de> for Entry<P> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EntryVisitor(PhantomData))
    }
}

struct EntryVisitor<P>(PhantomData<P>);

impl<'de, P: Deserialize<'de>> Visitor<'de> for EntryVisitor<P> {
    type Value = Entry<P>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a case: a mapping with `id`, `backends` and the kind's fields")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Entry<P>, A::Error> {
        let mut split = HeaderSplit {
            map,
            header: PartialHeader::default(),
        };
        let params = P::deserialize(MapAccessDeserializer::new(&mut split))?;
        let PartialHeader {
            id,
            description,
            needs,
            backends,
        } = split.header;
        Ok(Entry {
            header: Header {
                id: id.ok_or_else(|| de::Error::missing_field("id"))?,
                description,
                needs: needs.unwrap_or_default(),
                backends: backends.ok_or_else(|| de::Error::missing_field("backends"))?,
            },
            params,
        })
    }
}

/// A map access that keeps the header keys for itself and passes the rest through.
struct HeaderSplit<A> {
    map: A,
    header: PartialHeader,
}

impl<A> HeaderSplit<A> {
    fn read_header<'de>(&mut self, key: HeaderKey) -> Result<(), A::Error>
    where
        A: MapAccess<'de>,
    {
        fn store<T, E: de::Error>(slot: &mut Option<T>, value: T, key: HeaderKey) -> Result<(), E> {
            if slot.is_some() {
                return Err(E::duplicate_field(key.name()));
            }
            *slot = Some(value);
            Ok(())
        }
        let header = &mut self.header;
        match key {
            HeaderKey::Id => store(&mut header.id, self.map.next_value()?, key),
            HeaderKey::Description => store(&mut header.description, self.map.next_value()?, key),
            HeaderKey::Needs => store(&mut header.needs, self.map.next_value()?, key),
            HeaderKey::Backends => store(&mut header.backends, self.map.next_value()?, key),
        }
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for HeaderSplit<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        mut seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            match self.map.next_key_seed(Route(seed))? {
                None => return Ok(None),
                Some(Routed::Params(key)) => return Ok(Some(key)),
                Some(Routed::Header(key, unused)) => {
                    self.read_header(key)?;
                    seed = unused;
                }
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// Reads one key: a header key comes back with the unused seed, any other key goes to the
/// kind's seed while the YAML deserializer still knows the key's position.
struct Route<K>(K);

enum Routed<K, V> {
    Header(HeaderKey, K),
    Params(V),
}

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for Route<K> {
    type Value = Routed<K, K::Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, K: DeserializeSeed<'de>> Visitor<'de> for Route<K> {
    type Value = Routed<K, K::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
        match HeaderKey::from_name(name) {
            Some(key) => Ok(Routed::Header(key, self.0)),
            None => self
                .0
                .deserialize(name.into_deserializer())
                .map(Routed::Params),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Params {
        size: u32,
    }

    fn parse(text: &str) -> Result<Entry<Params>, serde_yaml::Error> {
        serde_yaml::from_str(text)
    }

    #[test]
    fn header_and_params_share_one_mapping() {
        let entry = parse("size: 3\nid: a\nbackends: [engine-cpu~cpp]\nneeds: [data]\n").unwrap();
        assert_eq!(entry.header.id, "a");
        assert_eq!(entry.params.size, 3);
        assert!(entry.header.needs.contains(&Capability::Data));
        assert_eq!(entry.header.backends[0].to_string(), "engine-cpu~cpp");
    }

    #[test]
    fn unknown_key_is_reported_at_its_line() {
        let err = parse("id: a\nbackends: [engine-cpu~cpp]\nsize: 1\nsizes: 2\n").unwrap_err();
        assert_eq!(err.location().unwrap().line(), 4);
        assert!(err.to_string().contains("unknown field `sizes`"), "{err}");
    }

    #[test]
    fn missing_and_duplicate_header_keys() {
        let err = parse("backends: [engine-cpu~cpp]\nsize: 1\n").unwrap_err();
        assert!(err.to_string().contains("missing field `id`"), "{err}");
        let err = parse("id: a\nid: b\nbackends: [engine-cpu~cpp]\nsize: 1\n").unwrap_err();
        assert!(err.to_string().contains("duplicate field `id`"), "{err}");
    }

    #[test]
    fn bad_header_value_is_reported_at_its_line() {
        let err = parse("id: a\nsize: 1\nbackends:\n  - engine-cpu~cpp\n  - engine-cpu-cpp\n")
            .unwrap_err();
        assert_eq!(err.location().unwrap().line(), 5);
    }
}
