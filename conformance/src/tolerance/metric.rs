//! Metric names, the shape of bound each takes, and bounds themselves.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::case::CaseKind;
use crate::verdict::number;

/// The comparison a metric's bound makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundShape {
    /// value ≤ bound.
    Max,
    /// value ≥ bound.
    Min,
    /// element-wise |Δ| ≤ atol + rtol·|reference|.
    Close,
    /// bit-identical.
    Exact,
}

impl BoundShape {
    pub(super) fn example(self) -> &'static str {
        match self {
            BoundShape::Max => "{max: <value>}",
            BoundShape::Min => "{min: <value>}",
            BoundShape::Close => "{rtol: <r>, atol: <a>}",
            BoundShape::Exact => "`exact`",
        }
    }
}

macro_rules! metrics {
    ($($(#[$doc:meta])* $variant:ident = $name:literal, $kind:ident, $shape:ident;)*) => {
        /// A named measurement with a bound in `tolerance.yaml`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Metric {
            $($(#[$doc])* $variant,)*
        }

        impl Metric {
            /// Every metric, grouped by kind.
            pub const ALL: &'static [Metric] = &[$(Metric::$variant,)*];

            /// The name used in `tolerance.yaml` and reports.
            pub fn name(self) -> &'static str {
                match self {
                    $(Metric::$variant => $name,)*
                }
            }

            /// The case kind this metric belongs to.
            pub fn kind(self) -> CaseKind {
                match self {
                    $(Metric::$variant => CaseKind::$kind,)*
                }
            }

            /// The comparison its bound makes.
            pub fn shape(self) -> BoundShape {
                match self {
                    $(Metric::$variant => BoundShape::$shape,)*
                }
            }
        }
    };
}

metrics! {
    /// Tensor names, types, shapes and offsets that differ from the reference's.
    TensorTable = "tensor_table", Alignment, Exact;
    /// Tensor offsets (and the data section) not on the file's alignment.
    OffsetAlignment = "offset_alignment", Alignment, Exact;
    /// Tensor byte sizes that differ from the reference's, overlap, or run past the file.
    TensorSizes = "tensor_sizes", Alignment, Exact;
    /// Packed bytes that differ.
    PackedBytes = "packed_bytes", Quantization, Exact;
    /// Dequantized values outside rtol/atol.
    Dequantized = "dequantized", Quantization, Close;
    /// Dot products (GEMV outputs) outside rtol/atol.
    Dot = "dot", Quantization, Close;
    /// The candidate's round-trip error √(Σ(x̂−x)²/Σx²).
    RoundtripRmse = "roundtrip_rmse", Quantization, Max;
    /// Largest |Δ| over all logits.
    MaxAbs = "max_abs", Logits, Max;
    /// Σ(Δ²)/Σ(reference²) over all logits.
    Nmse = "nmse", Logits, Max;
    /// Lowest per-position Pearson correlation.
    Pearson = "pearson", Logits, Min;
    /// Lowest per-position cosine similarity.
    Cosine = "cosine", Logits, Min;
    /// Mean per-position KL(reference ‖ candidate), nats.
    KlMean = "kl_mean", Logits, Max;
    /// Largest per-position KL(reference ‖ candidate), nats.
    KlMax = "kl_max", Logits, Max;
    /// Fraction of positions with the same argmax.
    Top1Agreement = "top1_agreement", Logits, Min;
    /// |PPL_candidate − PPL_reference| / PPL_reference.
    PplRelDiff = "ppl_rel_diff", Perplexity, Max;
    /// Pearson correlation of the per-token NLLs.
    NllPearson = "nll_pearson", Perplexity, Min;
    /// Fraction of tokenizer texts whose ids are identical.
    TokenizeExact = "tokenize_exact", TokenMatch, Min;
    /// Fraction of generated tokens before the first divergence.
    GenerateMatch = "generate_match", TokenMatch, Min;
}

impl Metric {
    /// The metric called `name`.
    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.iter().copied().find(|m| m.name() == name)
    }

    /// The metrics of `kind`, in declaration order.
    pub fn of_kind(kind: CaseKind) -> impl Iterator<Item = Metric> {
        Metric::ALL
            .iter()
            .copied()
            .filter(move |m| m.kind() == kind)
    }

    pub(super) fn names_of(kind: Option<CaseKind>) -> String {
        Metric::ALL
            .iter()
            .filter(|m| kind.is_none_or(|k| m.kind() == k))
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Metric {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// A bound on a metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// Passes when value ≤ the limit.
    Max(f64),
    /// Passes when value ≥ the limit.
    Min(f64),
    /// Passes when every element has |Δ| ≤ atol + rtol·|reference|.
    Close {
        /// Relative tolerance.
        rtol: f64,
        /// Absolute tolerance.
        atol: f64,
    },
    /// Passes when every element is identical.
    Exact,
}

impl Bound {
    /// The comparison this bound makes.
    pub fn shape(&self) -> BoundShape {
        match self {
            Bound::Max(_) => BoundShape::Max,
            Bound::Min(_) => BoundShape::Min,
            Bound::Close { .. } => BoundShape::Close,
            Bound::Exact => BoundShape::Exact,
        }
    }

    /// Whether `value` passes. For `Close` and `Exact` the value is the number of elements
    /// outside the bound, so only 0 passes. NaN never passes.
    pub fn admits(&self, value: f64) -> bool {
        match *self {
            Bound::Max(limit) => value <= limit,
            Bound::Min(limit) => value >= limit,
            Bound::Close { .. } | Bound::Exact => value == 0.0,
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Bound::Max(limit) => write!(f, "≤ {}", number(limit)),
            Bound::Min(limit) => write!(f, "≥ {}", number(limit)),
            Bound::Close { rtol, atol } => write!(
                f,
                "|Δ| ≤ {} + {}·|reference| per element",
                number(atol),
                number(rtol)
            ),
            Bound::Exact => f.write_str("exact"),
        }
    }
}
