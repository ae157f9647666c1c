//! Evaluation state: a KV cache over one model, batched evaluation and greedy generation.

use super::attention::KvCache;
use super::linear::Linear;
use super::ops::{add_assign, relu_sqr_mul, rms_norm, rope, rope_angles, silu_mul};
use super::{Model, ModelError, PickRequest, Picked};
use crate::cuda::{CudaModel, CudaSession};
use crate::kernels::{prefetch_all, with_simd, CpuKernels};
use crate::synth::Arch;

/// Logits of consecutive positions, `n_vocab` values each.
#[derive(Debug, Clone, PartialEq)]
pub struct Logits {
    n_vocab: usize,
    values: Vec<f32>,
}

impl Logits {
    /// The vocabulary size.
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.values.len() / self.n_vocab
    }

    /// Row `i`, if present.
    pub fn row(&self, i: usize) -> Option<&[f32]> {
        self.values.get(i * self.n_vocab..(i + 1) * self.n_vocab)
    }

    /// All rows, concatenated.
    pub fn as_slice(&self) -> &[f32] {
        &self.values
    }
}

/// One intermediate tensor of an evaluation, handed to the tracer of [`Session::eval_traced`].
///
/// Names follow the reference's graph (`attn_norm`, `Qcur`, `Kcur`, `Vcur`, `kqv_out`,
/// `attn_sub_norm`, `attn_o_out`, `ffn_inp`, `ffn_norm`, `ffn_sub_out`, `ffn_sub_norm`,
/// `ffn_down`, `ffn_out`, `l_out` per layer; `result_norm`, `result_output` at the end);
/// values are token-major, the innermost axis first, as ggml lays them out.
#[derive(Debug, Clone, Copy)]
pub struct TracedOp<'a> {
    /// The op's name.
    pub op: &'static str,
    /// The block it belongs to; `None` after the last block.
    pub layer: Option<usize>,
    /// Its values for every token of the batch.
    pub values: &'a [f32],
    /// Bytes of weight matrices the products since the op traced before it read (the
    /// matrices' bytes in the file), so that a tracer timing the ops gets their bandwidth.
    pub weight_bytes: usize,
}

impl<'a> TracedOp<'a> {
    /// Op `op` of block `layer`, taking the weight bytes read since the last op from `read`.
    fn layer(op: &'static str, layer: usize, values: &'a [f32], read: &mut usize) -> Self {
        TracedOp {
            op,
            layer: Some(layer),
            values,
            weight_bytes: std::mem::take(read),
        }
    }

    /// Op `op` after the blocks, taking the weight bytes read since the last op from `read`.
    fn last(op: &'static str, values: &'a [f32], read: &mut usize) -> Self {
        TracedOp {
            op,
            layer: None,
            values,
            weight_bytes: std::mem::take(read),
        }
    }

    /// The reference's name of the tensor: `op-layer` inside a block, `op` after the blocks.
    pub fn graph_name(&self) -> String {
        match self.layer {
            Some(layer) => format!("{}-{layer}", self.op),
            None => self.op.to_string(),
        }
    }
}

with_simd! {
    /// The index of the largest value (the first on ties): the index a scan keeps that moves on
    /// only to a strictly larger value, so NaNs never win, and a NaN first wins alone.
    pub fn argmax(row: &[f32]) -> u32 {
        let Some(&first) = row.first() else {
            return 0;
        };
        if first.is_nan() {
            return 0;
        }
        // Each block's largest value is found lane by lane (a comparison that vectorizes); a
        // block that beats the best so far gives its first index of that value.
        let (mut best, mut best_value) = (0, first);
        for (b, block) in row.chunks(ARGMAX_BLOCK).enumerate() {
            let mut lanes = [f32::NEG_INFINITY; 16];
            let (vectors, rest) = block.as_chunks::<16>();
            for vector in vectors {
                for (lane, &v) in lanes.iter_mut().zip(vector) {
                    *lane = if v > *lane { v } else { *lane };
                }
            }
            for (lane, &v) in lanes.iter_mut().zip(rest) {
                *lane = if v > *lane { v } else { *lane };
            }
            let top = lanes.into_iter().fold(f32::NEG_INFINITY, |m, v| if v > m { v } else { m });
            if top > best_value {
                let at = block.iter().position(|&v| v == top).unwrap_or(0);
                (best, best_value) = (b * ARGMAX_BLOCK + at, top);
            }
        }
        best as u32
    }
}

