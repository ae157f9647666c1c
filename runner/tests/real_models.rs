//! The conformance binary with real-model lanes: the committed synthetic model declared as a real
//! model (tests/models/models.yaml) is found in a `--models` folder and its lanes run and pass;
//! without it the lanes are ignored with where was looked and how to get it, and `--strict`
//! (or `BITNET_STRICT=1`) turns every would-be-ignored trial into a failure.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const FILE: &str = "tiny-bitnet-i2_s.gguf";
const LANES: [&str; 4] = [
    "alignment/real.tiny-bitnet::engine-cpu~cpp",
    "logits/real.tiny-bitnet::engine-cpu~cpp",
    "perplexity/real.tiny-bitnet::engine-cpu~cpp",
    "token_match/real.tiny-bitnet::engine-cpu~cpp",
];

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the conformance binary on the test models file with `args`; returns success and output.
fn conformance(args: &[&str], models: &Path, envs: &[(&str, &str)]) -> (bool, String) {
    let cache = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_conformance"));
    command
        .arg("--models-file")
        .arg(manifest().join("tests/models/models.yaml"))
        .arg("--models")
        .arg(models)
        .arg("--cache")
        .arg(cache.path())
        .args(args)
        .env_remove("BITNET_MODELS")
        .env_remove("BITNET_STRICT")
        .env_remove("BITNET_MODELS_FILE");
    for (name, value) in envs {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn with_model() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(
        manifest().join("../fixtures/models").join(FILE),
        dir.path().join(FILE),
    )
    .unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}

#[test]
fn lanes_of_a_model_found_in_the_models_folder_run_and_pass() {
    let (_dir, models) = with_model();
    let (ok, text) = conformance(&["real.tiny-bitnet"], &models, &[]);
    assert!(ok, "{text}");
    for lane in LANES {
        let passed = text
            .lines()
            .any(|line| line.starts_with(&format!("test {lane} ")) && line.ends_with("... ok"));
        assert!(passed, "{lane}:\n{text}");
    }
    assert!(text.contains("4 passed"), "{text}");
    // With the model here nothing is left out, so strict mode passes too.
    let (ok, text) = conformance(&["--strict", "real.tiny-bitnet"], &models, &[]);
    assert!(ok, "{text}");
}

#[test]
fn a_missing_model_is_ignored_with_where_and_how_and_fails_under_strict() {
    let empty = tempfile::tempdir().unwrap();
    let (ok, text) = conformance(&["real.tiny-bitnet"], empty.path(), &[]);
    assert!(ok, "{text}");
    assert!(text.contains("4 ignored"), "{text}");
    assert!(text.contains(&format!("looked for `{FILE}`")), "{text}");
    assert!(text.contains(&empty.path().display().to_string()), "{text}");
    assert!(
        text.contains("bitnet models download tiny-bitnet"),
        "{text}"
    );

    for (args, envs) in [
        (&["--strict", "real.tiny-bitnet"][..], &[][..]),
        (&["real.tiny-bitnet"][..], &[("BITNET_STRICT", "1")][..]),
    ] {
        let (ok, text) = conformance(args, empty.path(), envs);
        assert!(!ok, "strict passed:\n{text}");
        assert!(text.contains("4 failed"), "{text}");
        assert!(
            text.contains(
                "strict mode: this trial would be ignored: model `tiny-bitnet` not found"
            ),
            "{text}"
        );
    }
}

#[test]
fn a_wrong_file_of_the_right_name_is_not_taken() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(FILE), b"not the model").unwrap();
    let (ok, text) = conformance(&["real.tiny-bitnet"], dir.path(), &[]);
    assert!(ok, "{text}");
    assert!(text.contains("4 ignored"), "{text}");
    assert!(
        text.contains("13 bytes, the entry declares 481664"),
        "{text}"
    );
}

#[test]
fn strict_mode_fails_every_trial_that_would_be_ignored() {
    let empty = tempfile::tempdir().unwrap();
    let filter = "alignment/gpt-2-vocab-layout::engine-cpu~cpp";
    let args = ["--data", "/nonexistent-data-dir", "--exact", filter];
    let (ok, text) = conformance(&args, empty.path(), &[]);
    assert!(ok && text.contains("1 ignored"), "{text}");
    let strict = [
        "--strict",
        "--data",
        "/nonexistent-data-dir",
        "--exact",
        filter,
    ];
    let (ok, text) = conformance(&strict, empty.path(), &[]);
    assert!(!ok, "{text}");
    assert!(
        text.contains(
            "strict mode: this trial would be ignored: data not found at /nonexistent-data-dir"
        ),
        "{text}"
    );
}

#[test]
fn a_named_models_file_that_does_not_exist_fails() {
    let output = Command::new(env!("CARGO_BIN_EXE_conformance"))
        .args(["--models-file", "/nonexistent/models.yaml", "models.yaml"])
        .env_remove("BITNET_MODELS_FILE")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("no such models file"), "{text}");
}
