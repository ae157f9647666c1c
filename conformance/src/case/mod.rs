//! The case schema: what one entry of `fixtures/<kind>/*.yaml` declares.
//!
//! A case file is a YAML sequence of cases of the kind named by its folder. Every case has
//! the same header (`id`, optional `description`, optional `needs`, `backends`) followed by the
//! kind's own fields, all in one mapping, and unknown keys are errors.

mod entry;
mod pair;
mod params;

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub(crate) use entry::{Entry, Header};
pub use pair::{BackendId, BackendPair, Device, PairError};
pub use params::{
    held_out_tail, Activations, AlignmentParams, FileCheckError, FileRef, FileRoot, GenerateParams,
    Input, LogitsParams, PerplexityParams, QuantFormat, QuantizationParams, Sha256, Shape,
    TextSource, Tiling, TokenMatchParams, TokenizeParams,
};

/// The closed set of case kinds; each is also the name of its fixtures folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseKind {
    /// A GGUF file's tensor table: names, types, shapes, offsets, alignment, sizes.
    Alignment,
    /// Quantizing seeded or real tensors: packed bytes, dequantized values, dot products.
    Quantization,
    /// Per-position logits of a model over prompts.
    Logits,
    /// Perplexity over a text, chunked by context length.
    Perplexity,
    /// Exact token ids: tokenizer vectors or greedy generation.
    TokenMatch,
}

impl CaseKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [CaseKind; 5] = [
        CaseKind::Alignment,
        CaseKind::Quantization,
        CaseKind::Logits,
        CaseKind::Perplexity,
        CaseKind::TokenMatch,
    ];

    /// The kind's name, as written in YAML, folder names and trial names.
    pub fn name(self) -> &'static str {
        match self {
            CaseKind::Alignment => "alignment",
            CaseKind::Quantization => "quantization",
            CaseKind::Logits => "logits",
            CaseKind::Perplexity => "perplexity",
            CaseKind::TokenMatch => "token_match",
        }
    }

    /// The kind named `name`, if any.
    pub fn from_name(name: &str) -> Option<CaseKind> {
        CaseKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// All kind names joined for messages: "alignment, quantization, ...".
    pub fn names() -> String {
        CaseKind::ALL.map(CaseKind::name).join(", ")
    }
}

impl fmt::Display for CaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Something a case needs from the environment or from its backends before it can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// The C++ reference is built and linked.
    Reference,
    /// A CUDA device is present and the engine was built with CUDA.
    Cuda,
    /// TL1 lookup-table kernels (ARM).
    Tl1,
    /// TL2 lookup-table kernels (x86), generated for the case's shapes.
    Tl2,
    /// The host CPU has AVX2.
    Avx2,
    /// The host CPU has AVX-512 (F, BW, VL).
    Avx512,
    /// The host CPU has NEON.
    Neon,
    /// External data (large models, text corpora) is present in the data directory.
    Data,
    /// Long-running cases were asked for.
    Slow,
}

impl Capability {
    /// Every capability, in declaration order.
    pub const ALL: [Capability; 9] = [
        Capability::Reference,
        Capability::Cuda,
        Capability::Tl1,
        Capability::Tl2,
        Capability::Avx2,
        Capability::Avx512,
        Capability::Neon,
        Capability::Data,
        Capability::Slow,
    ];

    /// The capability's name, as written in `needs:`.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Reference => "reference",
            Capability::Cuda => "cuda",
            Capability::Tl1 => "tl1",
            Capability::Tl2 => "tl2",
            Capability::Avx2 => "avx2",
            Capability::Avx512 => "avx512",
            Capability::Neon => "neon",
            Capability::Data => "data",
            Capability::Slow => "slow",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a capability.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability `{0}`; known: {known}", known = Capability::ALL.map(Capability::name).join(", "))]
pub struct UnknownCapability(pub String);

impl FromStr for Capability {
    type Err = UnknownCapability;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Capability::ALL
            .into_iter()
            .find(|cap| cap.name() == s)
            .ok_or_else(|| UnknownCapability(s.to_string()))
    }
}

