//! The reference's TL2 (x86 LUT) kernels, generated at build time for a fixed set of weight
//! shapes by BitNet's `utils/codegen_tl2.py`.

use crate::backend::Backend;
use crate::bindings as sys;
use crate::convert::owned_string;
use crate::error::{check, RefError};
use crate::guard::GuardedBuf;
use crate::types::GgmlType;

use std::fmt;

/// A weight shape with TL2 kernels: `m` rows (ggml `ne[1]`) of `k` columns (`ne[0]`), in tiles
/// of `bm` rows; columns go three at a time in blocks of `bk`, the last `k % bk` two at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Tl2Shape {
    pub m: usize,
    pub k: usize,
    pub bm: usize,
    pub bk: usize,
}

impl fmt::Display for Tl2Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{} (BM {}, BK {})", self.m, self.k, self.bm, self.bk)
    }
}

/// The shapes the TL2 kernels were generated for; empty when they were not built (the reason
/// is in [`reference_info`](crate::reference_info)`().tl2`).
pub fn tl2_shapes() -> Vec<Tl2Shape> {
    // SAFETY: bnref_tl2_n_shapes takes no arguments and reads a static table.
    let n = unsafe { sys::bnref_tl2_n_shapes() };
    (0..n).filter_map(shape_at).collect()
}

fn shape_at(index: usize) -> Option<Tl2Shape> {
    let mut raw = sys::bnref_tl2_shape {
        m: 0,
        k: 0,
        bm: 0,
        bk: 0,
    };
    // SAFETY: `raw` is a valid place for one bnref_tl2_shape.
    check("bnref_tl2_shape_get", unsafe {
        sys::bnref_tl2_shape_get(index, &mut raw)
    })
    .ok()?;
    let field = |v: i64| usize::try_from(v).ok();
    Some(Tl2Shape {
        m: field(raw.m)?,
        k: field(raw.k)?,
        bm: field(raw.bm)?,
        bk: field(raw.bk)?,
    })
}

/// Bytes of an `m` × `k` TL2 tensor as ggml stores it (`ggml_nbytes`): the packed codes,
/// rounded up to a multiple of 32, then 32 bytes holding the f32 weight scale.
pub fn tl2_tensor_nbytes(m: usize, k: usize) -> Result<usize, RefError> {
    const CALL: &str = "bnref_tensor_nbytes";
    let bytes = Backend::init()?.tensor_nbytes(GgmlType::TL2, [k as u64, m as u64, 1, 1])?;
    usize::try_from(bytes)
        .map_err(|_| RefError::invalid(CALL, format!("{bytes} bytes do not fit in memory")))
}

/// The reference's TL2 matmul of the `m` × `k` weights `packed` (as [`tl2_reference_pack`]
/// returns them) with each of `tokens` rows of `x` (`tokens` × `k` floats), computed token by
/// token exactly as ggml computes one token. Returns `tokens` × `m` floats, row per token.
///
/// Fails with [`RefError::Tl2NotBuilt`] or [`RefError::Tl2ShapeNotGenerated`] when there is no
/// kernel for the shape, and with [`RefError::LengthMismatch`] when `packed` is not
/// [`tl2_tensor_nbytes`] long or `x` not `tokens` × `k`.
///
/// [`tl2_reference_pack`]: crate::tl2_reference_pack
pub fn tl2_gemm(
    packed: &[u8],
    m: usize,
    k: usize,
    x: &[f32],
    tokens: usize,
) -> Result<Vec<f32>, RefError> {
    const CALL: &str = "bnref_tl2_gemm";
    // SAFETY: bnref_tl2_available takes no arguments.
    if !unsafe { sys::bnref_tl2_available() } {
        // SAFETY: bnref_tl2_status returns a static NUL-terminated string.
        let status = unsafe { owned_string(sys::bnref_tl2_status()) };
        return Err(RefError::Tl2NotBuilt {
            call: CALL,
            reason: status
                .strip_prefix("not built: ")
                .unwrap_or(&status)
                .to_string(),
        });
    }
    let generated = tl2_shapes();
    if !generated.iter().any(|s| s.m == m && s.k == k) {
        return Err(RefError::Tl2ShapeNotGenerated {
            call: CALL,
            m,
            k,
            generated,
        });
    }
    if tokens == 0 {
        return Err(RefError::invalid(CALL, "at least one token is needed"));
    }
    let too_large = || RefError::invalid(CALL, format!("{tokens} tokens are too many"));
    let x_len = tokens.checked_mul(k).ok_or_else(too_large)?;
    let out_len = tokens.checked_mul(m).ok_or_else(too_large)?;
    expect_len(CALL, "x", x_len, x.len())?;
    expect_len(CALL, "packed", tl2_tensor_nbytes(m, k)?, packed.len())?;
    let as_i64 = |n: usize| {
        i64::try_from(n).map_err(|_| RefError::invalid(CALL, format!("{n} is too large")))
    };
    let mut out = GuardedBuf::<f32>::new(out_len);
    // SAFETY: `packed` and `x` are passed with their true lengths (checked against the shape
    // above, and again by the shim); `out` has room for out.len() floats.
    let status = unsafe {
        sys::bnref_tl2_gemm(
            packed.as_ptr().cast(),
            packed.len(),
            as_i64(m)?,
            as_i64(k)?,
            x.as_ptr(),
            tokens,
            out.as_mut_ptr(),
            out.len(),
        )
    };
    check(CALL, status)?;
    out.finish(CALL, out_len)
}

pub(crate) fn expect_len(
    call: &'static str,
    what: &'static str,
    expected: usize,
    actual: usize,
) -> Result<(), RefError> {
    if expected == actual {
        Ok(())
    } else {
        Err(RefError::LengthMismatch {
            call,
            what,
            expected,
            actual,
        })
    }
}
