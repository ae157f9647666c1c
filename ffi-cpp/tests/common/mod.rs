//! Helpers shared by the integration tests.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::{Path, PathBuf};

/// Environment variable pointing at the shared test data (vocab files, corpora).
pub const DATA_ENV: &str = "BITNET_DATA_DIR";
/// Environment variable naming a `bitnet`-architecture GGUF model for model tests.
pub const MODEL_ENV: &str = "BITNET_TEST_MODEL";

/// The shared data directory: `BITNET_DATA_DIR`, else `shared/data` beside the workspace.
pub fn data_dir() -> PathBuf {
    let dir = std::env::var_os(DATA_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    assert!(
        dir.join("vocab").is_dir(),
        "test data not found at {}; set {DATA_ENV} to the directory holding vocab/ and corpora/",
        dir.display()
    );
    dir
}

pub fn vocab_file(name: &str) -> PathBuf {
    data_dir().join("vocab").join(name)
}

/// The model named by `BITNET_TEST_MODEL`, else the committed tiny `bitnet` I2_S fixture.
pub fn test_model() -> PathBuf {
    let path = std::env::var_os(MODEL_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models/tiny-bitnet-i2_s.gguf")
        });
    assert!(
        path.is_file(),
        "{MODEL_ENV}={} is not a file",
        path.display()
    );
    path
}

/// A fresh scratch directory for one test.
pub fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bnref-tests-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Deterministic pseudo-random numbers (SplitMix64) so test inputs are reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// One of -1, 0, 1.
    pub fn trit(&mut self) -> i8 {
        (self.next_u64() % 3) as i8 - 1
    }
}
