//! Per-kind checks: passing outputs pass, every failing metric is reported together, and the
//! rendered verdict names the case, pair, metric, value, bound, source and detail.

use std::path::Path;
use std::sync::Arc;

use bitnet_conformance::backend::{
    PerplexityOutput, PromptLogits, QuantOutput, TensorInfo, TensorTable,
};
use bitnet_conformance::case::CaseKind;
use bitnet_conformance::discovery::parse_case_file;
use bitnet_conformance::tolerance::{Metric, Tolerances};
use bitnet_conformance::trial::{
    check_alignment, check_generate, check_logits, check_perplexity, check_perplexity_expected,
    check_quantization, check_tokenize, expand, Environment, Trial,
};
use bitnet_conformance::verdict::{Check, Outcome, Verdict};

const TOLERANCES: &str = "\
defaults:
  alignment: {tensor_table: exact, offset_alignment: exact, tensor_sizes: exact}
  quantization:
    packed_bytes: exact
    dequantized: {rtol: 1.0e-5, atol: 0}
    dot: {rtol: 0, atol: 0}
    roundtrip_rmse: {max: 1.0}
  logits:
    max_abs: {max: 1.0e-4}
    nmse: {max: 1.0e-6}
    pearson: {min: 0.95}
    cosine: {min: 0.999}
    kl_mean: {max: 1.0e-4}
    kl_max: {max: 1.0e-3}
    top1_agreement: {min: 0.99}
  perplexity: {ppl_rel_diff: {max: 1.0e-3}, nll_pearson: {min: 0.999}}
  token_match: {tokenize_exact: {min: 1.0}, generate_match: {min: 0.99}}
overrides:
  - match: {kind: logits, case: loose}
    bounds: {max_abs: {max: 0.5}}
    reason: a deliberately loose case
";

fn tolerances() -> Tolerances {
    Tolerances::parse(Path::new("tolerance.yaml"), TOLERANCES).unwrap()
}

fn trial(kind: CaseKind, yaml: &str) -> Trial {
    let case = parse_case_file(kind, Path::new("fixtures/case.yaml"), yaml)
        .unwrap()
        .remove(0);
    expand(&Arc::new(case), &Environment::default()).remove(0)
}

fn failed(verdict: &Verdict) -> Vec<&'static str> {
    verdict.failures().map(|m| m.check.name()).collect()
}

fn logits_trial(id: &str) -> Trial {
    trial(
        CaseKind::Logits,
        &format!("- id: {id}\n  backends: [engine-cpu~cpp]\n  model: m.gguf\n  prompts: [a, b]\n"),
    )
}

fn prompt(tokens: &[u32], logits: &[f32]) -> PromptLogits {
    PromptLogits {
        tokens: tokens.to_vec(),
        vocab: logits.len() / tokens.len(),
        logits: logits.to_vec(),
    }
}

fn reference_logits() -> Vec<PromptLogits> {
    vec![
        prompt(&[1, 2], &[0.5, 2.0, -1.0, 1.5, 0.0, 3.0]),
        prompt(&[7], &[1.0, -2.0, 0.25]),
    ]
}

#[test]
fn identical_logits_pass_every_check() {
    let trial = logits_trial("same");
    let verdict = check_logits(
        &trial,
        &tolerances(),
        &reference_logits(),
        &reference_logits(),
    );
    assert!(verdict.passed(), "{verdict}");
    let names: Vec<_> = verdict
        .measurements
        .iter()
        .map(|m| m.check.name())
        .collect();
    assert_eq!(
        names,
        [
            "tokens",
            "finite",
            "max_abs",
            "nmse",
            "pearson",
            "cosine",
            "kl_mean",
            "kl_max",
            "top1_agreement"
        ]
    );
    assert_eq!(
        verdict.to_string(),
        "logits/same::engine-cpu~cpp: all 9 checks passed (fixtures/case.yaml:1)"
    );
}

