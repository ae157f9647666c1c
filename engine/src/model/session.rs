//! Evaluation state: a KV cache over one model, batched evaluation and greedy generation.

use super::attention::KvCache;
use super::ops::{add_assign, relu_sqr_mul, rms_norm, rope, silu_mul};
use super::{Model, ModelError};
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

/// The index of the largest value (the first on ties).
pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

/// A context of at most `n_ctx` positions over a model.
pub struct Session<'m> {
    model: &'m Model,
    n_ctx: usize,
    n_past: usize,
    cache: KvCache,
}

impl<'m> Session<'m> {
    /// A session of `n_ctx` positions (0: the model's training context).
    pub fn new(model: &'m Model, n_ctx: usize) -> Self {
        let n_ctx = if n_ctx == 0 {
            model.n_ctx_train()
        } else {
            n_ctx
        };
        let cache = KvCache::new(
            model.heads(),
            model.layers.len(),
            n_ctx,
            model.options.kv_f16,
        );
        Session {
            model,
            n_ctx,
            n_past: 0,
            cache,
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
        self.cache.clear();
        self.n_past = 0;
    }

    /// Evaluates `tokens` as one batch after the cached positions; returns the logits of every
    /// token (`all_logits`) or of the last one.
    pub fn eval(&mut self, tokens: &[u32], all_logits: bool) -> Result<Logits, ModelError> {
        let model = self.model;
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
            if token as usize >= model.n_vocab {
                return Err(ModelError::TokenOutOfRange {
                    token,
                    n_vocab: model.n_vocab,
                });
            }
            x.extend(model.token_embd.row_f32(bytes, token as usize)?);
        }
        for (il, layer) in model.layers.iter().enumerate() {
            let mut h = x.clone();
            rms_norm(&mut h, n_embd, &layer.attn_norm, eps);
            let mut q = layer.wq.apply(bytes, kernels, &h)?;
            let mut k = layer.wk.apply(bytes, kernels, &h)?;
            let v = layer.wv.apply(bytes, kernels, &h)?;
            let n_rot = hp.rope_dimension_count as usize;
            let kind = model.rope_kind();
            let contract = kernels.numerics().contract;
            let n_embd_kv = heads.n_head_kv * heads.head_dim;
            for (t, (qt, kt)) in q
                .chunks_exact_mut(n_embd)
                .zip(k.chunks_exact_mut(n_embd_kv))
                .enumerate()
            {
                let pos = self.n_past + t;
                rope(
                    qt,
                    heads.head_dim,
                    n_rot,
                    pos,
                    hp.rope_freq_base,
                    kind,
                    contract,
                );
                rope(
                    kt,
                    heads.head_dim,
                    n_rot,
                    pos,
                    hp.rope_freq_base,
                    kind,
                    contract,
                );
            }
            let mut attn = self.cache.attend(kernels, il, self.n_past, &q, &k, &v)?;
            if let Some(w) = &layer.attn_sub_norm {
                rms_norm(&mut attn, n_embd, w, eps);
            }
            let mut cur = layer.wo.apply(bytes, kernels, &attn)?;
            if il + 1 == model.layers.len() && !all_logits {
                cur.drain(..(tokens.len() - 1) * n_embd);
                x.drain(..(tokens.len() - 1) * n_embd);
            }
            add_assign(&mut cur, &x);
            let ffn_inp = cur;
            let mut h = ffn_inp.clone();
            rms_norm(&mut h, n_embd, &layer.ffn_norm, eps);
            let up = layer.ffn_up.apply(bytes, kernels, &h)?;
            let mut act = layer.ffn_gate.apply(bytes, kernels, &h)?;
            match model.arch {
                Arch::BitnetB158 => relu_sqr_mul(&mut act, &up),
                Arch::Bitnet | Arch::Llama => {
                    silu_mul(&mut act, &up, n_ff, kernels.numerics().width)
                }
            }
            if let Some(w) = &layer.ffn_sub_norm {
                rms_norm(&mut act, n_ff, w, eps);
            }
            let mut out = layer.ffn_down.apply(bytes, kernels, &act)?;
            add_assign(&mut out, &ffn_inp);
            x = out;
        }
        self.n_past += tokens.len();
        rms_norm(&mut x, n_embd, &model.output_norm, eps);
        let values = model.output.apply(bytes, kernels, &x)?;
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
        let mut next = argmax(self.eval(prompt, false)?.as_slice());
        out.push(next);
        while out.len() < n {
            next = argmax(self.eval(&[next], false)?.as_slice());
            out.push(next);
        }
        Ok(out)
    }
}
