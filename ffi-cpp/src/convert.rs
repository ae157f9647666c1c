//! Conversions between Rust values and what the C interface takes.

use crate::error::RefError;

use std::ffi::{c_char, CStr, CString};
use std::path::Path;

/// A path as a C string; paths with interior NUL bytes (or non-UTF-8 ones off Unix) are refused.
pub(crate) fn path_to_cstring(call: &'static str, path: &Path) -> Result<CString, RefError> {
    #[cfg(unix)]
    let bytes = {
        use std::os::unix::ffi::OsStrExt;
        path.as_os_str().as_bytes().to_vec()
    };
    #[cfg(not(unix))]
    let bytes = path
        .to_str()
        .ok_or_else(|| RefError::invalid(call, format!("{} is not valid UTF-8", path.display())))?
        .as_bytes()
        .to_vec();
    CString::new(bytes)
        .map_err(|_| RefError::invalid(call, format!("{} contains a NUL byte", path.display())))
}

pub(crate) fn str_to_cstring(call: &'static str, text: &str) -> Result<CString, RefError> {
    CString::new(text).map_err(|_| RefError::invalid(call, format!("{text:?} contains a NUL byte")))
}

/// Copies a C string owned by the reference; NULL becomes an empty string.
///
/// # Safety
/// `ptr` must be NULL or point to a NUL-terminated string that stays valid during the call.
pub(crate) unsafe fn owned_string(ptr: *const c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: the caller guarantees a valid NUL-terminated string.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

/// Token ids as the reference's `int32_t`.
pub(crate) fn tokens_to_c(call: &'static str, tokens: &[u32]) -> Result<Vec<i32>, RefError> {
    tokens
        .iter()
        .map(|&t| {
            i32::try_from(t)
                .map_err(|_| RefError::invalid(call, format!("token {t} is out of range")))
        })
        .collect()
}

/// Token ids from the reference, which are never negative once written.
pub(crate) fn tokens_from_c(call: &'static str, tokens: Vec<i32>) -> Result<Vec<u32>, RefError> {
    tokens
        .into_iter()
        .map(|t| {
            u32::try_from(t).map_err(|_| RefError::Internal {
                call,
                message: format!("the reference produced token id {t}"),
            })
        })
        .collect()
}
