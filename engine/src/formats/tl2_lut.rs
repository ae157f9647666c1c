//! TL2 activations: bitnet.cpp's per-token lookup tables for the TL2 kernels.
//!
//! Per token, `s = 127 / max |x|` (f32, no floor: an all-zero token gives `s = ∞`) and each value is
//! rounded half to even as `cvtps_epi32` does (NaN and out-of-range values become `i32::MIN`). Each
//! group of three activations of the three-weight part gets the 16 sums `a·q₀ + b·q₁ + c·q₂` for
//! `|9a + 3b + c|` = 0..=13 (14 and 15 are zero), each pair of the two-weight part the sums
//! `a·q₀ + b·q₁` for `3a + b + 4` = 0..=8 (9..=15 are zero); sums wrap in i32 and saturate to i16.
//! Tables are [`LutTable`]s.

use super::lut_table::{lut_table, LutTable};
use super::FormatError;
use crate::kernels::with_simd;

/// Tokens of TL2 lookup tables with one scale per token.
#[derive(Debug, Clone, PartialEq)]
pub struct Tl2Activations {
    three_groups: usize,
    pairs: usize,
    three: Vec<LutTable>,
    two: Vec<LutTable>,
    scales: Vec<f32>,
}

impl Tl2Activations {
    /// Builds the tables of row-major activations `k` wide for weights whose three-weight part
    /// covers the first `three_cols` columns.
    pub fn quantize(x: &[f32], k: usize, three_cols: usize) -> Result<Self, FormatError> {
        let bad_width = k == 0 || !x.len().is_multiple_of(k);
        if bad_width
            || three_cols > k
            || !three_cols.is_multiple_of(3)
            || !(k - three_cols).is_multiple_of(2)
        {
            return Err(FormatError::ActivationLength {
                format: "tl2",
                len: x.len(),
                k,
            });
        }
        let (three_groups, pairs) = (three_cols / 3, (k - three_cols) / 2);
        let tokens = x.len() / k;
        let mut three = Vec::with_capacity(tokens * three_groups);
        let mut two = Vec::with_capacity(tokens * pairs);
        let mut scales = Vec::with_capacity(tokens);
        let mut q = Vec::with_capacity(k);
        for row in x.chunks_exact(k) {
            scales.push(token_tables(row, three_cols, &mut q, &mut three, &mut two));
        }
        Ok(Tl2Activations {
            three_groups,
            pairs,
            three,
            two,
            scales,
        })
    }

    /// Number of tokens.
    pub fn tokens(&self) -> usize {
        self.scales.len()
    }

    /// Columns of the three-weight part the tables were built for.
    pub fn three_cols(&self) -> usize {
        3 * self.three_groups
    }

    /// Activation width.
    pub fn k(&self) -> usize {
        3 * self.three_groups + 2 * self.pairs
    }

    /// The three-weight tables of token `token`, one per group of three columns.
    pub fn three(&self, token: usize) -> &[LutTable] {
        &self.three[token * self.three_groups..(token + 1) * self.three_groups]
    }

    /// The pair tables of token `token`.
    pub fn two(&self, token: usize) -> &[LutTable] {
        &self.two[token * self.pairs..(token + 1) * self.pairs]
    }

    /// Per-token scales `127 / max |x|`.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }
}

