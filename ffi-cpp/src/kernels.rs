//! The reference's quantization, dequantization and dot-product kernels.

use crate::backend::Backend;
use crate::bindings as sys;
use crate::error::{check, RefError};
use crate::guard::GuardedBuf;
use crate::types::GgmlType;

/// One row of activations as the reference quantizes them for an I2_S matmul.
#[derive(Debug, Clone, PartialEq)]
pub struct I8Activations {
    /// round(x · scale) clamped to [-128, 127].
    pub q: Vec<i8>,
    /// 127 / max|x| (max floored at 1e-5).
    pub scale: f32,
    /// Σ q, used to shift the unsigned weight codes back to {-1, 0, 1}.
    pub sum: i32,
}

/// Result of the reference's I2_S dot product.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct I2Dot {
    /// What `ggml_vec_dot_i2_i8_s` returns: Σ code·q with codes 0, 1, 2.
    pub raw: f32,
    /// The matmul's output element: (raw − Σq) / act_scale · weight_scale, in f32.
    pub scaled: f32,
}

impl Backend {
    /// Quantizes `src` (rows of `n_per_row` values) as one tensor of `ty` — I2_S, TQ1_0, TQ2_0,
    /// Q8_0 or Q6_K — with `ggml_quantize_chunk` (the file quantizers, which `llama_model_quantize`
    /// uses). I2_S bytes are zero after the scale.
    pub fn quantize(
        &self,
        ty: GgmlType,
        src: &[f32],
        n_per_row: usize,
    ) -> Result<Vec<u8>, RefError> {
        const CALL: &str = "bnref_quantize";
        if n_per_row == 0 || src.is_empty() || src.len() % n_per_row != 0 {
            return Err(RefError::invalid(
                CALL,
                format!("{} values do not form rows of {n_per_row}", src.len()),
            ));
        }
        let nrows = src.len() / n_per_row;
        let nbytes = self.tensor_nbytes(ty, [n_per_row as u64, nrows as u64, 1, 1])?;
        let mut dst = GuardedBuf::<u8>::new(to_usize(CALL, nbytes)?);
        let mut written = 0usize;
        // SAFETY: `src` holds nrows × n_per_row floats; `dst` has room for dst.len() bytes.
        let status = unsafe {
            sys::bnref_quantize(
                ty.to_c(CALL)?,
                src.as_ptr(),
                to_i64(CALL, nrows)?,
                to_i64(CALL, n_per_row)?,
                dst.as_mut_ptr().cast(),
                dst.len(),
                &mut written,
            )
        };
        check(CALL, status)?;
        dst.finish(CALL, written)
    }

    /// Quantizes one row with the `from_float` function of `ty` (e.g. Q8_K activations).
    pub fn quantize_row(&self, ty: GgmlType, src: &[f32]) -> Result<Vec<u8>, RefError> {
        const CALL: &str = "bnref_quantize_row";
        let nbytes = self.row_bytes(CALL, ty, src.len())?;
        let mut dst = GuardedBuf::<u8>::new(nbytes);
        // SAFETY: `src` holds src.len() floats; `dst` has room for dst.len() bytes.
        let status = unsafe {
            sys::bnref_quantize_row(
                ty.to_c(CALL)?,
                src.as_ptr(),
                to_i64(CALL, src.len())?,
                dst.as_mut_ptr().cast(),
                dst.len(),
            )
        };
        check(CALL, status)?;
        dst.finish(CALL, nbytes)
    }

    /// Dequantizes `n` elements of `ty` from `src` with the reference's `to_float`.
    pub fn dequantize(&self, ty: GgmlType, src: &[u8], n: usize) -> Result<Vec<f32>, RefError> {
        const CALL: &str = "bnref_dequantize";
        let mut dst = GuardedBuf::<f32>::new(n);
        // SAFETY: `src` is readable for src.len() bytes; `dst` has room for n floats.
        let status = unsafe {
            sys::bnref_dequantize(
                ty.to_c(CALL)?,
                src.as_ptr().cast(),
                src.len(),
                to_i64(CALL, n)?,
                dst.as_mut_ptr(),
                dst.len(),
            )
        };
        check(CALL, status)?;
        dst.finish(CALL, n)
    }