/// Where a case (or an override) was written: a file and the line its mapping starts on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Location {
    /// The file, as discovery found it.
    pub path: PathBuf,
    /// 1-based line of the entry's first key.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// Where a case was declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A case file under `fixtures/<kind>/`.
    CaseFile,
    /// A lane of a real model in the models file (see [`crate::models`]).
    RealModel {
        /// The model's id.
        model: String,
    },
}

/// One conformance case.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// Unique across all case files; letters, digits, `-`, `_` and `.`.
    pub id: String,
    /// Free text shown in reports.
    pub description: Option<String>,
    /// What must be available for the case to run; otherwise its trials are ignored.
    pub needs: BTreeSet<Capability>,
    /// The comparisons to run, each `candidate~reference`.
    pub backends: Vec<BackendPair>,
    /// The kind and its parameters.
    pub params: CaseParams,
    /// Where the case was written.
    pub location: Location,
    /// A case file or a real model's lane.
    pub origin: Origin,
}

/// A case's kind with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum CaseParams {
    /// See [`AlignmentParams`].
    Alignment(AlignmentParams),
    /// See [`QuantizationParams`].
    Quantization(QuantizationParams),
    /// See [`LogitsParams`].
    Logits(LogitsParams),
    /// See [`PerplexityParams`].
    Perplexity(PerplexityParams),
    /// See [`TokenMatchParams`].
    TokenMatch(TokenMatchParams),
}

impl Case {
    /// The case's kind.
    pub fn kind(&self) -> CaseKind {
        match self.params {
            CaseParams::Alignment(_) => CaseKind::Alignment,
            CaseParams::Quantization(_) => CaseKind::Quantization,
            CaseParams::Logits(_) => CaseKind::Logits,
            CaseParams::Perplexity(_) => CaseKind::Perplexity,
            CaseParams::TokenMatch(_) => CaseKind::TokenMatch,
        }
    }

    /// The quantization format under test, for quantization cases.
    pub fn format(&self) -> Option<QuantFormat> {
        match &self.params {
            CaseParams::Quantization(q) => Some(q.format),
            _ => None,
        }
    }

    /// The model file the case loads, if it loads one.
    pub fn model(&self) -> Option<&FileRef> {
        match &self.params {
            CaseParams::Alignment(p) => Some(&p.model),
            CaseParams::Quantization(p) => match &p.input {
                Input::Tensor { model, .. } => Some(model),
                _ => None,
            },
            CaseParams::Logits(p) => Some(&p.model),
            CaseParams::Perplexity(p) => Some(&p.model),
            CaseParams::TokenMatch(p) => Some(&p.model),
        }
    }

    /// Whether the case runs its model's graph (logits, perplexity, generation), so a backend
    /// must know the model's architecture; tokenizer, table and tensor cases only read the file.
    pub fn runs_model(&self) -> bool {
        match &self.params {
            CaseParams::Logits(_) | CaseParams::Perplexity(_) => true,
            CaseParams::TokenMatch(p) => p.generate.is_some(),
            CaseParams::Alignment(_) | CaseParams::Quantization(_) => false,
        }
    }

    /// The model file the case loads, to point it elsewhere.
    pub fn model_mut(&mut self) -> Option<&mut FileRef> {
        match &mut self.params {
            CaseParams::Alignment(p) => Some(&mut p.model),
            CaseParams::Quantization(p) => match &mut p.input {
                Input::Tensor { model, .. } => Some(model),
                _ => None,
            },
            CaseParams::Logits(p) => Some(&mut p.model),
            CaseParams::Perplexity(p) => Some(&mut p.model),
            CaseParams::TokenMatch(p) => Some(&mut p.model),
        }
    }

