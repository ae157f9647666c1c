//! One check per kind: both sides' outputs in, a verdict with every measurement out.
//! Fixed rules (shapes, NaN/Inf, agreeing tokens) come first; numeric metrics are only
//! computed on data those rules let through.

use crate::backend::{PerplexityOutput, PromptLogits, QuantOutput, TensorInfo, TensorTable};
use crate::case::{CaseParams, Shape};
use crate::metrics::{
    argmax, breaks_finite_policy, check_finite, compare_close, compare_exact, cosine,
    kl_divergence, max_abs_diff, pearson, pearson_f64, perplexity, relative_rmse, token_match,
    Divergence,
};
use crate::tolerance::{Bound, Metric, Tolerances};
use crate::verdict::{number, Check, Verdict, VerdictBuilder};

use super::Trial;

const SAME_SHAPE: &str = "outputs must have the same shape to be compared";
const FINITE: &str = "NaN never matches; an infinity matches only the same infinity";
const SAME_TOKENS: &str = "logits are compared only where both sides saw the same tokens";

/// How many items a detail lists before summarizing the rest.
const LISTED: usize = 5;

fn builder<'a>(trial: &'a Trial, tolerances: &'a Tolerances) -> VerdictBuilder<'a> {
    VerdictBuilder::new(&trial.case, trial.pair, tolerances)
}

/// Compares two tensor tables of one GGUF file: the table itself against the reference, and
/// the candidate's offsets and sizes against the file's own rules.
pub fn check_alignment(
    trial: &Trial,
    tolerances: &Tolerances,
    candidate: &TensorTable,
    reference: &TensorTable,
) -> Verdict {
    let mut verdict = builder(trial, tolerances);
    let differences = table_differences(candidate, reference);
    verdict.metric(
        Metric::TensorTable,
        differences.len() as f64,
        listing(&differences),
    );
    let misaligned = misaligned_offsets(candidate);
    verdict.metric(
        Metric::OffsetAlignment,
        misaligned.len() as f64,
        listing(&misaligned),
    );
    let sizes = size_problems(candidate, reference);
    verdict.metric(Metric::TensorSizes, sizes.len() as f64, listing(&sizes));
    verdict.finish()
}

fn table_differences(candidate: &TensorTable, reference: &TensorTable) -> Vec<String> {
    let mut found = Vec::new();
    if candidate.alignment != reference.alignment {
        found.push(format!(
            "alignment {} vs {}",
            candidate.alignment, reference.alignment
        ));
    }
    if candidate.data_offset != reference.data_offset {
        found.push(format!(
            "data section at byte {} vs {}",
            candidate.data_offset, reference.data_offset
        ));
    }
    let count = candidate.tensors.len().max(reference.tensors.len());
    for index in 0..count {
        match (candidate.tensors.get(index), reference.tensors.get(index)) {
            (Some(c), Some(r)) => {
                let mut what = Vec::new();
                if c.name != r.name {
                    what.push(format!("name `{}` vs `{}`", c.name, r.name));
                }
                if c.ggml_type != r.ggml_type {
                    what.push(format!("type {} vs {}", c.ggml_type, r.ggml_type));
                }
                if c.shape != r.shape {
                    what.push(format!("shape {:?} vs {:?}", c.shape, r.shape));
                }
                if c.offset != r.offset {
                    what.push(format!("offset {} vs {}", c.offset, r.offset));
                }
                if !what.is_empty() {
                    found.push(format!("tensor #{index} `{}`: {}", r.name, what.join(", ")));
                }
            }
            (Some(c), None) => found.push(format!(
                "tensor #{index} `{}` only in the candidate",
                c.name
            )),
            (None, Some(r)) => found.push(format!(
                "tensor #{index} `{}` only in the reference",
                r.name
            )),
            (None, None) => {}
        }
    }
    found
}

fn misaligned_offsets(table: &TensorTable) -> Vec<String> {
    let align = table.alignment;
    if align == 0 {
        return vec!["alignment is 0".to_string()];
    }
    let mut found = Vec::new();
    if table.data_offset % align != 0 {
        found.push(format!(
            "data section at byte {} is not a multiple of {align}",
            table.data_offset
        ));
    }
    for tensor in &table.tensors {
        if tensor.offset % align != 0 {
            found.push(format!(
                "`{}` at offset {} is not a multiple of {align}",
                tensor.name, tensor.offset
            ));
        }
    }
    found
}

