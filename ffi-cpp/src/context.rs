//! Evaluation contexts: logits for every position and greedy generation.

use crate::bindings as sys;
use crate::convert::{str_to_cstring, tokens_from_c, tokens_to_c};
use crate::error::{check, RefError};
use crate::guard::GuardedBuf;
use crate::model::Model;

use std::ptr::{self, NonNull};
use std::thread;

/// How to create a context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextParams {
    /// Context length in tokens; 0 takes the model's training context.
    pub n_ctx: u32,
    /// Tokens per `llama_decode` call (and per micro-batch).
    pub n_batch: u32,
    pub n_threads: u32,
    /// Intermediate tensors to capture during evaluation: exact names (`"l_out-3"`) or
    /// prefixes ending in `*` (`"attn_norm-*"`). Empty installs no eval callback.
    pub capture: Vec<String>,
}

impl Default for ContextParams {
    fn default() -> Self {
        Self {
            n_ctx: 512,
            n_batch: 512,
            n_threads: thread::available_parallelism().map_or(1, |n| n.get() as u32),
            capture: Vec::new(),
        }
    }
}

/// Logits of consecutive positions, one row of `n_vocab` values each.
#[derive(Debug, Clone, PartialEq)]
pub struct Logits {
    n_vocab: usize,
    values: Vec<f32>,
}

impl Logits {
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// Number of positions.
    pub fn n_tokens(&self) -> usize {
        self.values.len().checked_div(self.n_vocab).unwrap_or(0)
    }

    /// The logits of the `position`-th evaluated token, if there is one.
    pub fn row(&self, position: usize) -> Option<&[f32]> {
        let start = position.checked_mul(self.n_vocab)?;
        self.values.get(start..start.checked_add(self.n_vocab)?)
    }

    /// All rows, position-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.values
    }

    pub fn into_vec(self) -> Vec<f32> {
        self.values
    }
}

/// An evaluation context: a KV cache over one token sequence of a [`Model`].
///
/// Several contexts may evaluate the same model concurrently, one per thread.
pub struct Context {
    handle: NonNull<sys::bnref_context>,
    model: Model,
}

// SAFETY: a llama_context has no thread affinity; it may be used from any thread as long as
// it is used from one at a time, which `&mut self` on every mutating method guarantees.
unsafe impl Send for Context {}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: the handle came from bnref_context_new and is freed once, before the model
        // (held by `self.model`) can be freed.
        unsafe { sys::bnref_context_free(self.handle.as_ptr()) }
    }
}

impl Model {
    /// Creates a context (fails for vocab-only models).
    pub fn new_context(&self, params: &ContextParams) -> Result<Context, RefError> {
        const CALL: &str = "bnref_context_new";
        if let Some(bad) = params.capture.iter().find(|p| p.contains('\n')) {
            return Err(RefError::invalid(
                CALL,
                format!("capture pattern {bad:?} contains a newline"),
            ));
        }
        let capture = str_to_cstring(CALL, &params.capture.join("\n"))?;
        let n_threads = i32::try_from(params.n_threads)
            .map_err(|_| RefError::invalid(CALL, format!("{} threads", params.n_threads)))?;
        let c_params = sys::bnref_context_params {
            n_ctx: params.n_ctx,
            n_batch: params.n_batch,
            n_threads,
            capture: capture.as_ptr(),
        };
        let mut raw = ptr::null_mut();
        // SAFETY: the model is alive, `c_params` and the capture string live across the call
        // (the shim copies the patterns) and `raw` is a valid output location.
        check(CALL, unsafe {
            sys::bnref_context_new(self.as_ptr(), &c_params, &mut raw)
        })?;
        let handle = NonNull::new(raw).ok_or_else(|| RefError::Internal {
            call: CALL,
            message: "succeeded without a handle".into(),
        })?;
        Ok(Context {
            handle,
            model: self.clone(),
        })
    }
}

impl Context {
    pub fn model(&self) -> &Model {
        &self.model
    }

    pub(crate) fn as_ptr(&mut self) -> *mut sys::bnref_context {
        self.handle.as_ptr()
    }

    /// Context length in tokens.
    pub fn n_ctx(&self) -> u32 {
        // SAFETY: the handle is alive; the call only reads it.
        unsafe { sys::bnref_context_n_ctx(self.handle.as_ptr()) }
    }

    /// Tokens in the KV cache, i.e. the position of the next token.
    pub fn n_past(&self) -> u32 {
        // SAFETY: the handle is alive; the call only reads it.
        unsafe { sys::bnref_context_n_past(self.handle.as_ptr()) }
    }

    pub fn set_threads(&mut self, n_threads: u32) -> Result<(), RefError> {
        const CALL: &str = "bnref_context_set_threads";
        let n = i32::try_from(n_threads)
            .map_err(|_| RefError::invalid(CALL, format!("{n_threads} threads")))?;
        // SAFETY: the handle is alive and exclusively borrowed.
        check(CALL, unsafe {
            sys::bnref_context_set_threads(self.as_ptr(), n)
        })
    }

    /// Empties the KV cache; the next token goes to position 0.
    pub fn reset(&mut self) {
        // SAFETY: the handle is alive and exclusively borrowed.
        unsafe { sys::bnref_context_reset(self.as_ptr()) }
    }

    /// Appends `tokens` to the sequence and returns the logits of every one of them (each
    /// position is requested as an output; attention stays causal).
    pub fn eval(&mut self, tokens: &[u32]) -> Result<Logits, RefError> {
        const CALL: &str = "bnref_context_eval";
        let c_tokens = tokens_to_c(CALL, tokens)?;
        let n_vocab = self.model.info().n_vocab as usize;
        let len = n_vocab
            .checked_mul(tokens.len())
            .ok_or_else(|| RefError::invalid(CALL, "too many logits"))?;
        let mut logits = GuardedBuf::<f32>::new(len);
        // SAFETY: the handle is alive and exclusively borrowed, `c_tokens` holds its length in
        // ids and `logits` has room for logits.len() floats.
        let status = unsafe {
            sys::bnref_context_eval(
                self.as_ptr(),
                c_tokens.as_ptr(),
                c_tokens.len(),
                logits.as_mut_ptr(),
                logits.len(),
            )
        };
        check(CALL, status)?;
        Ok(Logits {
            n_vocab,
            values: logits.finish(CALL, len)?,
        })
    }

    /// Resets the context, evaluates `prompt` and generates up to `n` tokens with the
    /// reference's greedy sampler (stopping after an end-of-generation token if `stop_at_eog`).
    pub fn generate_greedy(
        &mut self,
        prompt: &[u32],
        n: usize,
        stop_at_eog: bool,
    ) -> Result<Vec<u32>, RefError> {
        const CALL: &str = "bnref_context_generate_greedy";
        let c_prompt = tokens_to_c(CALL, prompt)?;
        let mut out = GuardedBuf::<i32>::new(n);
        let mut written = 0usize;
        // SAFETY: the handle is alive and exclusively borrowed, `c_prompt` holds its length in
        // ids and `out` has room for out.len() ids.
        let status = unsafe {
            sys::bnref_context_generate_greedy(
                self.as_ptr(),
                c_prompt.as_ptr(),
                c_prompt.len(),
                n,
                stop_at_eog,
                out.as_mut_ptr(),
                out.len(),
                &mut written,
            )
        };
        check(CALL, status)?;
        tokens_from_c(CALL, out.finish(CALL, written)?)
    }
}