with_simd! {
    /// Appends one token's tables and returns its scale; `q` is scratch for the token's codes.
    /// Plain loops, without closures, so that the FMA build (which implies SSE4.1's rounding
    /// instruction) covers every step.
    fn token_tables(
        row: &[f32],
        three_cols: usize,
        q: &mut Vec<i32>,
        three: &mut Vec<LutTable>,
        two: &mut Vec<LutTable>,
    ) -> f32 {
        let mut max = 0f32;
        for v in row {
            max = max.max(v.abs());
        }
        let scale = 127.0 / max;
        q.clear();
        for v in row {
            q.push(cvt_round(v * scale));
        }
        let (head, tail) = q.split_at(three_cols);
        for g in head.chunks_exact(3) {
            let mut entries = [0i16; 16];
            for (index, entry) in entries.iter_mut().enumerate().take(14) {
                let (a, b, c) = triple(index as i32);
                *entry = combine(&[(a, g[0]), (b, g[1]), (c, g[2])]);
            }
            three.push(lut_table(entries));
        }
        for p in tail.chunks_exact(2) {
            let mut entries = [0i16; 16];
            for (index, entry) in entries.iter_mut().enumerate().take(9) {
                let index = index as i32;
                *entry = combine(&[(index / 3 - 1, p[0]), (index % 3 - 1, p[1])]);
            }
            two.push(lut_table(entries));
        }
        scale
    }
}

/// `cvtps_epi32` of an already rounded value: NaN and values outside i32 give `i32::MIN`.
#[inline(always)]
fn cvt_round(v: f32) -> i32 {
    let r = v.round_ties_even();
    if r.is_nan() || !(-2_147_483_648.0..2_147_483_648.0).contains(&r) {
        i32::MIN
    } else {
        r as i32
    }
}

/// The codes of magnitude index `|9a + 3b + c|` (0..=13) with the sum taken non-negative.
#[inline(always)]
fn triple(index: i32) -> (i32, i32, i32) {
    let t = index + 13;
    (t / 9 - 1, (t / 3) % 3 - 1, t % 3 - 1)
}

/// Σ code · q, wrapping in i32 like the reference's vector adds, saturated to i16 like its pack.
#[inline(always)]
fn combine(terms: &[(i32, i32)]) -> i16 {
    let sum = terms.iter().fold(0i32, |acc, &(code, q)| {
        acc.wrapping_add(code.wrapping_mul(q))
    });
    sum.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::lut_entry;

    #[test]
    fn three_tables_hold_signed_sums_of_the_triple() {
        let x = [0.5f32, -1.0, 0.25, 1.0, 0.0];
        let acts = Tl2Activations::quantize(&x, 5, 3).unwrap();
        assert_eq!(acts.scales(), &[127.0]);
        let t = &acts.three(0)[0];
        // q = (64, −127, 32): 64 rounds half to even from 63.5.
        assert_eq!(lut_entry(t, 0), 0);
        assert_eq!(lut_entry(t, 13), 64 - 127 + 32);
        assert_eq!(lut_entry(t, 5), 64 + 127 - 32);
        assert_eq!(lut_entry(t, 2), -127 - 32);
        assert_eq!(lut_entry(t, 14), 0);
        let p = &acts.two(0)[0];
        // Pair (127, 0): index 3a + b + 4.
        assert_eq!(lut_entry(p, 8), 127);
        assert_eq!(lut_entry(p, 0), -127);
        assert_eq!(lut_entry(p, 4), 0);
        assert_eq!(lut_entry(p, 9), 0);
    }

    #[test]
    fn an_all_zero_token_divides_by_zero_like_the_reference() {
        let acts = Tl2Activations::quantize(&[0.0; 6], 6, 6).unwrap();
        assert_eq!(acts.scales(), &[f32::INFINITY]);
        // 0 · ∞ is NaN, which converts to i32::MIN; sums of two wrap to 0, of one or three saturate.
        let t = &acts.three(0)[0];
        assert_eq!(lut_entry(t, 9), i16::MIN);
        assert_eq!(lut_entry(t, 12), 0);
        assert_eq!(lut_entry(t, 13), i16::MIN);
    }

    #[test]
    fn widths_that_do_not_split_are_rejected() {
        assert!(Tl2Activations::quantize(&[0.0; 6], 6, 3).is_err());
        assert!(Tl2Activations::quantize(&[0.0; 6], 6, 4).is_err());
        assert!(Tl2Activations::quantize(&[0.0; 6], 6, 9).is_err());
        assert!(Tl2Activations::quantize(&[0.0; 5], 6, 6).is_err());
    }
}
