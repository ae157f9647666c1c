//! Errors of the model generator.

use crate::formats::FormatError;
use crate::gguf::GgufError;

/// Why a synthetic model could not be built or written.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// The specification is inconsistent.
    #[error("invalid synthetic model spec: {0}")]
    Spec(String),
    /// Reading the vocabulary file or writing the model failed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A tensor does not fit its weight format.
    #[error("tensor `{tensor}`: {source}")]
    Format {
        /// The tensor's name.
        tensor: String,
        /// The format's complaint.
        source: FormatError,
    },
}