/// Values per block of [`argmax`]'s scan.
const ARGMAX_BLOCK: usize = 1024;

/// Where a session keeps its context.
enum State {
    /// The CPU's KV cache.
    Cpu(KvCache),
    /// The GPU's session, allocated by the first evaluation.
    Cuda(Option<Box<CudaSession>>),
}

/// A context of at most `n_ctx` positions over a model, on the model's device.
pub struct Session<'m> {
    model: &'m Model,
    n_ctx: usize,
    n_past: usize,
    state: State,
}

impl<'m> Session<'m> {
    /// A session of `n_ctx` positions (0: the model's training context).
    pub fn new(model: &'m Model, n_ctx: usize) -> Self {
        let n_ctx = if n_ctx == 0 {
            model.n_ctx_train()
        } else {
            n_ctx
        };
        let state = if model.cuda.is_some() {
            State::Cuda(None)
        } else {
            State::Cpu(KvCache::new(
                model.heads(),
                model.layers.len(),
                n_ctx,
                model.options.kv_f16,
            ))
        };
        Session {
            model,
            n_ctx,
            n_past: 0,
            state,
        }
    }

    /// The model this session evaluates.
    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// Bytes of the KV cache (on the CPU allocated in full when the session is created; on the
    /// GPU by the first evaluation).
    pub fn kv_cache_bytes(&self) -> usize {
        match &self.state {
            State::Cpu(cache) => cache.bytes(),
            State::Cuda(Some(cuda)) => cuda.kv_cache_bytes(),
            State::Cuda(None) => {
                let n_layer = self.model.layers.len();
                self.model.heads().cache_bytes(n_layer, self.n_ctx, true)
            }
        }
    }

    /// The context length.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Positions already evaluated.
    pub fn n_past(&self) -> usize {
        self.n_past
    }

    /// Forgets every evaluated position.
    pub fn clear(&mut self) {
        if let State::Cpu(cache) = &mut self.state {
            cache.clear();
        }
        self.n_past = 0;
    }

    /// Evaluates `tokens` as one batch after the cached positions; returns the logits of every
    /// token (`all_logits`) or of the last one.
    pub fn eval(&mut self, tokens: &[u32], all_logits: bool) -> Result<Logits, ModelError> {
        if self.model.cuda.is_none() {
            return self.run(tokens, all_logits, &mut |_| {});
        }
        self.check_batch(tokens)?;
        let n_past = self.n_past;
        let (session, cuda) = self.cuda_session()?;
        let values = session.eval(cuda, tokens, n_past, all_logits)?;
        self.n_past += tokens.len();
        Ok(Logits {
            n_vocab: self.model.n_vocab,
            values,
        })
    }

