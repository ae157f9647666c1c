//! Errors of the CPU kernels.

use super::Isa;
use crate::formats::FormatError;

/// Why a kernel call was refused.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The requested ISA is not available on this CPU (or this architecture).
    #[error("ISA {isa} is not supported by this CPU")]
    IsaUnsupported {
        /// The ISA asked for.
        isa: Isa,
    },
    /// A name that is not an ISA of the kernels.
    #[error("unknown instruction set `{name}` (expected one of {known})")]
    UnknownIsa {
        /// The name given.
        name: String,
        /// The names the kernels know.
        known: String,
    },
    /// The thread pool could not be built.
    #[error("cannot build a thread pool of {threads} threads: {reason}")]
    ThreadPool {
        /// Threads asked for.
        threads: usize,
        /// Why a thread could not be started.
        reason: String,
    },
    /// Two operands disagree on a length.
    #[error("{what}: expected {expected}, got {actual}")]
    Mismatch {
        /// Which length.
        what: &'static str,
        /// The length the other operands imply.
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// A weight or activation buffer does not fit its format.
    #[error(transparent)]
    Format(#[from] FormatError),
}

/// `Ok` when `actual == expected`, else a [`KernelError::Mismatch`].
pub(crate) fn expect_len(
    what: &'static str,
    expected: usize,
    actual: usize,
) -> Result<(), KernelError> {
    if expected == actual {
        Ok(())
    } else {
        Err(KernelError::Mismatch {
            what,
            expected,
            actual,
        })
    }
}