#[test]
fn every_failing_logits_metric_is_reported_with_its_source() {
    let trial = logits_trial("drift");
    let mut candidate = reference_logits();
    // Swap the top two logits of prompt #0 position 1: argmax flips, values move by 3.
    candidate[0].logits[3] = 3.0;
    candidate[0].logits[5] = 1.5;
    let verdict = check_logits(&trial, &tolerances(), &candidate, &reference_logits());
    assert_eq!(
        failed(&verdict),
        [
            "max_abs",
            "nmse",
            "pearson",
            "cosine",
            "kl_mean",
            "kl_max",
            "top1_agreement"
        ]
    );
    let max_abs = &verdict.measurements[2];
    assert_eq!(max_abs.value, 1.5);
    assert_eq!(
        max_abs.detail,
        "at prompt #0, position 1, token id 0: candidate 3, reference 1.5"
    );
    let text = verdict.to_string();
    assert!(
        text.starts_with("logits/drift::engine-cpu~cpp: 7 of 9 checks failed\n"),
        "{text}"
    );
    assert!(
        text.contains("case fixtures/case.yaml:1, candidate engine-cpu, reference cpp"),
        "{text}"
    );
    assert!(
        text.contains("✗ max_abs = 1.5, bound ≤ 1e-4 [defaults.logits.max_abs]\n      at prompt #0, position 1"),
        "{text}"
    );
    assert!(
        text.contains("✗ top1_agreement = 0.666667, bound ≥ 0.99 [defaults.logits.top1_agreement]"),
        "{text}"
    );
}

#[test]
fn override_source_appears_in_the_verdict() {
    let trial = logits_trial("loose");
    let mut candidate = reference_logits();
    candidate[1].logits[0] = 1.25;
    let verdict = check_logits(&trial, &tolerances(), &candidate, &reference_logits());
    let max_abs = verdict
        .measurements
        .iter()
        .find(|m| m.check == Check::Metric(Metric::MaxAbs))
        .unwrap();
    assert!(max_abs.passed);
    assert_eq!(
        max_abs.source.to_string(),
        "override #1 (tolerance.yaml:19): a deliberately loose case"
    );
}

#[test]
fn nan_fails_the_finite_policy_and_skips_numeric_metrics() {
    let trial = logits_trial("nan");
    let mut candidate = reference_logits();
    candidate[1].logits[2] = f32::NAN;
    let verdict = check_logits(&trial, &tolerances(), &candidate, &reference_logits());
    assert_eq!(failed(&verdict), ["finite"]);
    assert_eq!(verdict.measurements.len(), 2);
    let finite = &verdict.measurements[1];
    assert!(
        finite
            .detail
            .starts_with("first at prompt #1, position 0, token id 2"),
        "{}",
        finite.detail
    );
    assert!(finite
        .source
        .to_string()
        .starts_with("policy: NaN never matches"));
}

#[test]
fn different_prompt_tokens_limit_the_comparison() {
    let trial = logits_trial("tokens");
    let mut candidate = reference_logits();
    candidate[0].tokens[1] = 9;
    let verdict = check_logits(&trial, &tolerances(), &candidate, &reference_logits());
    assert_eq!(failed(&verdict), ["tokens"]);
    assert!(verdict.measurements[0]
        .detail
        .contains("prompt #0: first difference at token 1: candidate 9, reference 2, after [1]; compared the first 1 positions"));
    let mut short = reference_logits();
    short.pop();
    let verdict = check_logits(&trial, &tolerances(), &short, &reference_logits());
    assert_eq!(failed(&verdict), ["shape"]);
}

fn quant_trial() -> Trial {
    trial(
        CaseKind::Quantization,
        "- id: q\n  backends: [engine-scalar~engine-simd]\n  format: I2_S\n  \
         shape: {rows: 2, cols: 2}\n  input: {ternary: {seed: 1}}\n  activations: {seed: 2, count: 1}\n",
    )
}

fn quant_output() -> QuantOutput {
    QuantOutput {
        packed: vec![0x12, 0x34, 0x56],
        dequantized: vec![1.0, 0.0, -1.0, 1.0],
        dots: vec![0.5, -2.0],
    }
}