    /// The per-row int8 quantization applied to activations before an I2_S matmul.
    pub fn quantize_i8_s(&self, x: &[f32]) -> Result<I8Activations, RefError> {
        const CALL: &str = "bnref_quantize_i8_s";
        let mut q = GuardedBuf::<i8>::new(x.len());
        let mut scale = 0f32;
        let mut sum = 0i32;
        // SAFETY: `x` holds x.len() floats, `q` has room for as many bytes, and the scalars
        // are valid output locations.
        let status = unsafe {
            sys::bnref_quantize_i8_s(
                x.as_ptr(),
                to_i64(CALL, x.len())?,
                q.as_mut_ptr(),
                q.len(),
                &mut scale,
                &mut sum,
            )
        };
        check(CALL, status)?;
        Ok(I8Activations {
            q: q.finish(CALL, x.len())?,
            scale,
            sum,
        })
    }

    /// `ggml_vec_dot_i2_i8_s` over one packed I2_S row (`weights`, n/4 bytes) and quantized
    /// activations of n = `acts.q.len()` values (a multiple of 128).
    pub fn vec_dot_i2_i8_s(
        &self,
        weights: &[u8],
        acts: &I8Activations,
        weight_scale: f32,
    ) -> Result<I2Dot, RefError> {
        const CALL: &str = "bnref_vec_dot_i2_i8_s";
        let mut raw = 0f32;
        let mut scaled = 0f32;
        // SAFETY: both inputs are passed with their true lengths and the outputs are valid.
        let status = unsafe {
            sys::bnref_vec_dot_i2_i8_s(
                to_i64(CALL, acts.q.len())?,
                weights.as_ptr().cast(),
                weights.len(),
                acts.q.as_ptr(),
                acts.q.len(),
                acts.sum,
                acts.scale,
                weight_scale,
                &mut raw,
                &mut scaled,
            )
        };
        check(CALL, status)?;
        Ok(I2Dot { raw, scaled })
    }

    /// The reference's I2_S matmul for one token: `out[r]` for each of the `rows` packed rows of
    /// `weights` (each `acts.q.len() / 4` bytes), single-threaded.
    pub fn gemv_i2_i8_s(
        &self,
        weights: &[u8],
        rows: usize,
        acts: &I8Activations,
        weight_scale: f32,
        out: &mut [f32],
    ) -> Result<(), RefError> {
        const CALL: &str = "bnref_gemv_i2_i8_s";
        // SAFETY: every buffer is passed with its true length, which the shim checks.
        let status = unsafe {
            sys::bnref_gemv_i2_i8_s(
                to_i64(CALL, rows)?,
                to_i64(CALL, acts.q.len())?,
                weights.as_ptr().cast(),
                weights.len(),
                acts.q.as_ptr(),
                acts.q.len(),
                acts.sum,
                acts.scale,
                weight_scale,
                out.as_mut_ptr(),
                out.len(),
            )
        };
        check(CALL, status)
    }

    /// The reference's dot product of `n` elements: `x` in `ty`, `y` in its `vec_dot_type`
    /// (for TQ1_0 / TQ2_0 that is Q8_K from [`Backend::quantize_row`]).
    pub fn vec_dot(&self, ty: GgmlType, n: usize, x: &[u8], y: &[u8]) -> Result<f32, RefError> {
        const CALL: &str = "bnref_vec_dot";
        let mut out = 0f32;
        // SAFETY: both inputs are passed with their true lengths and `out` is valid.
        let status = unsafe {
            sys::bnref_vec_dot(
                ty.to_c(CALL)?,
                to_i64(CALL, n)?,
                x.as_ptr().cast(),
                x.len(),
                y.as_ptr().cast(),
                y.len(),
                &mut out,
            )
        };
        check(CALL, status)?;
        Ok(out)
    }

    fn row_bytes(&self, call: &'static str, ty: GgmlType, n: usize) -> Result<usize, RefError> {
        let info = self.type_info(ty)?;
        let n = n as u64;
        if info.block_size == 0 || n == 0 || n % info.block_size != 0 {
            return Err(RefError::invalid(
                call,
                format!(
                    "{n} elements are not whole {} blocks of {}",
                    info.name, info.block_size
                ),
            ));
        }
        to_usize(call, n / info.block_size * info.type_size)
    }
}

fn to_i64(call: &'static str, n: usize) -> Result<i64, RefError> {
    i64::try_from(n).map_err(|_| RefError::invalid(call, format!("{n} is too large")))
}

fn to_usize(call: &'static str, n: u64) -> Result<usize, RefError> {
    usize::try_from(n)
        .map_err(|_| RefError::invalid(call, format!("{n} bytes do not fit in memory")))
}
