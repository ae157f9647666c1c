//! The committed binary fixtures are exactly what their generators produce.
//!
//! To rebuild them after a deliberate change: `BITNET_REGENERATE_FIXTURES=1 cargo test -p
//! bitnet-runner --test fixtures_gen`, then review and commit the new files.

use std::path::PathBuf;

use bitnet_runner::fixtures_gen::{
    f32_model, reference_quantized_model, tiny_model, tiny_ternary_model, F32_MODELS,
    REFERENCE_QUANTIZED_MODELS, TINY_MODELS, TINY_TERNARY_MODEL,
};
use bitnet_runner::harness::hex_sha256;

/// Committed models stay small enough to live in the repository.
const MAX_MODEL_BYTES: usize = 1 << 20;

#[test]
fn tiny_ternary_model_regenerates_byte_identically() {
    let generated = tiny_ternary_model().expect("the generator runs");
    check_committed(TINY_TERNARY_MODEL, &generated);
}

#[test]
fn tiny_models_regenerate_byte_identically() {
    for (path, arch, format) in TINY_MODELS {
        let generated = tiny_model(arch, format).expect("the generator runs");
        assert!(
            generated.len() < MAX_MODEL_BYTES,
            "{path} is {} bytes",
            generated.len()
        );
        check_committed(path, &generated);
    }
}

#[test]
fn f32_models_regenerate_byte_identically() {
    for (path, arch) in F32_MODELS {
        let generated = f32_model(arch).expect("the generator runs");
        assert!(
            generated.len() < MAX_MODEL_BYTES,
            "{path} is {} bytes",
            generated.len()
        );
        check_committed(path, &generated);
    }
}

#[test]
fn reference_quantized_models_regenerate_byte_identically() {
    let reference = bitnet_ffi_cpp::Backend::init().expect("the reference initialises");
    let scratch = tempfile::tempdir().expect("a scratch directory");
    for (path, params) in REFERENCE_QUANTIZED_MODELS {
        let generated = reference_quantized_model(&reference, &params, scratch.path())
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(
            generated.len() < MAX_MODEL_BYTES,
            "{path} is {} bytes",
            generated.len()
        );
        check_committed(path, &generated);
    }
}

/// Asserts the committed file at `relative` (under the fixtures root) is `generated`, first
/// rewriting it when `BITNET_REGENERATE_FIXTURES` is set.
fn check_committed(relative: &str, generated: &[u8]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(relative);
    if std::env::var_os("BITNET_REGENERATE_FIXTURES").is_some() {
        std::fs::write(&path, generated).expect("the fixture is writable");
    }
    let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        hex_sha256(generated),
        hex_sha256(&committed),
        "{} differs from its generator's output: regenerate it with BITNET_REGENERATE_FIXTURES=1",
        path.display()
    );
}
