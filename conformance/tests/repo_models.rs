//! The repository's own models file parses cleanly, its lanes are real cases, a published
//! perplexity is judged with its own bound, and case files may not take the lanes' ids.

use std::path::Path;

use bitnet_conformance::case::{BackendPair, CaseKind, CaseParams, Origin};
use bitnet_conformance::discovery::{parse_case_file, DiscoveryError};
use bitnet_conformance::models::{load_models, Architecture};
use bitnet_conformance::tolerance::{Bound, Metric, Tolerances};

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

#[test]
fn repository_models_parse_and_their_lanes_are_cases() {
    let declared = load_models(&repo("fixtures/models.yaml"));
    assert!(declared.errors.is_empty(), "{:?}", declared.errors);
    let ids: Vec<&str> = declared.models.iter().map(|m| m.id.as_str()).collect();
    assert!(ids.contains(&"bitnet-2b-4t"), "{ids:?}");
    for model in &declared.models {
        // Pinned, downloadable models and unpinned, converted ones; nothing in between.
        assert_eq!(model.is_pinned(), model.convert.is_none(), "{}", model.id);
        assert!(
            declared.cases.iter().any(|c| c.id == model.case_id()),
            "{}",
            model.id
        );
    }
    let flagship = declared.model("bitnet-2b-4t").unwrap();
    assert_eq!(flagship.architecture, Architecture::BitnetB158);
    assert_eq!(flagship.size, Some(1_187_801_280));
    let perplexity = declared
        .cases
        .iter()
        .find(|c| c.id == "real.bitnet-2b-4t" && c.kind() == CaseKind::Perplexity)
        .unwrap();
    let CaseParams::Perplexity(params) = &perplexity.params else {
        panic!("not a perplexity lane");
    };
    assert_eq!(params.expected_ppl, Some(17.109));
    assert!(matches!(perplexity.origin, Origin::RealModel { .. }));

    let tolerances = Tolerances::load(&repo("tolerance.yaml")).unwrap();
    let pair: BackendPair = "engine-cpu~expected".parse().unwrap();
    let resolved = tolerances.resolve(perplexity, pair, Metric::PplRelDiff);
    assert_eq!(resolved.bound, Bound::Max(0.03));
}

#[test]
fn case_files_may_not_use_the_lanes_ids() {
    let text = "- id: real.x\n  backends: [engine-cpu~cpp]\n  model: m.gguf\n  prompts: [a]\n";
    let error = parse_case_file(CaseKind::Logits, Path::new("l.yaml"), text).unwrap_err();
    assert!(matches!(error, DiscoveryError::Invalid { .. }), "{error}");
    assert!(error.to_string().contains("belong to the lanes"), "{error}");
}

#[test]
fn the_expected_reference_needs_a_published_perplexity() {
    let case = "- id: p\n  backends: [engine-cpu~expected]\n  model: m.gguf\n  \
                text: {tokens: {seed: 1, count: 64}}\n  ctx: 64\n";
    let error = parse_case_file(CaseKind::Perplexity, Path::new("p.yaml"), case).unwrap_err();
    assert!(error.to_string().contains("expected_ppl"), "{error}");
    let with = format!("{case}  expected_ppl: 12.5\n");
    assert!(parse_case_file(CaseKind::Perplexity, Path::new("p.yaml"), &with).is_ok());
    let bad = format!("{case}  expected_ppl: 0.5\n");
    let error = parse_case_file(CaseKind::Perplexity, Path::new("p.yaml"), &bad).unwrap_err();
    assert!(error.to_string().contains("not a perplexity"), "{error}");
}
