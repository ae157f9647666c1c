//! Deterministic tiny models: seeded weights written as GGUF files the reference can load.
//!
//! Master weights come from a SplitMix64 stream; ternary tensors are absmean-ternarized per tensor
//! and packed in the chosen format. Scales keep activations in a useful range, so the logits of a
//! synthetic model have a meaningful spread.

mod error;
mod lut_rules;
mod rng;
mod shapes;
mod spec;
mod vocab;
mod writer;

pub use error::SynthError;
pub use lut_rules::{tl1_tiling_rule, tl1_tilings_of, tl2_tiling_rule, tl2_tilings_of};
pub use rng::SplitMix64;
pub use spec::{Arch, SynthSpec, VocabSource, WeightFormat};
pub use vocab::{byte_level_vocab, byte_symbol, ByteLevelVocab};
pub use writer::{build_model, write_model, write_model_with_progress};
