//! Trials: one per (case, backend pair), named `kind/case-id::candidate~reference`, ignored
//! with a reason when the case cannot run here; and the per-kind checks that judge them.

mod check;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub use check::{
    check_alignment, check_generate, check_logits, check_perplexity, check_perplexity_expected,
    check_quantization, check_tokenize,
};

use crate::backend::Capabilities;
use crate::case::{BackendId, BackendPair, Capability, Case};

/// One comparison to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    /// `kind/case-id::candidate~reference`.
    pub name: String,
    /// The case.
    pub case: Arc<Case>,
    /// The compared backends.
    pub pair: BackendPair,
    /// Why the trial cannot run here, if it cannot.
    pub ignore: Option<String>,
}

/// The name of the trial comparing `case` through `pair`.
pub fn trial_name(case: &Case, pair: BackendPair) -> String {
    format!("{}/{}::{pair}", case.kind(), case.id)
}

/// Whether a backend can be used in this run.
#[derive(Debug, Clone, PartialEq)]
pub enum Availability {
    /// Ready, with what it can do.
    Available(Capabilities),
    /// Not usable, and why (e.g. "built without CUDA").
    Unavailable(String),
}

/// What this run offers: capabilities granted outright and the backends at hand.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Environment {
    /// Capabilities of the run itself: host ISA, data present, slow runs asked for.
    pub granted: BTreeSet<Capability>,
    /// Backends by id; a missing id is unavailable. `expected` needs no entry.
    pub backends: BTreeMap<BackendId, Availability>,
    /// The `general.architecture` of the model each case loads, by case id, where the runner
    /// could read it; a backend whose `archs` are known and lack it cannot run the case.
    pub model_archs: BTreeMap<String, String>,
    /// The tensor types of the model each case runs, by case id, where the runner could read
    /// them; a backend that refuses one of them cannot run the case.
    pub model_types: BTreeMap<String, BTreeSet<String>>,
    /// Likewise for the `reference_model` a case gives its reference backend instead.
    pub reference_model_types: BTreeMap<String, BTreeSet<String>>,
}

/// The trials of one case, in the order its `backends:` lists them.
pub fn expand(case: &Arc<Case>, env: &Environment) -> Vec<Trial> {
    case.backends
        .iter()
        .map(|&pair| Trial {
            name: trial_name(case, pair),
            case: Arc::clone(case),
            pair,
            ignore: ignore_reason(case, pair, env),
        })
        .collect()
}

/// The trials of all cases, in case order.
pub fn expand_all(cases: Vec<Case>, env: &Environment) -> Vec<Trial> {
    cases
        .into_iter()
        .flat_map(|case| expand(&Arc::new(case), env))
        .collect()
}

