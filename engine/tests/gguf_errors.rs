//! Hand-crafted bad files: each validation error, truncation at every byte, huge counts.

use std::time::Instant;

use bitnet_engine::gguf::{GgmlType, GgufError, GgufWriter, Layout, Value};

/// A raw GGUF builder that, unlike the writer, can produce any bytes we like.
#[derive(Default)]
struct Raw {
    version: u32,
    kvs: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    n_tensors: u64,
    data: Vec<u8>,
    alignment: usize,
}

impl Raw {
    fn new() -> Self {
        Self {
            version: 3,
            alignment: 32,
            ..Default::default()
        }
    }
    fn string(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s);
    }
    fn kv_u32(mut self, key: &[u8], v: u32) -> Self {
        Self::string(&mut self.kvs, key);
        self.kvs.extend_from_slice(&4u32.to_le_bytes());
        self.kvs.extend_from_slice(&v.to_le_bytes());
        self.n_kv += 1;
        self
    }
    fn kv_raw(mut self, key: &[u8], type_id: u32, payload: &[u8]) -> Self {
        Self::string(&mut self.kvs, key);
        self.kvs.extend_from_slice(&type_id.to_le_bytes());
        self.kvs.extend_from_slice(payload);
        self.n_kv += 1;
        self
    }
    fn tensor(mut self, name: &str, dims: &[u64], type_id: u32, offset: u64) -> Self {
        Self::string(&mut self.infos, name.as_bytes());
        self.infos
            .extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            self.infos.extend_from_slice(&d.to_le_bytes());
        }
        self.infos.extend_from_slice(&type_id.to_le_bytes());
        self.infos.extend_from_slice(&offset.to_le_bytes());
        self.n_tensors += 1;
        self
    }
    fn data(mut self, n: usize) -> Self {
        self.data = vec![7u8; n];
        self
    }
    fn bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.n_tensors.to_le_bytes());
        out.extend_from_slice(&self.n_kv.to_le_bytes());
        out.extend_from_slice(&self.kvs);
        out.extend_from_slice(&self.infos);
        out.resize(out.len().next_multiple_of(self.alignment), 0);
        out.extend_from_slice(&self.data);
        out
    }
}

fn err(bytes: &[u8]) -> GgufError {
    match Layout::parse(bytes) {
        Err(e) => e,
        Ok(l) => l
            .validate()
            .into_iter()
            .next()
            .expect("expected an invalid file"),
    }
}

fn valid() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String("bitnet".into()))
        .unwrap();
    w.set("bitnet.block_count", Value::U32(1)).unwrap();
    w.add_tensor("a", GgmlType::F32, &[4, 2], vec![1; 32])
        .unwrap();
    w.add_tensor("b", GgmlType::I2_S, &[128, 1], vec![2; 64])
        .unwrap();
    w.to_bytes()
}

#[test]
fn every_truncation_is_an_error_never_a_panic() {
    let bytes = valid();
    assert!(Layout::parse(&bytes).unwrap().validate().is_empty());
    for cut in 0..bytes.len() {
        let prefix = &bytes[..cut];
        let e = err(prefix);
        assert!(
            matches!(
                e,
                GgufError::Truncated { .. }
                    | GgufError::CountTooLarge { .. }
                    | GgufError::TensorOutOfBounds { .. }
            ),
            "cut at {cut}: {e}"
        );
    }
}

#[test]
fn truncation_names_the_section_and_offset() {
    let bytes = valid();
    let e = err(&bytes[..6]);
    assert!(e.to_string().contains("version at offset 4"), "{e}");
    let e = err(&bytes[..98]);
    assert!(
        e.to_string()
            .contains("metadata key `bitnet.block_count` at offset 96"),
        "{e}"
    );
    let e = err(&bytes[..30]);
    assert!(
        e.to_string().contains("tensor count at offset 8 is 2"),
        "{e}"
    );
    let last = bytes.len() - 1;
    let e = err(&bytes[..last]);
    assert!(e.to_string().contains("tensor `b`"), "{e}");
}

