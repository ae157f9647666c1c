//! The divergence localizer on real traces: engine and reference agree op by op on a committed
//! model, and an engine built with other rounding than the reference is caught at the op where
//! the rounding first matters, not at the logits.

use std::path::PathBuf;

use bitnet_conformance::backend::{Backend, TraceRequest};
use bitnet_conformance::case::BackendId;
use bitnet_conformance::localize::{localize, FINAL_OPS, LAYER_OPS};
use bitnet_engine::formats::FpContract;
use bitnet_engine::kernels::{Isa, Numerics};
use bitnet_runner::backends::{reference_numerics, CppBackend, EngineBackend};

const PROMPT: &str = "To be, or not to be, that is the question";

fn fixture(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(relative)
}

fn engine(numerics: Numerics) -> EngineBackend {
    EngineBackend::new(BackendId::EngineCpu, Isa::best(), numerics).expect("engine kernels")
}

#[test]
fn every_op_agrees_when_the_numerics_match() {
    let reference = CppBackend::init().expect("the reference initialises");
    let numerics = reference_numerics(&bitnet_ffi_cpp::reference_info());
    // The bitnet graph names 13 ops per block (sub-norms included), the llama graph 9.
    for (model, ops_per_layer) in [
        ("models/tiny-bitnet-i2_s.gguf", 13),
        ("models/tiny-llama-i2_s.gguf", 9),
    ] {
        let path = fixture(model);
        let request = TraceRequest {
            model: &path,
            prompt: PROMPT,
            add_bos: true,
        };
        let ours = engine(numerics).trace(&request).expect("engine trace");
        let theirs = reference.trace(&request).expect("reference trace");
        let found = localize(&ours, &theirs, 1e-6);
        assert_eq!(found.first_divergent, None, "{model}: {found}");
        assert!(found.only_reference.is_empty(), "{model}: {found}");
        // Both layers and the final ops were compared.
        for name in ["attn_norm-0", "Qcur-1", "l_out-1", FINAL_OPS[1]] {
            assert!(
                found.ops.iter().any(|op| op.name == name),
                "{model}: {name} not compared: {found}"
            );
        }
        let per_layer = found
            .ops
            .iter()
            .filter(|op| op.name.ends_with("-0"))
            .count();
        assert_eq!(per_layer, ops_per_layer, "{model}: {found}");
        assert!(per_layer <= LAYER_OPS.len());
    }
}

#[test]
fn other_rounding_is_caught_where_it_starts() {
    let reference = CppBackend::init().expect("the reference initialises");
    let matched = reference_numerics(&bitnet_ffi_cpp::reference_info());
    let other = Numerics {
        contract: match matched.contract {
            FpContract::Fused => FpContract::Off,
            FpContract::Off => FpContract::Fused,
        },
        ..matched
    };
    let path = fixture("models/tiny-bitnet-i2_s.gguf");
    let request = TraceRequest {
        model: &path,
        prompt: PROMPT,
        add_bos: true,
    };
    let ours = engine(other).trace(&request).expect("engine trace");
    let theirs = reference.trace(&request).expect("reference trace");
    let found = localize(&ours, &theirs, 0.0);
    let first = found
        .first_divergent
        .map(|i| found.ops[i].name.as_str())
        .expect("a different activation rounding must show somewhere");
    // Activation quantization feeds the first ternary products, so the first divergent op is a
    // projection of layer 0 — the norm before it still agrees.
    assert!(
        ["Qcur-0", "Kcur-0", "Vcur-0"].contains(&first),
        "first divergent op {first}: {found}"
    );
    assert_eq!(found.ops[0].name, "attn_norm-0");
    assert!(found.ops[0].within(0.0), "{found}");
}

#[test]
fn a_failing_logits_trial_carries_the_localizer_finding() {
    let dir = tempfile::tempdir().unwrap();
    let tolerances = dir.path().join("tolerance.yaml");
    let mut table = std::fs::read_to_string(fixture("../tolerance.yaml")).unwrap();
    table.push_str(
        "\n  - match: {case: tiny-llama-i2_s-logits}\n    bounds:\n      pearson: {min: 1.5}\n    \
         reason: an unreachable bound, so the trial fails and its diagnosis shows\n",
    );
    std::fs::write(&tolerances, table).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_conformance"))
        .arg("--tolerances")
        .arg(&tolerances)
        .args(["--exact", "logits/tiny-llama-i2_s-logits::engine-cpu~cpp"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("✗ pearson"), "{text}");
    // The logits agree to the bit, so the localizer finds every op within bound: the failure
    // lies in the bound, not in a layer.
    assert!(
        text.contains("→ divergence localizer, prompt ") && text.contains("traced ops agree"),
        "{text}"
    );
}
