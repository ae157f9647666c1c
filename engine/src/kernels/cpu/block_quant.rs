//! Products with ggml block-quantized weights (Q8_0, Q6_K) for embeddings and output heads.

use super::CpuKernels;
use crate::formats::{Q6KMatrix, Q8_0Activations, Q8_0Matrix, Q8kActivations};
use crate::kernels::block_dots::{q6k_dot_ref, q8_0_dot_ref};
use crate::kernels::error::{expect_len, KernelError};

impl CpuKernels {
    /// Q8_0 × Q8_0 for every token of `x`, as the reference's `mul_mat` computes it on x86
    /// (`ggml_vec_dot_q8_0_q8_0` for one token, tinyBLAS for more, both [`q8_0_dot_ref`]).
    pub fn q8_0_gemm(
        &self,
        w: &Q8_0Matrix,
        x: &Q8_0Activations,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        let shape = w.shape();
        expect_len("q8_0 activation width", shape.ne0, x.k())?;
        expect_len("q8_0 output length", shape.ne1 * x.tokens(), out.len())?;
        self.for_each_output(shape.ne1, x.tokens(), out, |row, token| {
            q8_0_dot_ref(w.row(row), x.token_blocks(token))
        });
        Ok(())
    }

    /// Q6_K × Q8_K for every token of `x`, as `ggml_vec_dot_q6_K_q8_K` (AVX2 order,
    /// [`q6k_dot_ref`]) computes each output.
    pub fn q6k_gemm(
        &self,
        w: &Q6KMatrix,
        x: &Q8kActivations,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        let shape = w.shape();
        expect_len("q6_K activation width", shape.ne0, x.k())?;
        expect_len("q6_K output length", shape.ne1 * x.tokens(), out.len())?;
        self.for_each_output(shape.ne1, x.tokens(), out, |row, token| {
            q6k_dot_ref(w.row(row), x.token_blocks(token))
        });
        Ok(())
    }
}
