//! GGUF headers through the reference's reader, including files it must refuse.

mod common;

use bitnet_ffi_cpp::{
    quantize_model_file, Backend, FileType, GgmlType, GgufHeader, QuantizeParams, RefError,
    GGUF_TYPE_ARRAY, GGUF_TYPE_STRING,
};
use std::path::{Path, PathBuf};

const GGUF_UINT32: u32 = 4;

fn backend() -> Backend {
    Backend::init().expect("reference backend")
}

/// A GGUF header written by hand: metadata entries as (key, type, encoded value) and tensor
/// infos as (name, dims, ggml type, offset). No tensor data follows (none is read).
struct HeaderBytes {
    bytes: Vec<u8>,
}

impl HeaderBytes {
    fn new(version: u32, n_tensors: u64, n_kv: u64) -> Self {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&version.to_le_bytes());
        bytes.extend_from_slice(&n_tensors.to_le_bytes());
        bytes.extend_from_slice(&n_kv.to_le_bytes());
        Self { bytes }
    }

    fn string(mut self, s: &str) -> Self {
        self.bytes
            .extend_from_slice(&(s.len() as u64).to_le_bytes());
        self.bytes.extend_from_slice(s.as_bytes());
        self
    }

    fn u32(mut self, v: u32) -> Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn u64(mut self, v: u64) -> Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn kv_str(self, key: &str, value: &str) -> Self {
        self.string(key).u32(GGUF_TYPE_STRING as u32).string(value)
    }

    fn tensor(self, name: &str, ne: &[u64], ty: GgmlType, offset: u64) -> Self {
        let mut out = self.string(name).u32(ne.len() as u32);
        for &d in ne {
            out = out.u64(d);
        }
        out.u32(ty.0).u64(offset)
    }

    fn write(self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.bytes).expect("write test file");
        path
    }
}

#[test]
fn vocab_files_parse() {
    let be = backend();
    for (file, model, n_tokens) in [
        ("ggml-vocab-gpt-2.gguf", "gpt2", 50257),
        ("ggml-vocab-llama-spm.gguf", "llama", 32000),
    ] {
        let header = GgufHeader::read(&be, common::vocab_file(file)).unwrap();
        assert!(header.version >= 2, "{file}");
        assert_eq!(header.alignment, 32, "{file}");
        assert!(header.tensors.is_empty(), "{file}");
        let tokenizer = header.kv("tokenizer.ggml.model").expect("tokenizer model");
        assert_eq!(tokenizer.string.as_deref(), Some(model), "{file}");
        let tokens = header.kv("tokenizer.ggml.tokens").expect("token list");
        assert_eq!(tokens.value_type, GGUF_TYPE_ARRAY);
        assert_eq!(tokens.array, Some((GGUF_TYPE_STRING, n_tokens)), "{file}");
        assert!(header.data_offset % header.alignment == 0);
    }
}

#[test]
fn tensor_directory_uses_the_reference_sizes() {
    let be = backend();
    let dir = common::scratch_dir("tensor-directory");
    let path = HeaderBytes::new(3, 4, 1)
        .kv_str("general.architecture", "bitnet")
        .tensor("blk.0.ffn_up.weight", &[256, 4], GgmlType::I2_S, 0)
        .tensor("blk.0.ffn_down.weight", &[512, 2], GgmlType::TQ2_0, 320)
        .tensor("output_norm.weight", &[7], GgmlType::F32, 608)
        .tensor("padded", &[4, 1, 1], GgmlType::F16, 640)
        .write(&dir, "directory.gguf");
    let header = GgufHeader::read(&be, &path).unwrap();
    let summary = |name: &str| {
        let t = header.tensor(name).unwrap();
        (t.ggml_type, t.n_dims, t.ne, t.offset, t.nbytes)
    };
    assert_eq!(
        summary("blk.0.ffn_up.weight"),
        (GgmlType::I2_S, 2, [256, 4, 1, 1], 0, 256 * 4 / 4 + 32)
    );
    assert_eq!(
        summary("blk.0.ffn_down.weight"),
        (GgmlType::TQ2_0, 2, [512, 2, 1, 1], 320, 4 * 66)
    );
    assert_eq!(
        summary("output_norm.weight"),
        (GgmlType::F32, 1, [7, 1, 1, 1], 608, 28)
    );
    assert_eq!(summary("padded"), (GgmlType::F16, 1, [4, 1, 1, 1], 640, 8));
    assert_eq!(
        header.kv("general.architecture").unwrap().string.as_deref(),
        Some("bitnet")
    );
    std::fs::remove_dir_all(dir).ok();
}

fn assert_format_error(result: Result<GgufHeader, RefError>, what: &str) {
    match result {
        Err(RefError::Format { message, .. }) => {
            assert!(message.contains(what), "{message:?} lacks {what:?}")
        }
        other => panic!("expected a format error mentioning {what:?}, got {other:?}"),
    }
}

