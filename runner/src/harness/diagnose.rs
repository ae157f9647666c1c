//! Diagnostics run after a failing check: the divergence localizer for logits.

use bitnet_conformance::backend::{Backend, LogitsRequest, PromptLogits, TraceRequest};
use bitnet_conformance::localize::localize;
use bitnet_conformance::metrics::nmse;

/// Traces the prompt whose logits disagree most through both sides and names the first op
/// whose NMSE exceeds `bound`; says why when a side cannot trace.
pub fn localize_logits(
    (candidate, reference): (&dyn Backend, &dyn Backend),
    (request, reference_request): (&LogitsRequest<'_>, &LogitsRequest<'_>),
    logits: (&[PromptLogits], &[PromptLogits]),
    bound: f64,
) -> String {
    let Some(worst) = worst_prompt(logits.0, logits.1) else {
        return "divergence localizer: no prompt to trace".into();
    };
    let prompt = &request.prompts[worst];
    let trace = |model| TraceRequest {
        model,
        prompt,
        add_bos: request.add_bos,
    };
    let traced = candidate
        .trace(&trace(request.model))
        .and_then(|c| Ok((c, reference.trace(&trace(reference_request.model))?)));
    match traced {
        Ok((c, r)) => format!(
            "divergence localizer, prompt {worst} ({prompt:?}): {}",
            localize(&c, &r, bound)
        ),
        Err(e) => format!("divergence localizer unavailable: {e}"),
    }
}

/// The prompt with the largest logits NMSE (a NaN counts as largest); prompts whose token
/// ids differ already fail on their own and are skipped.
fn worst_prompt(candidate: &[PromptLogits], reference: &[PromptLogits]) -> Option<usize> {
    candidate
        .iter()
        .zip(reference)
        .enumerate()
        .filter(|(_, (c, r))| c.tokens == r.tokens)
        .map(|(i, (c, r))| {
            let error = nmse(&c.logits, &r.logits);
            (i, if error.is_nan() { f64::INFINITY } else { error })
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(logits: &[f32]) -> PromptLogits {
        PromptLogits {
            tokens: vec![1, 2],
            vocab: 1,
            logits: logits.to_vec(),
        }
    }

    #[test]
    fn the_worst_prompt_is_traced() {
        let reference = [
            prompt(&[1.0, 1.0]),
            prompt(&[1.0, 1.0]),
            prompt(&[1.0, 1.0]),
        ];
        let candidate = [
            prompt(&[1.0, 1.1]),
            prompt(&[1.0, 2.0]),
            prompt(&[1.0, 1.0]),
        ];
        assert_eq!(worst_prompt(&candidate, &reference), Some(1));
        let with_nan = [
            prompt(&[1.0, 1.1]),
            prompt(&[1.0, 2.0]),
            prompt(&[f32::NAN, 1.0]),
        ];
        assert_eq!(worst_prompt(&with_nan, &reference), Some(2));
        assert_eq!(worst_prompt(&[], &[]), None);
    }
}
