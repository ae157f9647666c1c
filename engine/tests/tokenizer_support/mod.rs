//! Shared helpers of the GGUF and tokenizer tests: the data folder and llama.cpp's test-tokenizer-0 vectors.
// Each test crate uses its own subset of these helpers.
#![allow(dead_code)]

use std::path::PathBuf;

use bitnet_engine::gguf::GgufFile;
use bitnet_engine::tokenizer::Tokenizer;

/// The shared data folder: `BITNET_DATA_DIR`, else the one beside the workspace.
pub fn data_dir() -> PathBuf {
    let dir = std::env::var_os("BITNET_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data"))
        });
    assert!(
        dir.join("vocab").is_dir(),
        "test data not found at {}: set BITNET_DATA_DIR to the shared data folder",
        dir.display()
    );
    dir
}

/// The tokenizer of a vocab-only GGUF in `vocab/`.
pub fn open_tokenizer(name: &str) -> Tokenizer {
    let file = GgufFile::open(data_dir().join("vocab").join(name)).unwrap();
    Tokenizer::from_metadata(file.metadata()).unwrap()
}

/// The (input, expected ids) pairs of `vocab/<name>.inp` / `.out`.
pub fn vectors(name: &str) -> Vec<(String, Vec<u32>)> {
    let dir = data_dir().join("vocab");
    let inp = std::fs::read_to_string(dir.join(format!("{name}.inp"))).unwrap();
    let out = std::fs::read_to_string(dir.join(format!("{name}.out"))).unwrap();
    let mut texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    if texts.last() == Some(&"") {
        texts.pop();
    }
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(texts.len(), ids.len(), "{name}: .inp and .out disagree");
    texts.into_iter().map(str::to_string).zip(ids).collect()
}

/// Encodes every vector (no BOS, no special parsing) and lists the mismatches.
pub fn check_vectors(tok: &Tokenizer, name: &str) -> usize {
    let cases = vectors(name);
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(text, want)| {
            let got = tok.encode(text, false, false);
            (&got != want).then(|| format!("{text:?}\n  want {want:?}\n  got  {got:?}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{name}: {} of {} vectors differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    cases.len()
}
