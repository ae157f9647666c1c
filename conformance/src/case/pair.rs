//! Backend names and the `candidate~reference` pairs a case compares.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A backend a case can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BackendId {
    /// The engine with its best CPU kernels for this host.
    EngineCpu,
    /// The engine forced onto its scalar reference kernels.
    EngineScalar,
    /// The engine forced onto its SIMD kernels.
    EngineSimd,
    /// The engine on a CUDA device.
    EngineCuda,
    /// The C++ reference (bitnet.cpp).
    Cpp,
    /// Expected values written in the case's own files; only ever a reference.
    Expected,
}

impl BackendId {
    /// Every backend id.
    pub const ALL: [BackendId; 6] = [
        BackendId::EngineCpu,
        BackendId::EngineScalar,
        BackendId::EngineSimd,
        BackendId::EngineCuda,
        BackendId::Cpp,
        BackendId::Expected,
    ];

    /// The name written in `backends:` and in trial names.
    pub fn name(self) -> &'static str {
        match self {
            BackendId::EngineCpu => "engine-cpu",
            BackendId::EngineScalar => "engine-scalar",
            BackendId::EngineSimd => "engine-simd",
            BackendId::EngineCuda => "engine-cuda",
            BackendId::Cpp => "cpp",
            BackendId::Expected => "expected",
        }
    }

    /// The device this backend computes on.
    pub fn device(self) -> Device {
        match self {
            BackendId::EngineCuda => Device::Cuda,
            _ => Device::Cpu,
        }
    }
}

impl fmt::Display for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a backend computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    /// Host CPU.
    Cpu,
    /// A CUDA device.
    Cuda,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        })
    }
}

/// Why a backend name or a pair did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairError {
    /// The name is not a backend.
    #[error("unknown backend `{0}`; known: {known}", known = BackendId::ALL.map(BackendId::name).join(", "))]
    UnknownBackend(String),
    /// The text has no single `~`.
    #[error("`{0}` is not a pair: write `candidate~reference`, e.g. `engine-cpu~cpp`")]
    NotAPair(String),
    /// Both sides name the same backend.
    #[error("`{0}` compares a backend with itself")]
    SameBackend(String),
    /// `expected` holds fixed values and cannot be under test.
    #[error("`{0}`: `expected` can only be the reference (right of `~`)")]
    ExpectedAsCandidate(String),
}

impl FromStr for BackendId {
    type Err = PairError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BackendId::ALL
            .into_iter()
            .find(|id| id.name() == s)
            .ok_or_else(|| PairError::UnknownBackend(s.to_string()))
    }
}

/// Two backends compared by a trial: the candidate under test and the reference it must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendPair {
    /// The backend under test (left of `~`).
    pub candidate: BackendId,
    /// The backend it is compared with (right of `~`).
    pub reference: BackendId,
}

impl BackendPair {
    /// The pair's device: CUDA when either side runs on CUDA, CPU otherwise.
    pub fn device(self) -> Device {
        if self.candidate.device() == Device::Cuda || self.reference.device() == Device::Cuda {
            Device::Cuda
        } else {
            Device::Cpu
        }
    }
}

impl FromStr for BackendPair {
    type Err = PairError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (left, right) = s
            .split_once('~')
            .filter(|(_, right)| !right.contains('~'))
            .ok_or_else(|| PairError::NotAPair(s.to_string()))?;
        let candidate: BackendId = left.parse()?;
        let reference: BackendId = right.parse()?;
        if candidate == reference {
            return Err(PairError::SameBackend(s.to_string()));
        }
        if candidate == BackendId::Expected {
            return Err(PairError::ExpectedAsCandidate(s.to_string()));
        }
        Ok(BackendPair {
            candidate,
            reference,
        })
    }
}

impl fmt::Display for BackendPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}~{}", self.candidate, self.reference)
    }
}

impl Serialize for BackendId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl Serialize for BackendPair {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BackendId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(ParseVisitor::<BackendId>::new("a backend name"))
    }
}

impl<'de> Deserialize<'de> for BackendPair {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(ParseVisitor::<BackendPair>::new(
            "a backend pair `candidate~reference`",
        ))
    }
}

/// Deserializes any `FromStr` type from a YAML string, keeping the string's position.
struct ParseVisitor<T> {
    expecting: &'static str,
    target: std::marker::PhantomData<T>,
}

impl<T> ParseVisitor<T> {
    fn new(expecting: &'static str) -> Self {
        ParseVisitor {
            expecting,
            target: std::marker::PhantomData,
        }
    }
}

impl<T: FromStr<Err: fmt::Display>> Visitor<'_> for ParseVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        text.parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_round_trips_through_text() {
        let pair: BackendPair = "engine-cuda~cpp".parse().unwrap();
        assert_eq!(pair.candidate, BackendId::EngineCuda);
        assert_eq!(pair.reference, BackendId::Cpp);
        assert_eq!(pair.to_string(), "engine-cuda~cpp");
        assert_eq!(pair.device(), Device::Cuda);
        let cpu: BackendPair = "engine-scalar~engine-simd".parse().unwrap();
        assert_eq!(cpu.device(), Device::Cpu);
    }

    #[test]
    fn pair_errors_say_what_is_wrong() {
        let cases = [
            ("engine-cpu", PairError::NotAPair("engine-cpu".into())),
            ("a~b~c", PairError::NotAPair("a~b~c".into())),
            (
                "engine-gpu~cpp",
                PairError::UnknownBackend("engine-gpu".into()),
            ),
            ("engine-cpu~", PairError::UnknownBackend(String::new())),
            ("cpp~cpp", PairError::SameBackend("cpp~cpp".into())),
            (
                "expected~cpp",
                PairError::ExpectedAsCandidate("expected~cpp".into()),
            ),
            (
                " engine-cpu~cpp",
                PairError::UnknownBackend(" engine-cpu".into()),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<BackendPair>().unwrap_err(), want, "{text}");
        }
        assert!(PairError::NotAPair("x".into())
            .to_string()
            .contains("candidate~reference"));
    }

    #[test]
    fn pair_deserializes_from_yaml_with_position() {
        let pairs: Vec<BackendPair> =
            serde_yaml::from_str("[engine-cpu~cpp, engine-cpu~expected]").unwrap();
        assert_eq!(pairs[1].reference, BackendId::Expected);
        let err =
            serde_yaml::from_str::<Vec<BackendPair>>("- engine-cpu~cpp\n- cpu~cpp\n").unwrap_err();
        assert_eq!(err.location().unwrap().line(), 2);
        assert!(err.to_string().contains("unknown backend `cpu`"), "{err}");
    }
}
