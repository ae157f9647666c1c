//! Perplexity over fixed-length chunks, following llama.cpp's `perplexity` tool.

use super::{Model, ModelError, Session};

/// The perplexity of a text and the negative log-likelihood of every scored token.
#[derive(Debug, Clone, PartialEq)]
pub struct Perplexity {
    /// `exp(mean nll)`.
    pub ppl: f64,
    /// Its standard error, `ppl · sqrt(var(nll) / (count − 1))`.
    pub ppl_err: f64,
    /// Negative log-likelihood of each scored token, chunk by chunk.
    pub nll: Vec<f64>,
}

/// Splits `tokens` (at least `2 · n_ctx` of them, as llama.cpp's tool demands) into chunks of
/// `n_ctx`, at most `max_chunks` (0: all); each chunk starts with
/// BOS in place of its first token (when the model has one) and is evaluated in a fresh context;
/// positions `n_ctx/2 .. n_ctx−2` are scored on the token that follows them.
pub fn perplexity(
    model: &Model,
    tokens: &[u32],
    n_ctx: usize,
    max_chunks: usize,
) -> Result<Perplexity, ModelError> {
    perplexity_with_progress(model, tokens, n_ctx, max_chunks, |_, _| {})
}

/// [`perplexity`], calling `on_chunk(done, total)` after each chunk is scored.
pub fn perplexity_with_progress(
    model: &Model,
    tokens: &[u32],
    n_ctx: usize,
    max_chunks: usize,
    mut on_chunk: impl FnMut(usize, usize),
) -> Result<Perplexity, ModelError> {
    let available = tokens.len() / n_ctx.max(1);
    let chunks = if max_chunks == 0 {
        available
    } else {
        available.min(max_chunks)
    };
    if n_ctx < 4 || tokens.len() < 2 * n_ctx || chunks == 0 {
        return Err(ModelError::Request(format!(
            "perplexity needs n_ctx ≥ 4, at least 2·n_ctx tokens and one chunk \
             (n_ctx {n_ctx}, {} tokens, max_chunks {max_chunks})",
            tokens.len()
        )));
    }
    let mut session = Session::new(model, n_ctx);
    let mut nll = Vec::with_capacity(chunks * (n_ctx - 1 - n_ctx / 2));
    for (done, chunk) in tokens.chunks_exact(n_ctx).take(chunks).enumerate() {
        let mut input = chunk.to_vec();
        if let Some(bos) = model.bos() {
            input[0] = bos;
        }
        session.clear();
        let logits = session.eval(&input, true)?;
        for j in n_ctx / 2..n_ctx - 1 {
            let row = logits.row(j).expect("one row per position");
            nll.push(token_nll(row, chunk[j + 1] as usize));
        }
        on_chunk(done + 1, chunks);
    }
    let count = nll.len() as f64;
    let mean = nll.iter().sum::<f64>() / count;
    let mean_sq = nll.iter().map(|v| v * v).sum::<f64>() / count;
    let ppl = mean.exp();
    let var = mean_sq - mean * mean;
    let ppl_err = if nll.len() > 1 {
        ppl * (var / (count - 1.0)).max(0.0).sqrt()
    } else {
        0.0
    };
    Ok(Perplexity { ppl, ppl_err, nll })
}

/// `(max − l[token]) + log Σ exp(l − max)`: the difference and each exponential in f32, the sum
/// and log in f64, rounding as the reference tool does.
fn token_nll(row: &[f32], token: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&l| f64::from((l - max).exp())).sum();
    f64::from(max - row[token]) + sum.ln()
}