fn size_problems(candidate: &TensorTable, reference: &TensorTable) -> Vec<String> {
    let mut found = Vec::new();
    for (c, r) in candidate.tensors.iter().zip(&reference.tensors) {
        if c.name == r.name && c.size != r.size {
            found.push(format!("`{}`: {} bytes vs {}", c.name, c.size, r.size));
        }
    }
    let mut by_offset: Vec<&TensorInfo> = candidate.tensors.iter().collect();
    by_offset.sort_by_key(|t| t.offset);
    for pair in by_offset.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.offset + a.size > b.offset {
            found.push(format!(
                "`{}` ({} bytes at {}) overlaps `{}` at {}",
                a.name, a.size, a.offset, b.name, b.offset
            ));
        }
    }
    for tensor in &candidate.tensors {
        let end = candidate.data_offset + tensor.offset + tensor.size;
        if end > candidate.file_size {
            found.push(format!(
                "`{}` ends at byte {end}, past the end of the file ({} bytes)",
                tensor.name, candidate.file_size
            ));
        }
    }
    found
}

/// Compares packed bytes, dequantized values and dot products, and bounds the candidate's
/// round-trip error against `weights`, the input both sides quantized.
pub fn check_quantization(
    trial: &Trial,
    tolerances: &Tolerances,
    weights: &[f32],
    candidate: &QuantOutput,
    reference: &QuantOutput,
) -> Verdict {
    let mut verdict = builder(trial, tolerances);
    let shape = match &trial.case.params {
        CaseParams::Quantization(p) => p.shape,
        _ => Shape {
            rows: 1,
            cols: weights.len(),
        },
    };

    let bytes = compare_exact(&candidate.packed, &reference.packed);
    let detail = match bytes.first {
        None => String::new(),
        Some(at) => {
            let show = |b: Option<&u8>| b.map_or("none".to_string(), |b| format!("{b:#04x}"));
            format!(
                "{} of {} bytes differ (candidate {} bytes, reference {}); first at byte {at}: \
                 candidate {}, reference {}",
                bytes.mismatches,
                bytes.reference_len.max(bytes.candidate_len),
                bytes.candidate_len,
                bytes.reference_len,
                show(candidate.packed.get(at)),
                show(reference.packed.get(at)),
            )
        }
    };
    verdict.metric(Metric::PackedBytes, bytes.mismatches as f64, detail);

    let sizes_fit = candidate.dequantized.len() == weights.len()
        && reference.dequantized.len() == weights.len();
    if sizes_fit {
        close_metric(
            &mut verdict,
            Metric::Dequantized,
            &candidate.dequantized,
            &reference.dequantized,
            |i| {
                format!(
                    "[row {}, col {}]",
                    i / shape.cols.max(1),
                    i % shape.cols.max(1)
                )
            },
        );
        let rmse = relative_rmse(&candidate.dequantized, weights);
        let detail = format!(
            "candidate {}, reference {}",
            number(rmse),
            number(relative_rmse(&reference.dequantized, weights))
        );
        verdict.metric(Metric::RoundtripRmse, rmse, detail);
    } else {
        verdict.policy(
            Check::Shape,
            SAME_SHAPE,
            1,
            format!(
                "dequantized: candidate {} values, reference {}, weights {}",
                candidate.dequantized.len(),
                reference.dequantized.len(),
                weights.len()
            ),
        );
    }

    if candidate.dots.len() != reference.dots.len() {
        verdict.policy(
            Check::Shape,
            SAME_SHAPE,
            1,
            format!(
                "dots: candidate {} values, reference {}",
                candidate.dots.len(),
                reference.dots.len()
            ),
        );
    } else if !reference.dots.is_empty() {
        close_metric(
            &mut verdict,
            Metric::Dot,
            &candidate.dots,
            &reference.dots,
            |i| {
                format!(
                    "[vector {}, row {}]",
                    i / shape.rows.max(1),
                    i % shape.rows.max(1)
                )
            },
        );
    }
    verdict.finish()
}

fn close_metric(
    verdict: &mut VerdictBuilder<'_>,
    metric: Metric,
    candidate: &[f32],
    reference: &[f32],
    locate: impl Fn(usize) -> String,
) {
    // Loading checks each bound's shape, so Close metrics carry Close bounds.
    let (rtol, atol) = match verdict.resolve(metric).bound {
        Bound::Close { rtol, atol } => (rtol, atol),
        _ => (0.0, 0.0),
    };
    let report = compare_close(candidate, reference, rtol, atol);
    let detail = match report.worst {
        None => String::new(),
        Some((pair, ratio)) => {
            let why = if breaks_finite_policy(pair.candidate, pair.reference) {
                format!("policy: {FINITE}")
            } else {
                let diff = (f64::from(pair.candidate) - f64::from(pair.reference)).abs();
                format!("|Δ| {} is {}× the allowed", number(diff), number(ratio))
            };
            format!(
                "{} of {} values outside; worst at {}: candidate {}, reference {} ({why})",
                report.violations,
                reference.len(),
                locate(pair.index),
                pair.candidate,
                pair.reference,
            )
        }
    };
    verdict.metric(metric, report.violations as f64, detail);
}

