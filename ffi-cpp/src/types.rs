//! ggml tensor types as this reference numbers and sizes them.

use crate::backend::Backend;
use crate::bindings as sys;
use crate::convert::owned_string;
use crate::error::{check, RefError};

use std::fmt;
use std::mem::MaybeUninit;

/// A ggml type id in this reference's numbering (upstream ggml reuses some of these ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct GgmlType(pub u32);

impl GgmlType {
    pub const F32: Self = Self(0);
    pub const F16: Self = Self(1);
    pub const Q8_0: Self = Self(8);
    pub const Q6_K: Self = Self(14);
    pub const Q8_K: Self = Self(15);
    pub const TQ1_0: Self = Self(34);
    pub const TQ2_0: Self = Self(35);
    pub const I2_S: Self = Self(36);
    pub const I8_S: Self = Self(37);
    pub const TL1: Self = Self(38);
    pub const TL2: Self = Self(39);

    pub(crate) fn to_c(self, call: &'static str) -> Result<i32, RefError> {
        i32::try_from(self.0)
            .map_err(|_| RefError::invalid(call, format!("ggml type {} is out of range", self.0)))
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ggml type {}", self.0)
    }
}

/// The reference's description of a type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeInfo {
    pub name: String,
    /// Elements per block.
    pub block_size: u64,
    /// Bytes per block.
    pub type_size: u64,
    pub is_quantized: bool,
    /// The reference can dequantize this type.
    pub has_to_float: bool,
    /// The reference can quantize a row into this type.
    pub has_from_float: bool,
    /// The reference has a dot product for this type.
    pub has_vec_dot: bool,
    /// The activation type that dot product expects.
    pub vec_dot_type: GgmlType,
}

impl Backend {
    /// Looks a type up in the reference's type table.
    pub fn type_info(&self, ty: GgmlType) -> Result<TypeInfo, RefError> {
        const CALL: &str = "bnref_type_info_get";
        let mut out = MaybeUninit::<sys::bnref_type_info>::uninit();
        // SAFETY: `out` is a valid place for one bnref_type_info.
        check(CALL, unsafe {
            sys::bnref_type_info_get(ty.to_c(CALL)?, out.as_mut_ptr())
        })?;
        // SAFETY: on success the shim filled every field.
        let raw = unsafe { out.assume_init() };
        Ok(TypeInfo {
            // SAFETY: `name` points to a static string of the reference's type table.
            name: unsafe { owned_string(raw.name) },
            block_size: u64::try_from(raw.block_size).unwrap_or(0),
            type_size: raw.type_size,
            is_quantized: raw.is_quantized,
            has_to_float: raw.has_to_float,
            has_from_float: raw.has_from_float,
            has_vec_dot: raw.has_vec_dot,
            vec_dot_type: GgmlType(u32::try_from(raw.vec_dot_type).unwrap_or(u32::MAX)),
        })
    }

    /// Bytes a tensor of `ty` with shape `ne` (`ne[0]` innermost) occupies, computed by the
    /// reference (`ggml_nbytes`, with its I2_S rule: elements / 4 + 32).
    pub fn tensor_nbytes(&self, ty: GgmlType, ne: [u64; 4]) -> Result<u64, RefError> {
        const CALL: &str = "bnref_tensor_nbytes";
        let mut ne_c = [0i64; 4];
        for (dst, &src) in ne_c.iter_mut().zip(&ne) {
            *dst = i64::try_from(src)
                .map_err(|_| RefError::invalid(CALL, format!("dimension {src} is too large")))?;
        }
        let mut bytes = 0u64;
        // SAFETY: `ne_c` holds four dimensions and `bytes` is a valid output location.
        check(CALL, unsafe {
            sys::bnref_tensor_nbytes(ty.to_c(CALL)?, ne_c.as_ptr(), &mut bytes)
        })?;
        Ok(bytes)
    }
}
