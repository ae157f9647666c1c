//! The repository's own `tolerance.yaml` loads and carries the agreed defaults.

use std::path::Path;

use bitnet_conformance::tolerance::{Bound, BoundSource, Metric, Tolerances};

#[test]
fn repository_tolerances_load_with_agreed_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tolerance.yaml");
    let tolerances = Tolerances::load(&path).unwrap_or_else(|err| panic!("{err}"));
    let case = bitnet_conformance::discovery::parse_case_file(
        bitnet_conformance::case::CaseKind::Logits,
        Path::new("x.yaml"),
        "- id: x\n  backends: [engine-cpu~cpp]\n  model: m.gguf\n  prompts: [a]\n",
    )
    .unwrap()
    .remove(0);
    let pair = "engine-cpu~cpp".parse().unwrap();
    let resolved = tolerances.resolve(&case, pair, Metric::MaxAbs);
    assert_eq!(resolved.bound, Bound::Max(1e-4));
    assert_eq!(
        resolved.source,
        BoundSource::Default {
            metric: Metric::MaxAbs
        }
    );
    assert_eq!(
        tolerances.resolve(&case, pair, Metric::Pearson).bound,
        Bound::Min(0.95)
    );
    assert!(tolerances.overrides().iter().all(|o| !o.reason.is_empty()));
}