#[test]
fn malformed_files_are_errors_not_aborts() {
    let be = backend();
    let dir = common::scratch_dir("malformed");
    let vocab = std::fs::read(common::vocab_file("ggml-vocab-gpt-2.gguf")).unwrap();
    let truncated = dir.join("truncated.gguf");
    std::fs::write(&truncated, &vocab[..4096]).unwrap();
    assert_format_error(GgufHeader::read(&be, &truncated), "past the end");

    let text = dir.join("text.gguf");
    std::fs::write(&text, "not a model\n").unwrap();
    assert_format_error(GgufHeader::read(&be, &text), "magic");

    let cases: Vec<(HeaderBytes, &str)> = vec![
        (HeaderBytes::new(1, 0, 0), "version 1"),
        (HeaderBytes::new(3, 0, u64::MAX / 2), "more entries"),
        (HeaderBytes::new(3, 1 << 40, 0), "more entries"),
        (
            HeaderBytes::new(3, 0, 1).string("k").u32(77).u32(0),
            "unknown value type",
        ),
        (
            HeaderBytes::new(3, 0, 1)
                .string("k")
                .u32(GGUF_TYPE_ARRAY as u32)
                .u32(GGUF_TYPE_ARRAY as u32)
                .u64(1),
            "nested",
        ),
        (
            HeaderBytes::new(3, 0, 1)
                .string("k")
                .u32(GGUF_TYPE_ARRAY as u32)
                .u32(GGUF_UINT32)
                .u64(1 << 60),
            "past the end",
        ),
        (
            HeaderBytes::new(3, 0, 1)
                .string("k")
                .u32(GGUF_TYPE_STRING as u32)
                .u64(1 << 50),
            "past the end",
        ),
        (
            HeaderBytes::new(3, 0, 1).kv_str("general.alignment", "32"),
            "alignment",
        ),
        (
            HeaderBytes::new(3, 0, 1)
                .string("general.alignment")
                .u32(GGUF_UINT32)
                .u32(0),
            "alignment",
        ),
        (
            HeaderBytes::new(3, 1, 0).tensor("t", &[32], GgmlType(200), 0),
            "ggml type 200",
        ),
        (
            HeaderBytes::new(3, 1, 0).tensor("t", &[], GgmlType::F32, 0),
            "dimensions",
        ),
        (
            HeaderBytes::new(3, 1, 0).tensor("t", &[1, 1, 1, 1, 1], GgmlType::F32, 0),
            "dimensions",
        ),
        (
            HeaderBytes::new(3, 1, 0).tensor("t", &[0, 4], GgmlType::F32, 0),
            "dimension 0",
        ),
        (
            HeaderBytes::new(3, 1, 0).tensor("t", &[u64::MAX, 4], GgmlType::F32, 0),
            "dimension -1",
        ),
        (
            HeaderBytes::new(3, 1, 0).tensor("t", &[1 << 32, 1 << 32], GgmlType::F32, 0),
            "product",
        ),
    ];
    for (i, (bytes, what)) in cases.into_iter().enumerate() {
        let path = bytes.write(&dir, &format!("case-{i}.gguf"));
        assert_format_error(GgufHeader::read(&be, &path), what);
    }

    match GgufHeader::read(&be, dir.join("missing.gguf")) {
        Err(RefError::Io { message, .. }) => assert!(message.contains("missing.gguf")),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert!(matches!(
        GgufHeader::read(&be, "bad\0path"),
        Err(RefError::InvalidArgument { .. })
    ));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn model_quantize_refuses_what_the_reference_would_abort_on() {
    let be = backend();
    let dir = common::scratch_dir("model-quantize");
    let params = QuantizeParams::new(FileType::MOSTLY_I2_S);
    // A vocab-only file declares layers but has no weights: the quantizer would assert.
    let vocab = common::vocab_file("ggml-vocab-llama-spm.gguf");
    match quantize_model_file(&be, &vocab, dir.join("out.gguf"), &params) {
        Err(RefError::Format { message, .. }) => {
            assert!(message.contains("attention"), "{message}")
        }
        other => panic!("expected a format error, got {other:?}"),
    }
    match quantize_model_file(&be, dir.join("missing.gguf"), dir.join("out.gguf"), &params) {
        Err(RefError::Io { .. }) => {}
        other => panic!("expected an I/O error, got {other:?}"),
    }
    let bad_type = QuantizeParams {
        token_embedding_type: Some(GgmlType(1000)),
        ..params
    };
    assert!(matches!(
        quantize_model_file(&be, &vocab, dir.join("out.gguf"), &bad_type),
        Err(RefError::InvalidArgument { .. })
    ));
    assert!(!dir.join("out.gguf").exists());
    std::fs::remove_dir_all(dir).ok();
}