    /// The model the reference backend runs instead of [`Case::model`], if the case gives one.
    pub fn reference_model(&self) -> Option<&FileRef> {
        match &self.params {
            CaseParams::Logits(p) => p.reference_model.as_ref(),
            CaseParams::TokenMatch(p) => p.reference_model.as_ref(),
            _ => None,
        }
    }

    /// Every file the case names: its models and, for perplexity cases, the text file.
    pub fn files(&self) -> Vec<&FileRef> {
        let text = match &self.params {
            CaseParams::Perplexity(PerplexityParams {
                text: TextSource::File(file),
                ..
            }) => Some(file),
            _ => None,
        };
        self.model()
            .into_iter()
            .chain(self.reference_model())
            .chain(text)
            .collect()
    }

    /// The root of relative paths that do not name one: the data directory when the case
    /// needs `data`, the fixtures root otherwise.
    pub fn default_root(&self) -> FileRoot {
        if self.needs.contains(&Capability::Data) {
            FileRoot::Data
        } else {
            FileRoot::Fixtures
        }
    }

    /// Builds a case from its parsed header and parameters, checking the rules that span
    /// several fields. The error is a message without location.
    pub(crate) fn assemble(
        header: Header,
        params: CaseParams,
        location: Location,
    ) -> Result<Case, String> {
        check_id(&header.id)?;
        if header.backends.is_empty() {
            return Err(format!("case `{}`: `backends` is empty", header.id));
        }
        let case = Case {
            id: header.id,
            description: header.description,
            needs: header.needs,
            backends: header.backends,
            params,
            location,
            origin: Origin::CaseFile,
        };
        case.check_fields()
            .map_err(|message| format!("case `{}`: {message}", case.id))?;
        Ok(case)
    }

    fn check_fields(&self) -> Result<(), String> {
        let compares_expected = self
            .backends
            .iter()
            .any(|pair| pair.reference == BackendId::Expected);
        match &self.params {
            CaseParams::Quantization(p) => p.check()?,
            CaseParams::Logits(p) => p.check()?,
            CaseParams::Perplexity(p) => p.check()?,
            CaseParams::TokenMatch(p) => p.check()?,
            CaseParams::Alignment(_) => {}
        }
        if let Some(file) = self
            .files()
            .into_iter()
            .find(|f| f.root == Some(FileRoot::Data))
        {
            if !self.needs.contains(&Capability::Data) {
                return Err(format!(
                    "`{}` lies in the data directory (`root: data`), so the case must declare \
                     `needs: [data]`",
                    file.path.display()
                ));
            }
        }
        let has_expected = matches!(
            &self.params,
            CaseParams::TokenMatch(TokenMatchParams {
                tokenize: Some(TokenizeParams {
                    vectors: Some(_),
                    ..
                }),
                ..
            }) | CaseParams::Perplexity(PerplexityParams {
                expected_ppl: Some(_),
                ..
            })
        );
        if compares_expected && !has_expected {
            return Err(
                "the `expected` backend needs expected values: `tokenize: {vectors: ...}` or a \
                 perplexity case's `expected_ppl`"
                    .to_string(),
            );
        }
        Ok(())
    }
}

pub(crate) fn check_id(id: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if id.is_empty() || !id.chars().all(allowed) {
        return Err(format!(
            "case id `{id}` must be non-empty and use only letters, digits, `-`, `_` and `.`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_parse_by_name() {
        assert_eq!("avx512".parse::<Capability>(), Ok(Capability::Avx512));
        let err = "avx1024".parse::<Capability>().unwrap_err().to_string();
        assert!(
            err.starts_with("unknown capability `avx1024`; known: reference, cuda"),
            "{err}"
        );
        let needs: BTreeSet<Capability> = serde_yaml::from_str("[data, tl2]").unwrap();
        assert_eq!(needs.len(), 2);
    }

    #[test]
    fn kinds_name_their_folders() {
        for kind in CaseKind::ALL {
            assert_eq!(CaseKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(CaseKind::TokenMatch.to_string(), "token_match");
        assert_eq!(CaseKind::from_name("logit"), None);
    }
}
