//! Activation quantization: I8_S (per-token int8 for I2_S) and Q8_K (per-256 blocks for TQ1_0/TQ2_0).

use super::{FormatError, FpContract};
use crate::kernels::with_simd;

/// Values per Q8_K block (ggml's `QK_K`).
pub const QK_K: usize = 256;

/// Tokens of int8 activations with one scale and one code sum per token, as bitnet.cpp's
/// `quantize_row_i8_s` produces them for the I2_S matmul.
#[derive(Debug, Clone, PartialEq)]
pub struct I8sActivations {
    k: usize,
    codes: Vec<i8>,
    scales: Vec<f32>,
    sums: Vec<i32>,
}

/// Quantizes the tokens of a chunk of I8_S codes: `(first_token, codes)` → each token's scale
/// and code sum.
pub type RowQuantizer<'a> = dyn Fn(usize, &mut [i8]) -> Vec<(f32, i32)> + Sync + 'a;

impl I8sActivations {
    /// Quantizes row-major f32 activations, `k` values per token.
    ///
    /// Per token: `amax = max(1e-5, max |x|)` in f64, `s = (127 / amax) as f32`,
    /// `q = clamp(nearest_int(x · s), −128, 127)`, and the sum of the codes in i32.
    pub fn quantize(x: &[f32], k: usize, contract: FpContract) -> Result<Self, FormatError> {
        Self::quantize_split(x, k, contract, |codes, quantize| vec![quantize(0, codes)])
    }

    /// [`I8sActivations::quantize`] with the tokens handed out by `split`: it calls
    /// `quantize(first_token, codes)` on chunks of whole tokens of the code buffer (in parallel,
    /// say), which returns each token's scale and code sum, and returns those in token order.
    pub fn quantize_split<S>(
        x: &[f32],
        k: usize,
        contract: FpContract,
        split: S,
    ) -> Result<Self, FormatError>
    where
        S: FnOnce(&mut [i8], &RowQuantizer<'_>) -> Vec<Vec<(f32, i32)>>,
    {
        if k == 0 || !x.len().is_multiple_of(k) {
            return Err(FormatError::ActivationLength {
                format: "i8_s",
                len: x.len(),
                k,
            });
        }
        let mut codes = vec![0i8; x.len()];
        let quantize = |first: usize, chunk: &mut [i8]| {
            let rows = &x[first * k..first * k + chunk.len()];
            rows.chunks_exact(k)
                .zip(chunk.chunks_exact_mut(k))
                .map(|(row, out)| quantize_row_i8_s(row, out, contract))
                .collect()
        };
        let (scales, sums) = split(&mut codes, &quantize).into_iter().flatten().unzip();
        Self::from_parts(k, codes, scales, sums)
    }

    /// Builds activations from parts (codes row-major, one scale and one sum per token).
    pub fn from_parts(
        k: usize,
        codes: Vec<i8>,
        scales: Vec<f32>,
        sums: Vec<i32>,
    ) -> Result<Self, FormatError> {
        if k == 0
            || !codes.len().is_multiple_of(k)
            || codes.len() / k != scales.len()
            || scales.len() != sums.len()
        {
            return Err(FormatError::ActivationLength {
                format: "i8_s",
                len: codes.len(),
                k,
            });
        }
        Ok(I8sActivations {
            k,
            codes,
            scales,
            sums,
        })
    }

    /// Values per token.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of tokens.
    pub fn tokens(&self) -> usize {
        self.scales.len()
    }

    /// All codes, row-major.
    pub fn codes(&self) -> &[i8] {
        &self.codes
    }

    /// The codes of one token.
    pub fn token_codes(&self, token: usize) -> &[i8] {
        &self.codes[token * self.k..(token + 1) * self.k]
    }

    /// The per-token scales `127 / amax`.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// The per-token sums of the codes.
    pub fn sums(&self) -> &[i32] {
        &self.sums
    }
}

with_simd! {
    /// Quantizes one token; returns its scale and code sum.
    fn quantize_row_i8_s(x: &[f32], out: &mut [i8], contract: FpContract) -> (f32, i32) {
        let amax = row_amax(x);
        let scale = (127.0 / amax) as f32;
        let mut sum = 0i32;
        for (q, &v) in out.iter_mut().zip(x) {
            let rounded = contract.nearest_int_of_product(v, scale).clamp(-128, 127);
            sum = sum.wrapping_add(rounded);
            *q = rounded as i8;
        }
        (scale, sum)
    }
}

/// The reference's `max(1e-5, |x|…)` in f64, its MAX macro keeping the left operand only when it
/// is strictly larger, so that a NaN replaces the running maximum.
fn row_amax(x: &[f32]) -> f64 {
    // Without NaN, the order does not matter and the largest magnitude has the largest
    // sign-cleared bits, a reduction that vectorizes.
    let bits = x
        .iter()
        .map(|v| v.to_bits() & 0x7fff_ffff)
        .max()
        .unwrap_or(0);
    if bits <= f32::INFINITY.to_bits() {
        let a = f64::from(f32::from_bits(bits));
        return if 1e-5 > a { 1e-5 } else { a };
    }
    amax_in_order(x)
}

/// [`row_amax`] one element at a time, as the reference's loop runs.
fn amax_in_order(x: &[f32]) -> f64 {
    x.iter().fold(1e-5f64, |max, &v| {
        let a = f64::from(v).abs();
        if max > a {
            max
        } else {
            a
        }
    })
}

/// One Q8_K block: `d`, 256 int8 codes and the sums of each 16 codes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8K {
    /// The block scale: value ≈ `d · qs[i]`.
    pub d: f32,
    /// The codes.
    pub qs: [i8; QK_K],
    /// Sums of `qs` over each group of 16.
    pub bsums: [i16; QK_K / 16],
}

