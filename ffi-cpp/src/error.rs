//! The one error type of this crate, and the one place where C status codes become errors.

use crate::bindings as sys;
use crate::tl2::Tl2Shape;

use std::ffi::CStr;

/// A failure reported by the reference or detected at its boundary. `call` names the shim
/// function (or safe-layer operation) that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error("{call}: invalid argument: {message}")]
    InvalidArgument { call: &'static str, message: String },
    #[error("{call}: not supported by the reference: {message}")]
    Unsupported { call: &'static str, message: String },
    #[error("{call}: I/O error: {message}")]
    Io { call: &'static str, message: String },
    #[error("{call}: not a GGUF file the reference can read: {message}")]
    Format { call: &'static str, message: String },
    #[error("{call}: the reference failed: {message}")]
    Reference { call: &'static str, message: String },
    #[error("{call}: output buffer too small: {message}")]
    BufferTooSmall { call: &'static str, message: String },
    #[error("{call}: internal error: {message}")]
    Internal { call: &'static str, message: String },
    #[error("{call}: wrote past the end of its {len}-element output buffer")]
    BufferOverrun { call: &'static str, len: usize },
    #[error("{call}: the TL2 kernels were not built: {reason}")]
    Tl2NotBuilt { call: &'static str, reason: String },
    #[error(
        "{call}: no TL2 kernel was generated for {m}x{k}; generated: {}",
        shape_list(.generated)
    )]
    Tl2ShapeNotGenerated {
        call: &'static str,
        m: usize,
        k: usize,
        generated: Vec<Tl2Shape>,
    },
    #[error("{call}: {what} has {actual} elements, expected {expected}")]
    LengthMismatch {
        call: &'static str,
        what: &'static str,
        expected: usize,
        actual: usize,
    },
    #[error("{call}: Python cannot run the reference's converter code: {message}")]
    PythonUnavailable { call: &'static str, message: String },
    #[error("{call}: unknown status {status}: {message}")]
    UnknownStatus {
        call: &'static str,
        status: u32,
        message: String,
    },
}

impl RefError {
    /// An invalid argument caught on the Rust side, before calling the reference.
    pub(crate) fn invalid(call: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            call,
            message: message.into(),
        }
    }
}

fn shape_list(shapes: &[Tl2Shape]) -> String {
    if shapes.is_empty() {
        return "none".into();
    }
    shapes
        .iter()
        .map(Tl2Shape::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Turns the status of shim function `call` into a result, reading its message on failure.
pub(crate) fn check(call: &'static str, status: sys::bnref_status) -> Result<(), RefError> {
    if status == sys::BNREF_OK {
        return Ok(());
    }
    let message = last_error();
    Err(match status {
        sys::BNREF_ERR_INVALID_ARGUMENT => RefError::InvalidArgument { call, message },
        sys::BNREF_ERR_UNSUPPORTED => RefError::Unsupported { call, message },
        sys::BNREF_ERR_IO => RefError::Io { call, message },
        sys::BNREF_ERR_FORMAT => RefError::Format { call, message },
        sys::BNREF_ERR_REFERENCE => RefError::Reference { call, message },
        sys::BNREF_ERR_BUFFER_TOO_SMALL => RefError::BufferTooSmall { call, message },
        sys::BNREF_ERR_INTERNAL => RefError::Internal { call, message },
        status => RefError::UnknownStatus {
            call,
            status,
            message,
        },
    })
}

fn last_error() -> String {
    // SAFETY: bnref_last_error returns a NUL-terminated string owned by the calling thread,
    // valid until that thread's next shim call; it is copied before any other call.
    unsafe { CStr::from_ptr(sys::bnref_last_error()) }
        .to_string_lossy()
        .into_owned()
}
