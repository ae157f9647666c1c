//! The YAML shape of `tolerance.yaml`, read strictly: metric names are checked against their
//! kind and bounds against their metric while the parser still knows each line.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::{Bound, Match, Metric};
use crate::case::CaseKind;

/// Rules of an override that span its fields; the message has no location.
pub(super) fn check_override(raw: &OverrideYaml) -> Result<(), String> {
    if raw.reason.trim().is_empty() {
        return Err("`reason` must say why the defaults do not fit".into());
    }
    if raw.matcher.is_empty() {
        return Err("`match` is empty: change the defaults instead".into());
    }
    if raw.bounds.is_empty() {
        return Err("`bounds` is empty".into());
    }
    if let Some(kind) = raw.matcher.kind {
        if raw.matcher.format.is_some() && kind != CaseKind::Quantization {
            return Err(format!(
                "`format` only applies to quantization cases, not {kind}"
            ));
        }
        if let Some(metric) = raw.bounds.keys().find(|m| m.kind() != kind) {
            return Err(format!(
                "metric `{metric}` belongs to {}, but the override matches kind {kind}",
                metric.kind()
            ));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ToleranceFile {
    pub defaults: DefaultsTable,
    #[serde(default)]
    pub overrides: Vec<OverrideYaml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OverrideYaml {
    #[serde(rename = "match")]
    pub matcher: Match,
    #[serde(deserialize_with = "any_kind_bounds")]
    pub bounds: BTreeMap<Metric, Bound>,
    pub reason: String,
}

fn any_kind_bounds<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<Metric, Bound>, D::Error> {
    BoundsSeed(None).deserialize(deserializer)
}

/// `defaults:` — kind → metric → bound.
pub(super) struct DefaultsTable(pub BTreeMap<CaseKind, BTreeMap<Metric, Bound>>);

impl<'de> Deserialize<'de> for DefaultsTable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TableVisitor;
        impl<'de> Visitor<'de> for TableVisitor {
            type Value = DefaultsTable;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping from case kind to metric bounds")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DefaultsTable, A::Error> {
                let mut table = BTreeMap::new();
                while let Some(kind) = map.next_key::<CaseKind>()? {
                    let bounds = map.next_value_seed(BoundsSeed(Some(kind)))?;
                    if table.insert(kind, bounds).is_some() {
                        return Err(de::Error::custom(format!("kind `{kind}` appears twice")));
                    }
                }
                Ok(DefaultsTable(table))
            }
        }
        deserializer.deserialize_map(TableVisitor)
    }
}

/// A metric → bound mapping; with a kind, only that kind's metrics are accepted.
struct BoundsSeed(Option<CaseKind>);

impl<'de> DeserializeSeed<'de> for BoundsSeed {
    type Value = BTreeMap<Metric, Bound>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BoundsSeed {
    type Value = BTreeMap<Metric, Bound>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping from metric name to bound")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut bounds = BTreeMap::new();
        while let Some(metric) = map.next_key_seed(MetricKey(self.0))? {
            let bound = map.next_value_seed(BoundOf(metric))?;
            if bounds.insert(metric, bound).is_some() {
                return Err(de::Error::custom(format!(
                    "metric `{metric}` appears twice"
                )));
            }
        }
        Ok(bounds)
    }
}

/// A metric name, checked against the kind it is listed under.
struct MetricKey(Option<CaseKind>);

impl<'de> DeserializeSeed<'de> for MetricKey {
    type Value = Metric;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Metric, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for MetricKey {
    type Value = Metric;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a metric name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Metric, E> {
        let known = Metric::names_of(self.0);
        let metric = Metric::from_name(name)
            .ok_or_else(|| E::custom(format!("unknown metric `{name}`; known: {known}")))?;
        match self.0 {
            Some(kind) if metric.kind() != kind => Err(E::custom(format!(
                "metric `{name}` belongs to {}, not {kind}; {kind} has: {known}",
                metric.kind()
            ))),
            _ => Ok(metric),
        }
    }
}

/// A bound, checked against the shape its metric takes.
struct BoundOf(Metric);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BoundFields {
    max: Option<f64>,
    min: Option<f64>,
    rtol: Option<f64>,
    atol: Option<f64>,
}

impl<'de> DeserializeSeed<'de> for BoundOf {
    type Value = Bound;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Bound, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BoundOf {
    type Value = Bound;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a bound {}", self.0.shape().example())
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Bound, E> {
        if text != "exact" {
            return Err(E::custom(format!(
                "`{text}` is not a bound; `{}` takes {}",
                self.0,
                self.0.shape().example()
            )));
        }
        self.checked(Bound::Exact)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Bound, A::Error> {
        let fields = BoundFields::deserialize(de::value::MapAccessDeserializer::new(map))?;
        let bound = match fields {
            BoundFields {
                max: Some(limit),
                min: None,
                rtol: None,
                atol: None,
            } => Bound::Max(limit),
            BoundFields {
                max: None,
                min: Some(limit),
                rtol: None,
                atol: None,
            } => Bound::Min(limit),
            BoundFields {
                max: None,
                min: None,
                rtol: Some(rtol),
                atol: Some(atol),
            } => Bound::Close { rtol, atol },
            BoundFields {
                max: None,
                min: None,
                rtol: Some(_),
                atol: None,
            }
            | BoundFields {
                max: None,
                min: None,
                rtol: None,
                atol: Some(_),
            } => {
                return Err(de::Error::custom(
                    "rtol and atol travel together: give both",
                ))
            }
            _ => {
                return Err(de::Error::custom(format!(
                    "`{}` takes {}",
                    self.0,
                    self.0.shape().example()
                )))
            }
        };
        let numbers_ok = match bound {
            Bound::Max(x) | Bound::Min(x) => x.is_finite(),
            Bound::Close { rtol, atol } => {
                rtol.is_finite() && atol.is_finite() && rtol >= 0.0 && atol >= 0.0
            }
            Bound::Exact => true,
        };
        if !numbers_ok {
            return Err(de::Error::custom(format!(
                "`{}`: bounds must be finite, and rtol/atol not negative",
                self.0
            )));
        }
        self.checked(bound)
    }
}

impl BoundOf {
    fn checked<E: de::Error>(self, bound: Bound) -> Result<Bound, E> {
        if bound.shape() == self.0.shape() {
            Ok(bound)
        } else {
            Err(E::custom(format!(
                "`{}` takes {}",
                self.0,
                self.0.shape().example()
            )))
        }
    }
}