#[test]
fn quantization_reports_bytes_values_and_dots_together() {
    let trial = quant_trial();
    let weights = [1.0, 0.0, -1.0, 1.0];
    let verdict = check_quantization(
        &trial,
        &tolerances(),
        &weights,
        &quant_output(),
        &quant_output(),
    );
    assert!(verdict.passed(), "{verdict}");
    assert_eq!(verdict.measurements.len(), 4);

    let mut candidate = quant_output();
    candidate.packed[1] = 0x35;
    candidate.dequantized[2] = -1.001;
    candidate.dots[1] = f32::INFINITY;
    let verdict = check_quantization(&trial, &tolerances(), &weights, &candidate, &quant_output());
    assert_eq!(failed(&verdict), ["packed_bytes", "dequantized", "dot"]);
    let details: Vec<_> = verdict.failures().map(|m| m.detail.as_str()).collect();
    assert_eq!(
        details[0],
        "1 of 3 bytes differ (candidate 3 bytes, reference 3); first at byte 1: candidate 0x35, reference 0x34"
    );
    assert!(
        details[1].starts_with(
            "1 of 4 values outside; worst at [row 1, col 0]: candidate -1.001, reference -1"
        ),
        "{}",
        details[1]
    );
    assert!(
        details[2].contains("[vector 0, row 1]") && details[2].contains("policy"),
        "{}",
        details[2]
    );

    let mut truncated = quant_output();
    truncated.dequantized.pop();
    let verdict = check_quantization(&trial, &tolerances(), &weights, &truncated, &quant_output());
    assert_eq!(failed(&verdict), ["shape"]);
}

#[test]
fn alignment_checks_table_offsets_and_sizes() {
    let trial = trial(
        CaseKind::Alignment,
        "- id: t\n  backends: [engine-cpu~cpp]\n  model: m.gguf\n",
    );
    let tensor = |name: &str, offset, size| TensorInfo {
        name: name.into(),
        ggml_type: 36,
        shape: vec![256, 4],
        offset,
        size,
    };
    let reference = TensorTable {
        alignment: 32,
        data_offset: 640,
        file_size: 640 + 320,
        tensors: vec![tensor("a", 0, 288), tensor("b", 288, 32)],
    };
    let verdict = check_alignment(&trial, &tolerances(), &reference, &reference);
    assert!(verdict.passed(), "{verdict}");

    let mut candidate = reference.clone();
    candidate.tensors[0].size = 256 + 64;
    candidate.tensors[1].offset = 300;
    candidate.tensors[1].ggml_type = 1;
    let verdict = check_alignment(&trial, &tolerances(), &candidate, &reference);
    assert_eq!(
        failed(&verdict),
        ["tensor_table", "offset_alignment", "tensor_sizes"]
    );
    let details: Vec<_> = verdict.failures().map(|m| m.detail.as_str()).collect();
    assert_eq!(details[0], "tensor #1 `b`: type 1 vs 36, offset 300 vs 288");
    assert_eq!(details[1], "`b` at offset 300 is not a multiple of 32");
    assert_eq!(
        details[2],
        "`a`: 320 bytes vs 288\n`a` (320 bytes at 0) overlaps `b` at 300\n`b` ends at byte 972, past the end of the file (960 bytes)"
    );
}

#[test]
fn perplexity_compares_ppl_and_nll_correlation() {
    let trial = trial(
        CaseKind::Perplexity,
        "- id: p\n  backends: [engine-cpu~cpp]\n  model: m.gguf\n  text: {tokens: {seed: 1, count: 64}}\n  ctx: 16\n",
    );
    let reference = PerplexityOutput {
        nll: vec![1.0, 2.0, 3.0, 4.0],
    };
    let verdict = check_perplexity(&trial, &tolerances(), &reference, &reference);
    assert!(verdict.passed(), "{verdict}");
    let candidate = PerplexityOutput {
        nll: vec![1.0, 2.0, 3.0, 4.4],
    };
    let verdict = check_perplexity(&trial, &tolerances(), &candidate, &reference);
    // PPL exp(2.5) vs exp(2.6): relative difference e^0.1 − 1.
    let rel = verdict.measurements[1].value;
    assert!((rel - (0.1f64.exp() - 1.0)).abs() < 1e-12, "{rel}");
    assert_eq!(failed(&verdict), ["ppl_rel_diff", "nll_pearson"]);
    assert_eq!(
        verdict.measurements[2].detail,
        "largest |ΔNLL| 0.4 at token 3"
    );
}

