//! The generation loop: tokenize, evaluate the prompt, then sample, stream and stop.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use super::metrics::peak_rss_bytes;
use super::stop::{Scan, StopMatcher};
use super::{RunMetrics, Sampler, SamplerConfig, SamplingError, StopConditions, StopReason};
use crate::model::{ModelError, Session};
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// What to generate and when to stop.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerateOptions {
    /// How each token is chosen.
    pub sampling: SamplerConfig,
    /// When generation ends.
    pub stop: StopConditions,
    /// Recognise special-token text such as `<|eot_id|>` in the prompt (chat prompts need it).
    pub parse_special: bool,
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The generated text, stop string excluded: exactly what was streamed.
    pub text: String,
    /// Every sampled token, including an end-of-generation token and the tokens of a stop string.
    pub tokens: Vec<u32>,
    /// The prompt's tokens (BOS included where the vocabulary adds one).
    pub prompt_tokens: Vec<u32>,
    /// Why generation ended.
    pub stop_reason: StopReason,
    /// Timings and memory.
    pub metrics: RunMetrics,
}

/// Why a generation could not run.
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    /// The sampling settings are invalid, or the logits cannot be sampled.
    #[error("sampling: {0}")]
    Sampling(#[from] SamplingError),
    /// The model failed to evaluate.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The prompt encodes to no tokens.
    #[error("the prompt encodes to no tokens")]
    EmptyPrompt,
    /// A stop string is empty (it would match before any text).
    #[error("stop strings must not be empty")]
    EmptyStopString,
    /// The prompt does not fit in what is left of the context.
    #[error(
        "the prompt has {prompt_tokens} tokens but the context has room for {room} \
         (n_ctx {n_ctx}, {n_past} already used)"
    )]
    PromptTooLong {
        /// Tokens of the prompt.
        prompt_tokens: usize,
        /// Positions still free.
        room: usize,
        /// The context length.
        n_ctx: usize,
        /// Positions already evaluated.
        n_past: usize,
    },
}

