//! Perplexity with the reference tool's protocol.

use crate::bindings as sys;
use crate::context::Context;
use crate::convert::tokens_to_c;
use crate::error::{check, RefError};
use crate::guard::GuardedBuf;

use std::mem::MaybeUninit;

/// Result of [`Context::perplexity`].
#[derive(Debug, Clone, PartialEq)]
pub struct Perplexity {
    /// exp(mean NLL).
    pub ppl: f64,
    /// One standard error of `ppl`, as llama-perplexity prints it.
    pub ppl_err: f64,
    pub n_chunks: usize,
    /// Negative log-likelihood of every scored token, chunk by chunk.
    pub nll: Vec<f64>,
}

impl Context {
    /// Perplexity of `tokens` as llama-perplexity computes it: tokenize the text with
    /// `add_special` (see [`crate::Model::tokenize`]), cut it into chunks of `n_ctx` tokens,
    /// replace each chunk's first token by BOS when the model adds one, and score positions
    /// n_ctx/2 .. n_ctx−2 predicting their next token. Needs at least 2·n_ctx tokens;
    /// `max_chunks` limits the chunks evaluated. Chunks are evaluated one sequence at a time
    /// and the context is reset afterwards.
    pub fn perplexity(
        &mut self,
        tokens: &[u32],
        max_chunks: Option<usize>,
    ) -> Result<Perplexity, RefError> {
        const CALL: &str = "bnref_context_perplexity";
        let c_tokens = tokens_to_c(CALL, tokens)?;
        let n_ctx = self.n_ctx() as usize;
        let available = tokens.len().checked_div(n_ctx).unwrap_or(0);
        let n_chunks = max_chunks.map_or(available, |m| m.min(available));
        let per_chunk = n_ctx.saturating_sub(1 + n_ctx / 2);
        let capacity = n_chunks * per_chunk;
        let max_chunks = match max_chunks {
            Some(m) => {
                i64::try_from(m).map_err(|_| RefError::invalid(CALL, format!("{m} chunks")))?
            }
            None => -1,
        };
        let mut nll = GuardedBuf::<f64>::new(capacity);
        let mut out = MaybeUninit::<sys::bnref_perplexity_result>::uninit();
        // SAFETY: the handle is alive and exclusively borrowed, `c_tokens` holds its length in
        // ids, `nll` has room for nll.len() values and `out` is a valid result location.
        let status = unsafe {
            sys::bnref_context_perplexity(
                self.as_ptr(),
                c_tokens.as_ptr(),
                c_tokens.len(),
                max_chunks,
                nll.as_mut_ptr(),
                nll.len(),
                out.as_mut_ptr(),
            )
        };
        check(CALL, status)?;
        // SAFETY: on success the shim filled every field.
        let out = unsafe { out.assume_init() };
        Ok(Perplexity {
            ppl: out.ppl,
            ppl_err: out.ppl_err,
            n_chunks: out.n_chunks,
            nll: nll.finish(CALL, out.n_scored)?,
        })
    }
}