#[test]
fn a_published_perplexity_is_compared_by_ppl_alone() {
    let trial = trial(
        CaseKind::Perplexity,
        "- id: p\n  backends: [engine-cpu~expected]\n  model: m.gguf\n  text: {tokens: {seed: 1, count: 64}}\n  ctx: 16\n  expected_ppl: 10.0\n",
    );
    let candidate = PerplexityOutput {
        nll: vec![10f64.ln(); 4],
    };
    let verdict = check_perplexity_expected(&trial, &tolerances(), &candidate, 10.0);
    assert!(verdict.passed(), "{verdict}");
    let verdict = check_perplexity_expected(&trial, &tolerances(), &candidate, 10.5);
    assert_eq!(failed(&verdict), ["ppl_rel_diff"]);
    assert!(verdict.to_string().contains("published 10.5"), "{verdict}");
    let broken = PerplexityOutput {
        nll: vec![1.0, f64::NAN],
    };
    let verdict = check_perplexity_expected(&trial, &tolerances(), &broken, 10.0);
    assert!(!verdict.passed(), "{verdict}");
    assert!(verdict
        .measurements
        .iter()
        .all(|m| !matches!(m.check, Check::Metric(_))));
}

#[test]
fn tokenizer_and_generation_report_first_divergence() {
    let tokenize = trial(
        CaseKind::TokenMatch,
        "- id: tok\n  backends: [engine-cpu~cpp]\n  model: v.gguf\n  tokenize: {texts: [hello, world]}\n",
    );
    let texts = ["hello".to_string(), "world".to_string()];
    let reference = vec![vec![1, 2], vec![3]];
    let candidate = vec![vec![1, 2], vec![4]];
    let verdict = check_tokenize(&tokenize, &tolerances(), &texts, &candidate, &reference);
    assert_eq!(failed(&verdict), ["tokenize_exact"]);
    assert_eq!(verdict.measurements[0].value, 0.5);
    assert_eq!(
        verdict.measurements[0].detail,
        "1 of 2 texts differ\ntext #1 \"world\": first difference at token 0: candidate 4, reference 3, after []"
    );

    let generate = trial(
        CaseKind::TokenMatch,
        "- id: gen\n  backends: [engine-cpu~cpp]\n  model: m.gguf\n  generate: {prompts: [a, b], tokens: 4}\n",
    );
    let prompts = ["a".to_string(), "b".to_string()];
    let reference = vec![vec![5, 6, 7, 8], vec![1, 1, 1, 1]];
    let candidate = vec![vec![5, 6, 9, 9], vec![1, 1, 1, 1]];
    let verdict = check_generate(&generate, &tolerances(), &prompts, &candidate, &reference);
    assert_eq!(verdict.measurements[0].value, 6.0 / 8.0);
    assert_eq!(
        verdict.measurements[0].detail,
        "6 of 8 tokens before the first divergence\nprompt #0 \"a\": first difference at token 2: candidate 9, reference 7, after [5, 6]"
    );
    let verdict = check_generate(&generate, &tolerances(), &prompts, &reference, &reference);
    assert!(verdict.passed());
}

#[test]
fn outcomes_keep_unsupported_apart_from_passed() {
    let trial = logits_trial("outcome");
    let verdict = check_logits(
        &trial,
        &tolerances(),
        &reference_logits(),
        &reference_logits(),
    );
    assert!(matches!(Outcome::from(verdict), Outcome::Passed(_)));
    let unsupported = Outcome::Unsupported {
        reason: "cpp does not support TL1".into(),
    };
    assert_eq!(
        unsupported.to_string(),
        "unsupported: cpp does not support TL1"
    );
}