/// One compared logits row.
struct Row<'a> {
    prompt: usize,
    position: usize,
    candidate: &'a [f32],
    reference: &'a [f32],
}

impl Row<'_> {
    fn at(&self) -> String {
        format!("prompt #{}, position {}", self.prompt, self.position)
    }
}

/// Compares per-position logits over the positions where both sides saw the same tokens.
pub fn check_logits(
    trial: &Trial,
    tolerances: &Tolerances,
    candidate: &[PromptLogits],
    reference: &[PromptLogits],
) -> Verdict {
    let mut verdict = builder(trial, tolerances);
    if candidate.len() != reference.len() {
        verdict.policy(
            Check::Shape,
            SAME_SHAPE,
            1,
            format!(
                "candidate answered {} prompts, reference {}",
                candidate.len(),
                reference.len()
            ),
        );
        return verdict.finish();
    }
    let mut rows = Vec::new();
    let mut misshapen = Vec::new();
    let mut diverged = Vec::new();
    for (prompt, (c, r)) in candidate.iter().zip(reference).enumerate() {
        let well_formed =
            |p: &PromptLogits| p.vocab > 0 && p.logits.len() == p.tokens.len() * p.vocab;
        if c.vocab != r.vocab || !well_formed(c) || !well_formed(r) {
            misshapen.push(format!(
                "prompt #{prompt}: candidate {} tokens × {} vocab in {} logits, reference {} × {} in {}",
                c.tokens.len(),
                c.vocab,
                c.logits.len(),
                r.tokens.len(),
                r.vocab,
                r.logits.len()
            ));
            continue;
        }
        let tokens = token_match(&c.tokens, &r.tokens);
        if let Some(divergence) = &tokens.divergence {
            diverged.push(format!(
                "prompt #{prompt}: {}; compared the first {} positions",
                describe(divergence),
                tokens.matched_prefix
            ));
        }
        for position in 0..tokens.matched_prefix {
            let span = position * c.vocab..(position + 1) * c.vocab;
            rows.push(Row {
                prompt,
                position,
                candidate: &c.logits[span.clone()],
                reference: &r.logits[span],
            });
        }
    }
    if !misshapen.is_empty() {
        verdict.policy(
            Check::Shape,
            SAME_SHAPE,
            misshapen.len(),
            listing(&misshapen),
        );
    }
    verdict.policy(
        Check::Tokens,
        SAME_TOKENS,
        diverged.len(),
        listing(&diverged),
    );

    let mut offending = 0;
    let mut first = None;
    for row in &rows {
        let report = check_finite(row.candidate, row.reference);
        offending += report.offending;
        if first.is_none() {
            first = report.first.map(|pair| (row.at(), pair));
        }
    }
    let detail = first.map_or(String::new(), |(at, pair)| {
        format!(
            "first at {at}, token id {}: candidate {}, reference {}; numeric metrics not computed",
            pair.index, pair.candidate, pair.reference
        )
    });
    verdict.policy(Check::Finite, FINITE, offending, detail);
    if offending == 0 && !rows.is_empty() {
        logits_metrics(&mut verdict, &rows);
    }
    verdict.finish()
}

