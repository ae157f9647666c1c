//! TL1 activations: bitnet.cpp's per-token lookup tables for the TL1 kernels.
//!
//! Per token, `s = 127 / max |x|` (f32, no floor: an all-zero token gives `s = ∞`) and each value is
//! rounded half to even and converted as NEON's `vcvtnq_s32_f32` does (NaN becomes 0, values beyond
//! i32 saturate), then narrowed to i16 keeping the low 16 bits (`vmovn_s32`). Each pair of
//! activations gets the sums `a·q₀ + b·q₁` for `3a + b + 4` = 0..=8, in wrapping i16 arithmetic;
//! entries 9..=15 are zero (the reference leaves them unset, and valid weights never index them).

use super::lut_table::{lut_table, LutTable};
use super::FormatError;

/// Tokens of TL1 lookup tables, one table per pair of columns, with one scale per token.
#[derive(Debug, Clone, PartialEq)]
pub struct Tl1Activations {
    pairs: usize,
    tables: Vec<LutTable>,
    scales: Vec<f32>,
}

impl Tl1Activations {
    /// Builds the tables of row-major activations `k` wide (`k` even).
    pub fn quantize(x: &[f32], k: usize) -> Result<Self, FormatError> {
        if k == 0 || !k.is_multiple_of(2) || !x.len().is_multiple_of(k) {
            return Err(FormatError::ActivationLength {
                format: "tl1",
                len: x.len(),
                k,
            });
        }
        let tokens = x.len() / k;
        let mut tables = Vec::with_capacity(tokens * k / 2);
        let mut scales = Vec::with_capacity(tokens);
        for row in x.chunks_exact(k) {
            let max = row.iter().fold(0f32, |max, v| max.max(v.abs()));
            let scale = 127.0 / max;
            for pair in row.chunks_exact(2) {
                let (q0, q1) = (narrow(pair[0] * scale), narrow(pair[1] * scale));
                let mut entries = [0i16; 16];
                for (index, entry) in entries.iter_mut().enumerate().take(9) {
                    let (a, b) = (index as i16 / 3 - 1, index as i16 % 3 - 1);
                    *entry = a.wrapping_mul(q0).wrapping_add(b.wrapping_mul(q1));
                }
                tables.push(lut_table(entries));
            }
            scales.push(scale);
        }
        Ok(Tl1Activations {
            pairs: k / 2,
            tables,
            scales,
        })
    }

    /// Number of tokens.
    pub fn tokens(&self) -> usize {
        self.scales.len()
    }

    /// Activation width.
    pub fn k(&self) -> usize {
        2 * self.pairs
    }

    /// The tables of token `token`, one per pair of columns.
    pub fn tables(&self, token: usize) -> &[LutTable] {
        &self.tables[token * self.pairs..(token + 1) * self.pairs]
    }

    /// Per-token scales `127 / max |x|`.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }
}

/// `vcvtnq_s32_f32` then `vmovn_s32`: round half to even, NaN to 0, saturate to i32, keep the low
/// 16 bits.
#[inline]
fn narrow(v: f32) -> i16 {
    v.round_ties_even() as i32 as i16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::lut_entry;

    #[test]
    fn pair_tables_hold_signed_sums() {
        let x = [0.5f32, -1.0, 0.25, 1.0];
        let acts = Tl1Activations::quantize(&x, 4).unwrap();
        assert_eq!(acts.scales(), &[127.0]);
        // q = (64, −127, 32, 127): 64 rounds half to even from 63.5.
        let t = &acts.tables(0)[0];
        assert_eq!(lut_entry(t, 0), -64 + 127);
        assert_eq!(lut_entry(t, 4), 0);
        assert_eq!(lut_entry(t, 5), -127);
        assert_eq!(lut_entry(t, 7), 64);
        assert_eq!(lut_entry(t, 8), 64 - 127);
        assert_eq!(lut_entry(t, 9), 0);
        assert_eq!(lut_entry(&acts.tables(0)[1], 2), -32 + 127);
    }

    #[test]
    fn an_all_zero_token_gives_zero_tables_and_an_infinite_scale() {
        let acts = Tl1Activations::quantize(&[0.0; 4], 4).unwrap();
        assert_eq!(acts.scales(), &[f32::INFINITY]);
        // 0 · ∞ is NaN, which converts to 0.
        assert!(acts.tables(0).iter().all(|t| t.iter().all(|&b| b == 0)));
    }

    #[test]
    fn odd_or_ragged_widths_are_rejected() {
        assert!(Tl1Activations::quantize(&[0.0; 6], 3).is_err());
        assert!(Tl1Activations::quantize(&[0.0; 6], 4).is_err());
        assert!(Tl1Activations::quantize(&[], 0).is_err());
    }
}