#[test]
fn bad_magic() {
    let mut bytes = valid();
    bytes[..4].copy_from_slice(b"GGML");
    let e = err(&bytes);
    assert!(matches!(e, GgufError::BadMagic { found } if &found == b"GGML"));
    assert!(e.to_string().contains("not a GGUF file"));
}

#[test]
fn unsupported_versions_say_why() {
    let mut raw = Raw::new();
    raw.version = 1;
    assert!(err(&raw.bytes()).to_string().contains("v1"));
    raw.version = 3u32.swap_bytes();
    assert!(err(&raw.bytes()).to_string().contains("big-endian"));
    raw.version = 2;
    assert!(Layout::parse(&raw.bytes()).is_ok());
}

#[test]
fn huge_string_length_fails_fast_without_allocating() {
    let mut bytes = Raw::new().bytes();
    bytes.truncate(24);
    bytes[16..24].copy_from_slice(&1u64.to_le_bytes());
    bytes.extend_from_slice(&(1u64 << 30).to_le_bytes());
    bytes.resize(1024, b'k');
    let t = Instant::now();
    let e = err(&bytes);
    assert!(t.elapsed().as_millis() < 100);
    assert!(
        matches!(e, GgufError::CountTooLarge { count, offset: 24, .. } if count == 1 << 30),
        "{e}"
    );
}

#[test]
fn huge_counts_fail_fast() {
    let mut bytes = Raw::new().bytes();
    bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        err(&bytes),
        GgufError::CountTooLarge { offset: 8, .. }
    ));
    let raw = Raw::new().kv_raw(
        b"arr",
        9,
        &[&4u32.to_le_bytes()[..], &(1u64 << 40).to_le_bytes()].concat(),
    );
    let e = err(&raw.bytes());
    assert!(e.to_string().contains("length of array `arr`"), "{e}");
}

#[test]
fn non_utf8_key() {
    let raw = Raw::new().kv_u32(b"general.\xffname", 1);
    let e = err(&raw.bytes());
    assert!(
        matches!(e, GgufError::InvalidUtf8 { offset: 32, .. }),
        "{e}"
    );
}

#[test]
fn duplicate_keys_and_tensors() {
    let raw = Raw::new().kv_u32(b"k", 1).kv_u32(b"k", 2);
    assert!(matches!(err(&raw.bytes()), GgufError::DuplicateKey { key, .. } if key == "k"));
    let raw = Raw::new()
        .tensor("t", &[8], 0, 0)
        .tensor("t", &[8], 0, 32)
        .data(64);
    assert!(matches!(err(&raw.bytes()), GgufError::DuplicateTensor { name, .. } if name == "t"));
}

#[test]
fn unknown_value_and_tensor_types() {
    let raw = Raw::new().kv_raw(b"k", 13, &[0; 8]);
    assert!(matches!(
        err(&raw.bytes()),
        GgufError::UnknownValueType { type_id: 13, .. }
    ));
    let raw = Raw::new().tensor("t", &[8], 36, 0).data(64);
    assert!(
        Layout::parse(&raw.bytes()).is_ok(),
        "36 selects the bitnet table"
    );
    let raw = Raw::new().tensor("t", &[8], 41, 0).data(64);
    let e = err(&raw.bytes());
    assert!(matches!(
        e,
        GgufError::UnknownTensorType { type_id: 41, .. }
    ));
    assert!(e.to_string().contains("tensor `t`"), "{e}");
}

#[test]
fn type_39_is_mxfp4_without_bitnet_evidence() {
    let raw = Raw::new().tensor("t", &[32], 39, 0).data(32);
    let l = Layout::parse(&raw.bytes()).unwrap();
    assert_eq!(l.tensors[0].ty, GgmlType::MXFP4);
    let raw = Raw::new()
        .kv_u32(b"general.file_type", 39)
        .tensor("t", &[256, 3], 39, 0)
        .data(1024);
    let l = Layout::parse(&raw.bytes()).unwrap();
    assert_eq!(l.tensors[0].ty, GgmlType::TL2);
    assert!(l.type_table.reason.contains("file_type 39"));
}