fn logits_metrics(verdict: &mut VerdictBuilder<'_>, rows: &[Row<'_>]) {
    let mut max_abs: Option<(&Row, usize, f64)> = None;
    let (mut err, mut energy) = (0.0f64, 0.0f64);
    let mut lowest_pearson: Option<(&Row, f64)> = None;
    let mut lowest_cosine: Option<(&Row, f64)> = None;
    let mut kl_sum = 0.0f64;
    let mut kl_max: Option<(&Row, f64)> = None;
    let mut agree = 0usize;
    let mut first_disagreement = None;
    for row in rows {
        if let Some((index, diff)) = max_abs_diff(row.candidate, row.reference) {
            if max_abs.is_none_or(|(_, _, top)| diff > top) {
                max_abs = Some((row, index, diff));
            }
        }
        for (&c, &r) in row.candidate.iter().zip(row.reference) {
            err += (f64::from(c) - f64::from(r)).powi(2);
            energy += f64::from(r).powi(2);
        }
        let p = pearson(row.candidate, row.reference);
        if lowest_pearson.is_none_or(|(_, low)| p < low) {
            lowest_pearson = Some((row, p));
        }
        let cos = cosine(row.candidate, row.reference);
        if lowest_cosine.is_none_or(|(_, low)| cos < low) {
            lowest_cosine = Some((row, cos));
        }
        let kl = kl_divergence(row.candidate, row.reference);
        kl_sum += kl;
        if kl_max.is_none_or(|(_, top)| kl > top) {
            kl_max = Some((row, kl));
        }
        let (c_top, r_top) = (argmax(row.candidate), argmax(row.reference));
        if c_top == r_top {
            agree += 1;
        } else if first_disagreement.is_none() {
            first_disagreement = Some(format!(
                "first at {}: candidate picks token {}, reference token {}",
                row.at(),
                c_top.unwrap_or_default(),
                r_top.unwrap_or_default()
            ));
        }
    }
    if let Some((row, index, diff)) = max_abs {
        let detail = format!(
            "at {}, token id {index}: candidate {}, reference {}",
            row.at(),
            row.candidate[index],
            row.reference[index]
        );
        verdict.metric(Metric::MaxAbs, diff, detail);
    }
    let nmse = if err == 0.0 {
        0.0
    } else if energy == 0.0 {
        f64::INFINITY
    } else {
        err / energy
    };
    verdict.metric(Metric::Nmse, nmse, format!("over {} positions", rows.len()));
    if let Some((row, p)) = lowest_pearson {
        verdict.metric(Metric::Pearson, p, format!("lowest at {}", row.at()));
    }
    if let Some((row, cos)) = lowest_cosine {
        verdict.metric(Metric::Cosine, cos, format!("lowest at {}", row.at()));
    }
    if let Some((row, kl)) = kl_max {
        verdict.metric(
            Metric::KlMean,
            kl_sum / rows.len() as f64,
            format!("over {} positions", rows.len()),
        );
        verdict.metric(Metric::KlMax, kl, format!("at {}", row.at()));
    }
    verdict.metric(
        Metric::Top1Agreement,
        agree as f64 / rows.len() as f64,
        first_disagreement.unwrap_or_default(),
    );
}

/// Compares perplexity and the per-token NLLs behind it.
pub fn check_perplexity(
    trial: &Trial,
    tolerances: &Tolerances,
    candidate: &PerplexityOutput,
    reference: &PerplexityOutput,
) -> Verdict {
    let mut verdict = builder(trial, tolerances);
    let (c, r) = (&candidate.nll, &reference.nll);
    if c.len() != r.len() || r.is_empty() {
        verdict.policy(
            Check::Shape,
            SAME_SHAPE,
            1,
            format!("candidate scored {} tokens, reference {}", c.len(), r.len()),
        );
        return verdict.finish();
    }
    let breaks =
        |a: f64, b: f64| a.is_nan() || b.is_nan() || (a.is_infinite() || b.is_infinite()) && a != b;
    let offending: Vec<usize> = (0..c.len()).filter(|&i| breaks(c[i], r[i])).collect();
    let detail = offending.first().map_or(String::new(), |&i| {
        format!(
            "first at token {i}: candidate {}, reference {}; numeric metrics not computed",
            c[i], r[i]
        )
    });
    verdict.policy(Check::Finite, FINITE, offending.len(), detail);
    if !offending.is_empty() {
        return verdict.finish();
    }
    let (pc, pr) = (perplexity(c), perplexity(r));
    verdict.metric(
        Metric::PplRelDiff,
        (pc - pr).abs() / pr,
        format!(
            "PPL candidate {}, reference {} over {} tokens",
            number(pc),
            number(pr),
            r.len()
        ),
    );
    let (worst, diff) = c
        .iter()
        .zip(r)
        .map(|(a, b)| (a - b).abs())
        .enumerate()
        .fold(
            (0, 0.0f64),
            |best, (i, d)| if d > best.1 { (i, d) } else { best },
        );
    verdict.metric(
        Metric::NllPearson,
        pearson_f64(c, r),
        format!("largest |ΔNLL| {} at token {worst}", number(diff)),
    );
    verdict.finish()
}