impl BlockQ8K {
    /// Quantizes 256 values as `quantize_row_q8_K_ref` does: the signed value of largest magnitude
    /// `max` gives `iscale = −127 / max`, `qs = min(127, nearest_int(iscale · x))`, `d = 1 / iscale`.
    /// An all-zero block gets `d = 0` and zero codes (the reference leaves its `bsums` unset; they
    /// are zero here and only ever multiplied by `d = 0`).
    pub fn quantize(x: &[f32; QK_K], contract: FpContract) -> Self {
        quantize_block_q8k(x, contract)
    }
}

with_simd! {
    /// [`BlockQ8K::quantize`].
    fn quantize_block_q8k(x: &[f32; QK_K], contract: FpContract) -> BlockQ8K {
        let mut amax = 0f32;
        let mut max = 0f32;
        for &v in x {
            let a = v.abs();
            if a > amax {
                amax = a;
                max = v;
            }
        }
        let mut block = BlockQ8K {
            d: 0.0,
            qs: [0; QK_K],
            bsums: [0; QK_K / 16],
        };
        if amax == 0.0 {
            return block;
        }
        let iscale = -127.0 / max;
        for (q, &v) in block.qs.iter_mut().zip(x) {
            *q = contract.nearest_int_of_product(iscale, v).min(127) as i8;
        }
        for (sum, group) in block.bsums.iter_mut().zip(block.qs.chunks_exact(16)) {
            *sum = group.iter().map(|&q| i16::from(q)).sum();
        }
        block.d = 1.0 / iscale;
        block
    }
}

/// Tokens of Q8_K activations: `k / 256` blocks per token.
#[derive(Debug, Clone, PartialEq)]
pub struct Q8kActivations {
    k: usize,
    blocks: Vec<BlockQ8K>,
}

impl Q8kActivations {
    /// Quantizes row-major f32 activations, `k` values per token (`k` a multiple of 256).
    pub fn quantize(x: &[f32], k: usize, contract: FpContract) -> Result<Self, FormatError> {
        if k == 0 || !k.is_multiple_of(QK_K) || !x.len().is_multiple_of(k) {
            return Err(FormatError::ActivationLength {
                format: "q8_K",
                len: x.len(),
                k,
            });
        }
        let (chunks, _) = x.as_chunks::<QK_K>();
        let blocks = chunks
            .iter()
            .map(|chunk| BlockQ8K::quantize(chunk, contract))
            .collect();
        Ok(Q8kActivations { k, blocks })
    }

    /// Builds activations from blocks, `k / 256` per token.
    pub fn from_blocks(k: usize, blocks: Vec<BlockQ8K>) -> Result<Self, FormatError> {
        if k == 0 || !k.is_multiple_of(QK_K) || !blocks.len().is_multiple_of(k / QK_K) {
            return Err(FormatError::ActivationLength {
                format: "q8_K",
                len: blocks.len() * QK_K,
                k,
            });
        }
        Ok(Q8kActivations { k, blocks })
    }

    /// Values per token.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of tokens.
    pub fn tokens(&self) -> usize {
        self.blocks.len() / (self.k / QK_K)
    }

    /// All blocks, token-major.
    pub fn blocks(&self) -> &[BlockQ8K] {
        &self.blocks
    }

    /// The blocks of one token.
    pub fn token_blocks(&self, token: usize) -> &[BlockQ8K] {
        let per_token = self.k / QK_K;
        &self.blocks[token * per_token..(token + 1) * per_token]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_amax_matches_the_reference_loop_with_nan_infinity_and_tiny_rows() {
        let rows: [&[f32]; 8] = [
            &[],
            &[0.0, -0.0],
            &[1e-7, -2e-6],
            &[0.5, -3.25, 2.0],
            &[1.0, f32::NEG_INFINITY, 2.0],
            &[1.0, f32::NAN, 0.25],
            &[4.0, 1.0, f32::NAN],
            &[f32::NAN, -8.0, f32::INFINITY, f32::NAN, 3.0],
        ];
        for row in rows {
            assert_eq!(
                row_amax(row).to_bits(),
                amax_in_order(row).to_bits(),
                "{row:?}"
            );
        }
    }
}