#[test]
fn misaligned_tensor() {
    let raw = Raw::new()
        .tensor("a", &[4], 0, 0)
        .tensor("b", &[4], 0, 16)
        .data(64);
    let e = err(&raw.bytes());
    assert!(
        matches!(e, GgufError::MisalignedTensor { ref tensor, offset: 16, alignment: 32 } if tensor == "b"),
        "{e}"
    );
}

#[test]
fn wrong_size_for_type() {
    let raw = Raw::new().tensor("q", &[33, 2], 8, 0).data(128);
    let e = err(&raw.bytes());
    assert!(matches!(e, GgufError::TensorSize { .. }), "{e}");
    assert!(e
        .to_string()
        .contains("not a multiple of the block length 32"));
}

#[test]
fn out_of_bounds_and_overlap() {
    let raw = Raw::new().tensor("a", &[64], 0, 0).data(100);
    let e = err(&raw.bytes());
    assert!(
        matches!(e, GgufError::TensorOutOfBounds { end, .. } if end > 100),
        "{e}"
    );
    let raw = Raw::new()
        .tensor("a", &[16], 0, 0)
        .tensor("b", &[16], 0, 32)
        .data(128);
    let e = err(&raw.bytes());
    assert!(
        matches!(e, GgufError::TensorOverlap { ref tensor, ref other, .. } if tensor == "b" && other == "a"),
        "{e}"
    );
    let raw = Raw::new().tensor("a", &[8], 0, u64::MAX / 32 * 32).data(64);
    assert!(matches!(
        err(&raw.bytes()),
        GgufError::TensorOutOfBounds { .. }
    ));
}

#[test]
fn zero_dims_and_dim_counts_and_overflow() {
    let raw = Raw::new().tensor("z", &[4, 0], 0, 0).data(32);
    assert!(matches!(
        err(&raw.bytes()),
        GgufError::ZeroDim { axis: 1, .. }
    ));
    let raw = Raw::new().tensor("d", &[1, 1, 1, 1, 1], 0, 0).data(32);
    assert!(matches!(
        err(&raw.bytes()),
        GgufError::BadDimCount { n_dims: 5, .. }
    ));
    let raw = Raw::new().tensor("d", &[], 0, 0).data(32);
    assert!(matches!(
        err(&raw.bytes()),
        GgufError::BadDimCount { n_dims: 0, .. }
    ));
    let raw = Raw::new().tensor("o", &[1 << 40, 1 << 40], 0, 0).data(32);
    assert!(err(&raw.bytes()).to_string().contains("overflows"));
}

#[test]
fn bad_alignment_and_deep_nesting() {
    let raw = Raw::new().kv_u32(b"general.alignment", 48);
    assert!(matches!(
        err(&raw.bytes()),
        GgufError::BadAlignment { value: 48 }
    ));
    let raw = Raw::new().kv_raw(b"general.alignment", 10, &(1u64 << 40).to_le_bytes());
    assert!(matches!(err(&raw.bytes()), GgufError::BadAlignment { value } if value == 1 << 40));
    let mut nested = Vec::new();
    for _ in 0..20 {
        nested.extend_from_slice(&9u32.to_le_bytes());
        nested.extend_from_slice(&1u64.to_le_bytes());
    }
    nested.extend_from_slice(&[0; 64]);
    let raw = Raw::new().kv_raw(b"deep", 9, &nested);
    assert!(matches!(
        err(&raw.bytes()),
        GgufError::NestingTooDeep { .. }
    ));
}

#[test]
fn bool_must_be_zero_or_one() {
    let raw = Raw::new().kv_raw(b"flag", 7, &[2]);
    let e = err(&raw.bytes());
    assert!(e.to_string().contains("flag"), "{e}");
}