/// Compares a candidate's perplexity with a published value: the PPL only, since a published
/// number comes without per-token NLLs.
pub fn check_perplexity_expected(
    trial: &Trial,
    tolerances: &Tolerances,
    candidate: &PerplexityOutput,
    published: f64,
) -> Verdict {
    let mut verdict = builder(trial, tolerances);
    let c = &candidate.nll;
    if c.is_empty() {
        verdict.policy(
            Check::Shape,
            SAME_SHAPE,
            1,
            "the candidate scored no token".to_string(),
        );
        return verdict.finish();
    }
    let offending: Vec<usize> = (0..c.len()).filter(|&i| !c[i].is_finite()).collect();
    let detail = offending.first().map_or(String::new(), |&i| {
        format!("first at token {i}: NLL {}; perplexity not computed", c[i])
    });
    verdict.policy(Check::Finite, FINITE, offending.len(), detail);
    if !offending.is_empty() {
        return verdict.finish();
    }
    let pc = perplexity(c);
    verdict.metric(
        Metric::PplRelDiff,
        (pc - published).abs() / published,
        format!(
            "PPL candidate {} over {} tokens, published {}",
            number(pc),
            c.len(),
            number(published)
        ),
    );
    verdict.finish()
}

/// Compares tokenizer output text by text; `texts` are only used in messages.
pub fn check_tokenize(
    trial: &Trial,
    tolerances: &Tolerances,
    texts: &[String],
    candidate: &[Vec<u32>],
    reference: &[Vec<u32>],
) -> Verdict {
    let mut verdict = builder(trial, tolerances);
    if candidate.len() != reference.len() {
        verdict.policy(
            Check::Shape,
            SAME_SHAPE,
            1,
            format!(
                "candidate tokenized {} texts, reference {}",
                candidate.len(),
                reference.len()
            ),
        );
        return verdict.finish();
    }
    let differing: Vec<String> = candidate
        .iter()
        .zip(reference)
        .enumerate()
        .filter_map(|(i, (c, r))| {
            let divergence = token_match(c, r).divergence?;
            let text = texts
                .get(i)
                .map_or(String::new(), |t| format!(" {}", excerpt(t)));
            Some(format!("text #{i}{text}: {}", describe(&divergence)))
        })
        .collect();
    let total = reference.len();
    let rate = if total == 0 {
        1.0
    } else {
        (total - differing.len()) as f64 / total as f64
    };
    let detail = if differing.is_empty() {
        String::new()
    } else {
        format!(
            "{} of {total} texts differ\n{}",
            differing.len(),
            listing(&differing)
        )
    };
    verdict.metric(Metric::TokenizeExact, rate, detail);
    verdict.finish()
}

/// Compares greedy generations: the share of tokens produced before each first divergence.
pub fn check_generate(
    trial: &Trial,
    tolerances: &Tolerances,
    prompts: &[String],
    candidate: &[Vec<u32>],
    reference: &[Vec<u32>],
) -> Verdict {
    let mut verdict = builder(trial, tolerances);
    if candidate.len() != reference.len() {
        verdict.policy(
            Check::Shape,
            SAME_SHAPE,
            1,
            format!(
                "candidate answered {} prompts, reference {}",
                candidate.len(),
                reference.len()
            ),
        );
        return verdict.finish();
    }
    let (mut matched, mut compared) = (0usize, 0usize);
    let mut diverged = Vec::new();
    for (i, (c, r)) in candidate.iter().zip(reference).enumerate() {
        let m = token_match(c, r);
        matched += m.matched_prefix;
        compared += m.compared;
        if let Some(divergence) = &m.divergence {
            let prompt = prompts
                .get(i)
                .map_or(String::new(), |p| format!(" {}", excerpt(p)));
            diverged.push(format!("prompt #{i}{prompt}: {}", describe(divergence)));
        }
    }
    let rate = if compared == 0 {
        1.0
    } else {
        matched as f64 / compared as f64
    };
    let detail = if diverged.is_empty() {
        String::new()
    } else {
        format!(
            "{matched} of {compared} tokens before the first divergence\n{}",
            listing(&diverged)
        )
    };
    verdict.metric(Metric::GenerateMatch, rate, detail);
    verdict.finish()
}

fn describe(divergence: &Divergence) -> String {
    let show = |t: Option<u32>| t.map_or("(end)".to_string(), |t| t.to_string());
    format!(
        "first difference at token {}: candidate {}, reference {}, after {:?}",
        divergence.step,
        show(divergence.candidate),
        show(divergence.reference),
        divergence.context
    )
}

/// A text for messages: at most 40 characters, escaped.
fn excerpt(text: &str) -> String {
    const LIMIT: usize = 40;
    if text.chars().count() <= LIMIT {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(LIMIT).collect();
        format!("{head:?}…")
    }
}

/// The first few items one per line, then how many more.
fn listing(items: &[String]) -> String {
    let mut lines: Vec<String> = items.iter().take(LISTED).cloned().collect();
    if items.len() > LISTED {
        lines.push(format!("… and {} more", items.len() - LISTED));
    }
    lines.join("\n")
}