fn ignore_reason(case: &Case, pair: BackendPair, env: &Environment) -> Option<String> {
    let mut reasons = Vec::new();
    let mut provided: BTreeSet<Capability> = env.granted.clone();
    for id in [pair.candidate, pair.reference] {
        if id == BackendId::Expected {
            continue;
        }
        match env.backends.get(&id) {
            None => reasons.push(format!("backend {id} is not available")),
            Some(Availability::Unavailable(why)) => {
                reasons.push(format!("backend {id} is unavailable: {why}"));
            }
            Some(Availability::Available(caps)) => {
                if !caps.kinds.contains(&case.kind()) {
                    reasons.push(format!("{id} does not run {} cases", case.kind()));
                }
                if let Some(format) = case.format().filter(|f| !caps.formats.contains(f)) {
                    reasons.push(format!("{id} does not support {format}"));
                }
                if let Some(arch) = env.model_archs.get(&case.id) {
                    if !caps.archs.is_empty() && !caps.archs.contains(arch) {
                        reasons.push(format!(
                            "{id} cannot run architecture `{arch}` (its model loader knows no \
                             such `general.architecture`)"
                        ));
                    }
                }
                let types = if id == pair.reference && case.reference_model().is_some() {
                    env.reference_model_types.get(&case.id)
                } else {
                    env.model_types.get(&case.id)
                };
                for ty in types.into_iter().flatten() {
                    if let Some(why) = caps.refused_types.get(ty) {
                        reasons.push(format!("{id} cannot multiply {ty} weights: {why}"));
                    }
                }
                provided.extend(&caps.features);
            }
        }
    }
    let unmet: Vec<&str> = case
        .needs
        .iter()
        .filter(|need| !provided.contains(need))
        .map(|need| need.name())
        .collect();
    if !unmet.is_empty() {
        reasons.push(format!("needs {} (not available)", unmet.join(", ")));
    }
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::{CaseKind, Device, QuantFormat};
    use crate::discovery::parse_case_file;
    use std::path::Path;

    fn caps(kinds: &[CaseKind], formats: &[QuantFormat], features: &[Capability]) -> Capabilities {
        Capabilities {
            kinds: kinds.iter().copied().collect(),
            formats: formats.iter().copied().collect(),
            archs: BTreeSet::new(),
            refused_types: BTreeMap::new(),
            device: Device::Cpu,
            features: features.iter().copied().collect(),
        }
    }

    fn quant_case() -> Arc<Case> {
        let text = "- id: tl2-gauss\n  needs: [tl2]\n  backends: [engine-cpu~cpp, engine-scalar~engine-simd]\n  \
                    format: TL2\n  shape: {rows: 32, cols: 256}\n  tiling: {bm: 32, bk: 96}\n  input: {gaussian: {seed: 1}}\n";
        let cases = parse_case_file(CaseKind::Quantization, Path::new("q.yaml"), text).unwrap();
        Arc::new(cases.into_iter().next().unwrap())
    }

    #[test]
    fn names_follow_kind_id_and_pair() {
        let trials = expand(&quant_case(), &Environment::default());
        let names: Vec<_> = trials.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "quantization/tl2-gauss::engine-cpu~cpp",
                "quantization/tl2-gauss::engine-scalar~engine-simd"
            ]
        );
    }

    #[test]
    fn ignore_reasons_name_what_is_missing() {
        let engine = caps(
            &[CaseKind::Quantization],
            &[QuantFormat::Tl2],
            &[Capability::Tl2],
        );
        let mut env = Environment::default();
        env.backends.insert(
            BackendId::EngineCpu,
            Availability::Available(engine.clone()),
        );
        env.backends.insert(
            BackendId::Cpp,
            Availability::Unavailable("reference not built".into()),
        );
        env.backends.insert(
            BackendId::EngineScalar,
            Availability::Available(engine.clone()),
        );
        env.backends.insert(
            BackendId::EngineSimd,
            Availability::Available(caps(&[CaseKind::Quantization], &[QuantFormat::I2S], &[])),
        );
        let trials = expand(&quant_case(), &env);
        assert_eq!(
            trials[0].ignore.as_deref(),
            Some("backend cpp is unavailable: reference not built")
        );
        assert_eq!(
            trials[1].ignore.as_deref(),
            Some("engine-simd does not support TL2")
        );
    }

    #[test]
    fn needs_are_met_by_the_run_or_a_backend() {
        let plain = caps(&[CaseKind::Quantization], &[QuantFormat::Tl2], &[]);
        let mut env = Environment::default();
        for id in [BackendId::EngineScalar, BackendId::EngineSimd] {
            env.backends
                .insert(id, Availability::Available(plain.clone()));
        }
        let case = quant_case();
        let trial = &expand(&case, &env)[1];
        assert_eq!(trial.ignore.as_deref(), Some("needs tl2 (not available)"));
        env.granted.insert(Capability::Tl2);
        assert_eq!(expand(&case, &env)[1].ignore, None);
    }

    /// An engine that runs logits cases, beside `reference` as `cpp`.
    fn engine_against(reference: Capabilities) -> Environment {
        let mut env = Environment::default();
        env.backends.insert(
            BackendId::EngineCpu,
            Availability::Available(caps(&[CaseKind::Logits], &[], &[])),
        );
        env.backends
            .insert(BackendId::Cpp, Availability::Available(reference));
        env
    }

    #[test]
    fn a_backend_that_lacks_the_model_architecture_is_named() {
        let text = "- id: b158\n  backends: [engine-cpu~cpp]\n  model: m.gguf\n  prompts: [hi]\n";
        let cases = parse_case_file(CaseKind::Logits, Path::new("l.yaml"), text).unwrap();
        let case = Arc::new(cases.into_iter().next().unwrap());
        let mut reference = caps(&[CaseKind::Logits], &[], &[]);
        reference.archs = ["bitnet".to_string(), "llama".to_string()].into();
        let mut env = engine_against(reference);
        assert_eq!(expand(&case, &env)[0].ignore, None);
        env.model_archs.insert("b158".into(), "bitnet-b1.58".into());
        assert_eq!(
            expand(&case, &env)[0].ignore.as_deref(),
            Some(
                "cpp cannot run architecture `bitnet-b1.58` (its model loader knows no such \
                 `general.architecture`)"
            )
        );
        env.model_archs.insert("b158".into(), "llama".into());
        assert_eq!(expand(&case, &env)[0].ignore, None);
    }

    #[test]
    fn a_refused_weight_type_is_named_and_a_reference_model_is_checked_instead() {
        let logits = |extra: &str| {
            let text = format!(
                "- id: lut\n  backends: [engine-cpu~cpp]\n  model: tl2.gguf\n{extra}  prompts: [hi]\n"
            );
            let cases = parse_case_file(CaseKind::Logits, Path::new("l.yaml"), &text).unwrap();
            Arc::new(cases.into_iter().next().unwrap())
        };
        let mut reference = caps(&[CaseKind::Logits], &[], &[]);
        reference
            .refused_types
            .insert("TL2".into(), "no LUT product".into());
        let mut env = engine_against(reference);
        let types = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        env.model_types.insert("lut".into(), types(&["F32", "TL2"]));
        let plain = logits("");
        assert_eq!(
            expand(&plain, &env)[0].ignore.as_deref(),
            Some("cpp cannot multiply TL2 weights: no LUT product")
        );
        let twin = logits("  reference_model: i2s.gguf\n");
        env.reference_model_types
            .insert("lut".into(), types(&["F32", "I2_S"]));
        assert_eq!(expand(&twin, &env)[0].ignore, None);
        env.reference_model_types
            .insert("lut".into(), types(&["TL2"]));
        assert!(expand(&twin, &env)[0].ignore.is_some());
    }
}