    /// [`Session::eval`] with the logits of every token, handing each intermediate tensor to
    /// `trace` as it is computed, named as the reference's graph names it (see [`TracedOp`]).
    /// Runs on the CPU only.
    pub fn eval_traced(
        &mut self,
        tokens: &[u32],
        trace: &mut (dyn FnMut(TracedOp<'_>) + Send),
    ) -> Result<Logits, ModelError> {
        if self.model.cuda.is_some() {
            return Err(ModelError::Request(
                "tracing intermediate tensors runs on the CPU; load the model with device `cpu`"
                    .into(),
            ));
        }
        self.run(tokens, true, trace)
    }

    /// Evaluates `tokens` and returns the most likely next token (the first on ties); on the GPU
    /// the pick happens on the device and only the token comes back.
    pub fn eval_greedy(&mut self, tokens: &[u32]) -> Result<u32, ModelError> {
        if self.model.cuda.is_none() {
            return Ok(argmax(self.eval(tokens, false)?.as_slice()));
        }
        self.check_batch(tokens)?;
        let n_past = self.n_past;
        let (session, cuda) = self.cuda_session()?;
        let next = session.eval_argmax(cuda, tokens, n_past)?;
        self.n_past += tokens.len();
        Ok(next)
    }

    /// Evaluates `tokens` and runs the device's share of a sampler's pick on the last token's
    /// logits ([`crate::generation::Sampler::sample_on`]): on the GPU a token or a few
    /// candidates come back instead of the row; on the CPU the row itself.
    pub fn eval_pick(
        &mut self,
        tokens: &[u32],
        request: &PickRequest,
    ) -> Result<Picked, ModelError> {
        if self.model.cuda.is_none() {
            return Ok(Picked::Logits(self.eval(tokens, false)?.values));
        }
        self.check_batch(tokens)?;
        let n_past = self.n_past;
        let (session, cuda) = self.cuda_session()?;
        let picked = session.eval_pick(cuda, tokens, n_past, request)?;
        self.n_past += tokens.len();
        Ok(picked)
    }

    /// The GPU session, allocated on first use, and the model's GPU weights.
    fn cuda_session(&mut self) -> Result<(&mut CudaSession, &'m CudaModel), ModelError> {
        let model = self.model;
        let cuda = model
            .cuda
            .as_ref()
            .ok_or_else(|| ModelError::Request("the model is not on a GPU".into()))?;
        let State::Cuda(slot) = &mut self.state else {
            return Err(ModelError::Request("the session is not on a GPU".into()));
        };
        if slot.is_none() {
            *slot = Some(Box::new(CudaSession::new(model, cuda, self.n_ctx)?));
        }
        let session = slot.as_mut().expect("allocated above");
        Ok((session, cuda))
    }

    /// Checks that `tokens` is a non-empty batch of vocabulary ids that fits the context.
    fn check_batch(&self, tokens: &[u32]) -> Result<(), ModelError> {
        if tokens.is_empty() {
            return Err(ModelError::Request("empty batch".into()));
        }
        if self.n_past + tokens.len() > self.n_ctx {
            return Err(ModelError::ContextFull {
                n_ctx: self.n_ctx,
                n_past: self.n_past,
                requested: tokens.len(),
            });
        }
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= self.model.n_vocab) {
            return Err(ModelError::TokenOutOfRange {
                token,
                n_vocab: self.model.n_vocab,
            });
        }
        Ok(())
    }

    fn run(
        &mut self,
        tokens: &[u32],
        all_logits: bool,
        trace: &mut (dyn FnMut(TracedOp<'_>) + Send),
    ) -> Result<Logits, ModelError> {
        let model = self.model;
        self.check_batch(tokens)?;
        let State::Cpu(cache) = &mut self.state else {
            return Err(ModelError::Request("the session is not on the CPU".into()));
        };
        let bytes = model.file.bytes();
        let kernels = &model.kernels;
        let hp = &model.hparams;
        let (n_embd, n_ff) = (
            hp.embedding_length as usize,
            hp.feed_forward_length as usize,
        );
        let eps = hp.rms_epsilon;
        let heads = model.heads();
        let mut x = Vec::with_capacity(tokens.len() * n_embd);
        for &token in tokens {
            x.extend(model.token_embd.row_f32(bytes, token as usize)?);
        }
        // Every layer rotates by the same angles of each position.
        let n_rot = hp.rope_dimension_count as usize;
        let angles: Vec<_> = (self.n_past..self.n_past + tokens.len())
            .map(|pos| rope_angles(pos, n_rot, hp.rope_freq_base))
            .collect();
        let (kind, contract) = (model.rope_kind(), kernels.numerics().contract);
        // Every layer's products have the sizes of the layer before's, so their buffers are
        // reused, not allocated (and faulted in) again per product; a spent buffer takes the
        // next step's values, so the peak stays that of the largest step.
        let [mut h, mut q, mut v, mut cur] = [(); 4].map(|_| Vec::new());
        // Weight bytes read since the last traced op.
        let mut read = 0;
        for (il, layer) in model.layers.iter().enumerate() {
            h.clone_from(&x);
            norm_rows(kernels, &mut h, n_embd, &layer.attn_norm, eps);
            trace(TracedOp::layer("attn_norm", il, &h, &mut read));
            let mut k = std::mem::take(&mut cur);
            let qkv = [&layer.wq, &layer.wk, &layer.wv];
            // The weights of the vector step after each product are asked for as the product
            // starts: the product's stream has pushed them out of the caches since the last
            // token, and waiting for them one miss at a time would idle the memory.
            prefetch_all(layer.attn_sub_norm.as_deref().unwrap_or_default());
            if tokens.len() == 1 {
                cache.prefetch_cell(il, self.n_past);
            }
            Linear::apply_each(qkv, bytes, kernels, &h, [&mut q, &mut k, &mut v])?;
            read += qkv.iter().map(|l| l.weight_bytes()).sum::<usize>();
            let n_embd_kv = heads.n_head_kv * heads.head_dim;
            let rows = q
                .chunks_exact_mut(n_embd)
                .zip(k.chunks_exact_mut(n_embd_kv));
            for ((qt, kt), cos_sin) in rows.zip(&angles) {
                rope(qt, heads.head_dim, cos_sin, kind, contract);
                rope(kt, heads.head_dim, cos_sin, kind, contract);
            }
            trace(TracedOp::layer("Qcur", il, &q, &mut read));
            trace(TracedOp::layer("Kcur", il, &k, &mut read));
            trace(TracedOp::layer("Vcur", il, &v, &mut read));
            let mut attn = std::mem::take(&mut h);
            cache.attend(kernels, il, self.n_past, [&q, &k, &v], &mut attn)?;
            // The reference's `kqv_out` is the attention output where a sub-norm follows it,
            // and the output projection's result in the plain llama graph.
            if let Some(w) = &layer.attn_sub_norm {
                trace(TracedOp::layer("kqv_out", il, &attn, &mut read));
                norm_rows(kernels, &mut attn, n_embd, w, eps);
                trace(TracedOp::layer("attn_sub_norm", il, &attn, &mut read));
            }
            cur = k;
            prefetch_all(&layer.ffn_norm);
            layer.wo.apply(bytes, kernels, &attn, &mut cur)?;
            read += layer.wo.weight_bytes();
            let projected = if layer.attn_sub_norm.is_some() {
                "attn_o_out"
            } else {
                "kqv_out"
            };
            trace(TracedOp::layer(projected, il, &cur, &mut read));
            if il + 1 == model.layers.len() && !all_logits {
                cur.drain(..(tokens.len() - 1) * n_embd);
                x.drain(..(tokens.len() - 1) * n_embd);
            }
            add_assign(&mut cur, &x);
            let ffn_inp = &cur;
            trace(TracedOp::layer("ffn_inp", il, ffn_inp, &mut read));
            h = attn;
            h.clone_from(ffn_inp);
            norm_rows(kernels, &mut h, n_embd, &layer.ffn_norm, eps);
            trace(TracedOp::layer("ffn_norm", il, &h, &mut read));
            let (mut up, mut act) = (std::mem::take(&mut x), std::mem::take(&mut q));
            let up_gate = [&layer.ffn_up, &layer.ffn_gate];
            prefetch_all(layer.ffn_sub_norm.as_deref().unwrap_or_default());
            Linear::apply_each(up_gate, bytes, kernels, &h, [&mut up, &mut act])?;
            read += up_gate.iter().map(|l| l.weight_bytes()).sum::<usize>();
            let width = kernels.numerics().width;
            kernels.map_row_chunks(&mut act, n_ff, |first, gate| {
                let up = &up[first * n_ff..first * n_ff + gate.len()];
                match model.arch {
                    Arch::BitnetB158 => relu_sqr_mul(gate, up),
                    Arch::Bitnet | Arch::Llama => silu_mul(gate, up, n_ff, width),
                }
            });
            if let Some(w) = &layer.ffn_sub_norm {
                trace(TracedOp::layer("ffn_sub_out", il, &act, &mut read));
                norm_rows(kernels, &mut act, n_ff, w, eps);
                trace(TracedOp::layer("ffn_sub_norm", il, &act, &mut read));
            }
            x = up;
            let next_norm = model.layers.get(il + 1).map(|next| &next.attn_norm);
            prefetch_all(next_norm.unwrap_or(&model.output_norm));
            layer.ffn_down.apply(bytes, kernels, &act, &mut x)?;
            read += layer.ffn_down.weight_bytes();
            q = act;
            trace(TracedOp::layer("ffn_down", il, &x, &mut read));
            if layer.ffn_sub_norm.is_none() {
                trace(TracedOp::layer("ffn_out", il, &x, &mut read));
            }
            add_assign(&mut x, ffn_inp);
            trace(TracedOp::layer("l_out", il, &x, &mut read));
        }
        self.n_past += tokens.len();
        norm_rows(kernels, &mut x, n_embd, &model.output_norm, eps);
        trace(TracedOp::last("result_norm", &x, &mut read));
        let mut values = Vec::new();
        model.output.apply(bytes, kernels, &x, &mut values)?;
        read += model.output.weight_bytes();
        trace(TracedOp::last("result_output", &values, &mut read));
        Ok(Logits {
            n_vocab: model.n_vocab,
            values,
        })
    }

    /// Evaluates `prompt` after the cached positions, then picks the most likely token `n` times,
    /// feeding each back as a one-token batch. Returns the generated tokens.
    pub fn generate(&mut self, prompt: &[u32], n: usize) -> Result<Vec<u32>, ModelError> {
        let mut out = Vec::with_capacity(n);
        if n == 0 {
            return Ok(out);
        }
        let mut next = self.eval_greedy(prompt)?;
        out.push(next);
        while out.len() < n {
            next = self.eval_greedy(&[next])?;
            out.push(next);
        }
        Ok(out)
    }
}

/// [`rms_norm`] of each `width`-value row, rows split over the kernels' threads when there are
/// many.
fn norm_rows(kernels: &CpuKernels, x: &mut [f32], width: usize, weight: &[f32], eps: f32) {
    kernels.map_row_chunks(x, width, |_, rows| rms_norm(rows, width, weight, eps));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The scan [`argmax`] matches: move on only to a strictly larger value.
    fn scan(row: &[f32]) -> u32 {
        let mut best = 0;
        for (i, &v) in row.iter().enumerate() {
            if v > row[best] {
                best = i;
            }
        }
        best as u32
    }

    /// Values drawn from a few, so that ties, signed zeros, infinities and NaNs meet often.
    fn value() -> impl Strategy<Value = f32> {
        prop_oneof![
            prop::sample::select(vec![
                0.0,
                -0.0,
                1.0,
                -1.0,
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::NAN,
                f32::MAX,
            ]),
            -4.0f32..4.0,
        ]
    }

    proptest! {
        #[test]
        fn argmax_keeps_the_index_of_the_strictly_increasing_scan(
            row in prop::collection::vec(value(), 0..3000),
            at in any::<prop::sample::Index>(),
            big in any::<bool>(),
        ) {
            let mut row = row;
            if big && !row.is_empty() {
                // One large value anywhere, in any block.
                let i = at.index(row.len());
                row[i] = 1e30;
            }
            prop_assert_eq!(argmax(&row), scan(&row));
        }
    }
}