/// Generates a continuation of `prompt` after the session's cached positions, handing each
/// piece of text to `on_text` as soon as it is complete UTF-8 and cannot be part of a stop
/// string. `on_text` returning [`ControlFlow::Break`] ends generation ([`StopReason::Cancelled`]).
/// The prompt is tokenized with BOS/EOS as the vocabulary asks.
pub fn generate(
    session: &mut Session<'_>,
    tokenizer: &Tokenizer,
    prompt: &str,
    options: &GenerateOptions,
    mut on_text: impl FnMut(&str) -> ControlFlow<()>,
) -> Result<Generation, GenerationError> {
    let start = Instant::now();
    let mut sampler = Sampler::new(options.sampling)?;
    let stop = &options.stop;
    if stop.stop_strings.iter().any(String::is_empty) {
        return Err(GenerationError::EmptyStopString);
    }
    let prompt_tokens = tokenizer.encode(prompt, true, options.parse_special);
    let tokenize = start.elapsed();
    if prompt_tokens.is_empty() {
        return Err(GenerationError::EmptyPrompt);
    }
    let room = session.n_ctx() - session.n_past();
    if prompt_tokens.len() > room {
        return Err(GenerationError::PromptTooLong {
            prompt_tokens: prompt_tokens.len(),
            room,
            n_ctx: session.n_ctx(),
            n_past: session.n_past(),
        });
    }
    prompt_tokens.iter().for_each(|&t| sampler.accept(t));

    let mut out = TextStream {
        decoder: tokenizer.stream_decoder(false),
        matcher: StopMatcher::new(&stop.stop_strings),
        text: String::new(),
    };
    let mut tokens = Vec::new();
    let (mut prefill_tokens, mut prefill) = (0, Duration::ZERO);
    let mut first_token_at = None;
    let mut decode_tokens = 0;
    let stop_reason = if stop.max_tokens == 0 {
        StopReason::MaxTokens
    } else {
        let prefill_start = Instant::now();
        let n_vocab = session.model().n_vocab();
        let pick = |session: &mut Session<'_>, sampler: &mut Sampler, input: &[u32]| {
            sampler.sample_on(n_vocab, |request| {
                session
                    .eval_pick(input, request)
                    .map_err(GenerationError::from)
            })
        };
        // The prompt's evaluation includes the pick of the first token.
        let mut token = pick(session, &mut sampler, &prompt_tokens)?;
        (prefill_tokens, prefill) = (prompt_tokens.len(), prefill_start.elapsed());
        loop {
            tokens.push(token);
            first_token_at.get_or_insert_with(Instant::now);
            if stop.stop_at_eog && tokenizer.is_eog(token) {
                break StopReason::EndOfGeneration { token };
            }
            sampler.accept(token);
            if let Some(reason) = out.push(token, &mut on_text) {
                break reason;
            }
            if tokens.len() == stop.max_tokens {
                break StopReason::MaxTokens;
            }
            if session.n_past() == session.n_ctx() {
                break StopReason::ContextFull {
                    n_ctx: session.n_ctx(),
                };
            }
            token = pick(session, &mut sampler, &[token])?;
            decode_tokens += 1;
        }
    };
    let (text, stop_reason) = match stop_reason {
        StopReason::StopString(_) | StopReason::Cancelled => (out.text, stop_reason),
        other => match out.finish(&mut on_text) {
            (text, Some(stop)) => (text, stop),
            (text, None) => (text, other),
        },
    };
    let model = session.model();
    let metrics = RunMetrics {
        device: model.device().clone(),
        load: model.load_time(),
        tokenize,
        prefill_tokens,
        prefill,
        decode_tokens,
        decode: first_token_at.map_or(Duration::ZERO, |t| t.elapsed()),
        time_to_first_token: first_token_at.map(|t| t - start),
        peak_rss_bytes: peak_rss_bytes(),
        kv_cache_bytes: session.kv_cache_bytes(),
        weights: model.weight_memory(),
    };
    Ok(Generation {
        text,
        tokens,
        prompt_tokens,
        stop_reason,
        metrics,
    })
}

/// Detokenizes generated tokens, holds back possible stop strings and streams the rest.
struct TextStream<'t, 's> {
    decoder: StreamDecoder<'t>,
    matcher: StopMatcher<'s>,
    text: String,
}

impl TextStream<'_, '_> {
    /// Adds a token; returns why generation must end, if it must.
    fn push(
        &mut self,
        token: u32,
        on_text: &mut impl FnMut(&str) -> ControlFlow<()>,
    ) -> Option<StopReason> {
        let piece = self.decoder.push(token);
        self.scan(&piece, on_text)
    }

    /// Releases what the decoder and the matcher still hold once generation has ended without
    /// a stop string; returns the whole text, and the stop string if the last bytes complete one.
    fn finish(
        self,
        on_text: &mut impl FnMut(&str) -> ControlFlow<()>,
    ) -> (String, Option<StopReason>) {
        let TextStream {
            decoder,
            mut matcher,
            mut text,
        } = self;
        let (rest, reason) = match matcher.push(&decoder.finish()) {
            Scan::Release(released) => (released + &matcher.finish(), None),
            Scan::Stop(before, stop) => (before, Some(StopReason::StopString(stop))),
        };
        if !rest.is_empty() {
            text.push_str(&rest);
            // Nothing is left to cancel.
            let _ = on_text(&rest);
        }
        (text, reason)
    }

    fn scan(
        &mut self,
        piece: &str,
        on_text: &mut impl FnMut(&str) -> ControlFlow<()>,
    ) -> Option<StopReason> {
        if piece.is_empty() {
            return None;
        }
        let (released, reason) = match self.matcher.push(piece) {
            Scan::Release(text) => (text, None),
            Scan::Stop(before, stop) => (before, Some(StopReason::StopString(stop))),
        };
        if !released.is_empty() {
            self.text.push_str(&released);
            if on_text(&released).is_break() && reason.is_none() {
                return Some(StopReason::Cancelled);
            }
        }
        reason
    }
}
