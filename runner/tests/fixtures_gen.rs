//! The committed binary fixtures are exactly what their generators produce.
//!
//! To rebuild them after a deliberate change: `BITNET_REGENERATE_FIXTURES=1 cargo test -p
//! bitnet-runner --test fixtures_gen`, then review and commit the new files.

use std::path::PathBuf;

use bitnet_runner::fixtures_gen::{tiny_ternary_model, TINY_TERNARY_MODEL};
use bitnet_runner::harness::hex_sha256;

#[test]
fn tiny_ternary_model_regenerates_byte_identically() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(TINY_TERNARY_MODEL);
    let generated = tiny_ternary_model().expect("the generator runs");
    if std::env::var_os("BITNET_REGENERATE_FIXTURES").is_some() {
        std::fs::write(&path, &generated).expect("the fixture is writable");
    }
    let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        hex_sha256(&generated),
        hex_sha256(&committed),
        "{} differs from its generator's output: regenerate it with BITNET_REGENERATE_FIXTURES=1",
        path.display()
    );
}
