//! `bitnet inspect` on writer-produced files, valid and invalid.

use std::path::Path;
use std::process::Command;

use bitnet_engine::gguf::{GgmlType, GgufWriter, Value};

fn ternary_file(path: &Path) {
    let mut w = GgufWriter::new();
    let s = |v: &str| Value::String(v.into());
    w.set("general.architecture", s("bitnet")).unwrap();
    w.set("general.file_type", Value::U32(40)).unwrap();
    for (k, v) in [
        ("context_length", 64),
        ("embedding_length", 128),
        ("block_count", 1),
        ("feed_forward_length", 256),
        ("attention.head_count", 2),
    ] {
        w.set(&format!("bitnet.{k}"), Value::U32(v)).unwrap();
    }
    w.set("bitnet.attention.layer_norm_rms_epsilon", Value::F32(1e-5))
        .unwrap();
    w.add_tensor(
        "blk.0.attn_q.weight",
        GgmlType::I2_S,
        &[128, 128],
        vec![0x55; 128 * 128 / 4 + 32],
    )
    .unwrap();
    w.add_tensor(
        "blk.0.ffn_up.weight",
        GgmlType::TQ2_0,
        &[256, 4],
        vec![0; 4 * 66],
    )
    .unwrap();
    w.write_file(path).unwrap();
}

fn bitnet(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bitnet"))
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn inspects_a_ternary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    ternary_file(&path);
    let (ok, text) = bitnet(&["inspect", path.to_str().unwrap()]);
    assert!(ok, "{text}");
    for needle in [
        "architecture: bitnet",
        "type table: bitnet.cpp",
        "blk.0.attn_q.weight  i2_s",
        "4128",
        "tq2_0",
        "validation: OK",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }

    let (ok, json) = bitnet(&["inspect", "--json", path.to_str().unwrap()]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["tensors"][0]["ty"], "I2_S");
    assert_eq!(v["tensors"][0]["n_bytes"], 4128);
    assert_eq!(v["hparams"]["present"]["block_count"], 1);
}

#[test]
fn invalid_files_fail_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    ternary_file(&path);
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let (ok, text) = bitnet(&["inspect", cut.to_str().unwrap()]);
    assert!(!ok);
    assert!(text.contains("validation: INVALID"), "{text}");
    assert!(text.contains("tensor `blk.0.ffn_up.weight`"), "{text}");

    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"PK\x03\x04not a model").unwrap();
    let (ok, text) = bitnet(&["inspect", junk.to_str().unwrap()]);
    assert!(!ok);
    assert!(text.contains("not a GGUF file"), "{text}");

    let (ok, text) = bitnet(&["inspect", "--json", "/nonexistent/model.gguf"]);
    assert!(!ok);
    assert!(
        text.contains("cannot access /nonexistent/model.gguf"),
        "{text}"
    );
}
