//! Models whose ternary weights are TL1 or TL2: tilings from `kernel_config.ini` or file
//! metadata, and logits against the I2_S twin of the same master weights.

use std::path::{Path, PathBuf};

use bitnet_engine::formats::{Tl1Tiling, Tl2Tiling};
use bitnet_engine::gguf::{Array, GgufFile, Value, ValueType};
use bitnet_engine::model::{
    argmax, Model, ModelError, ModelOptions, Session, TilingConfigError, Tl1Tilings, Tl2Tilings,
};
use bitnet_engine::synth::{
    build_model, tl1_tilings_of, tl2_tiling_rule, tl2_tilings_of, Arch, SynthSpec, WeightFormat,
};

const PROMPT: [u32; 12] = [264, 72, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100];

/// One layer of width 256, FFN 512: every linear shape has a TL2 tiling with a pair part.
fn spec(arch: Arch, format: WeightFormat) -> SynthSpec {
    SynthSpec {
        n_layer: 1,
        ..SynthSpec::tiny(arch, format)
    }
}

fn write(dir: &Path, spec: &SynthSpec) -> PathBuf {
    let path = dir.join(format!("{}-{:?}.gguf", spec.arch.name(), spec.format));
    build_model(spec).unwrap().write_file(&path).unwrap();
    path
}

fn logits(model: &Model) -> Vec<f32> {
    Session::new(model, 32)
        .eval(&PROMPT, true)
        .unwrap()
        .as_slice()
        .to_vec()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot = |x: &[f32], y: &[f32]| {
        x.iter()
            .zip(y)
            .map(|(&p, &q)| f64::from(p) * f64::from(q))
            .sum::<f64>()
    };
    dot(a, b) / (dot(a, a) * dot(b, b)).sqrt()
}

/// The tilings of `spec` as a `kernel_config.ini`, with uppercase keys as the code generator
/// writes them.
fn ini_of(spec: &SynthSpec) -> String {
    let sections: Vec<_> = match spec.format {
        WeightFormat::TL1 => tl1_tilings_of(spec)
            .unwrap()
            .iter()
            .map(|(shape, t)| (shape, t.tile_rows, t.tile_cols, t.simd_rows))
            .collect(),
        _ => tl2_tilings_of(spec)
            .unwrap()
            .iter()
            .map(|(shape, t)| (shape, t.tile_rows, t.tile_cols, 32))
            .collect(),
    };
    sections
        .into_iter()
        .enumerate()
        .map(|(i, ((m, k), bm, bk, bmm))| {
            format!("[Kernels_{i}]\nM = {m}\nK = {k}\nBM = {bm}\nBK = {bk}\nbmm = {bmm}\n\n")
        })
        .collect()
}

/// `path`'s bytes with the tiling keys renamed out of the `bitnet.<format>.tiling.` prefix (same
/// length), as a file converted by bitnet.cpp would lack them.
fn without_tiling_keys(path: &Path, dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(path).unwrap();
    let (from, to) = (b".tiling.", b".tilinX.");
    let mut renamed = 0;
    for i in 0..bytes.len() - from.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + to.len()].copy_from_slice(to);
            renamed += 1;
        }
    }
    assert!(renamed > 0);
    let out = dir.join("no-tilings.gguf");
    std::fs::write(&out, bytes).unwrap();
    out
}

fn options_with(tl1_tilings: Tl1Tilings, tl2_tilings: Tl2Tilings) -> ModelOptions {
    ModelOptions {
        tl1_tilings,
        tl2_tilings,
        ..ModelOptions::default()
    }
}

#[test]
fn a_kernel_config_parses_with_comments_and_any_key_case() {
    let text = "; generated\n[Kernels_0]\nM = 1536\nK = 4096\nBM = 256\nBK = 96\nbmm = 32\n\n\
                # second\n[Kernels_1]\nm: 1536\nk: 1536\nbm: 128\nbk: 192\nbmm: 32\nextra = x\n";
    let table = Tl2Tilings::parse_ini(text).unwrap();
    let tl1 = Tl1Tilings::parse_ini(&text.replace("bmm: 32", "bmm: 64")).unwrap();
    assert_eq!(tl1.get(1536, 1536), Some(Tl1Tiling::new(128, 192, 64)));
    assert_eq!(tl1.get(1536, 4096), Some(Tl1Tiling::new(256, 96, 32)));
    let tiling = |tile_rows, tile_cols| Tl2Tiling {
        tile_rows,
        tile_cols,
    };
    assert_eq!(table.get(1536, 4096), Some(tiling(256, 96)));
    assert_eq!(table.get(1536, 1536), Some(tiling(128, 192)));
    assert_eq!(table.get(4096, 1536), None);
    assert_eq!(table.iter().count(), 2);
}

#[test]
fn kernel_config_errors_name_the_line_and_the_problem() {
    let case = |text: &str| Tl2Tilings::parse_ini(text).unwrap_err();
    let head = "[Kernels_0]\nm = 256\nk = 256\nbm = 128\n";
    assert!(matches!(
        case("m = 1\n"),
        TilingConfigError::KeyOutsideSection { line: 1, .. }
    ));
    assert!(matches!(
        case(&format!("{head}this is not ini\n")),
        TilingConfigError::Syntax { line: 5, .. }
    ));
    let err = case(&format!("{head}bk = ninety\nbmm = 32\n"));
    assert!(
        matches!(err, TilingConfigError::BadValue { line: 5, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("line 5"), "{err}");
    let err = case(&format!("{head}bmm = 32\n"));
    assert!(
        matches!(
            err,
            TilingConfigError::MissingKey {
                key: "bk",
                line: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("[Kernels_0]"), "{err}");
    assert!(matches!(
        case(&format!("{head}bk = 96\nbm = 64\nbmm = 32\n")),
        TilingConfigError::DuplicateKey { line: 6, .. }
    ));
    assert!(matches!(
        case(&format!("{head}bk = 96\nbmm = 64\n")),
        TilingConfigError::UnsupportedBmm {
            line: 6,
            bmm: 64,
            ..
        }
    ));
    let twice = format!(
        "{head}bk = 96\nbmm = 32\n\n{}bk = 192\nbmm = 32\n",
        head.replace('0', "1")
    );
    assert!(matches!(
        case(&twice),
        TilingConfigError::DuplicateShape {
            line: 8,
            first_line: 1,
            rows: 256,
            cols: 256,
            ..
        }
    ));
    let missing = Tl2Tilings::from_ini_file("/nonexistent/kernel_config.ini").unwrap_err();
    assert!(matches!(missing, TilingConfigError::Io { .. }));
}

/// A generated file of `format`: its file type and the ggml type of its block weights.
fn open_generated(dir: &Path, format: WeightFormat, file_type: u32) -> (SynthSpec, GgufFile) {
    let spec = spec(Arch::Bitnet, format);
    let file = GgufFile::open(write(dir, &spec)).unwrap();
    assert_eq!(
        file.metadata().get_opt_u32("general.file_type").unwrap(),
        Some(file_type)
    );
    assert_eq!(
        file.tensor_info("blk.0.ffn_down.weight").unwrap().ty,
        format.ggml_type()
    );
    (spec, file)
}

#[test]
fn files_record_their_tilings_and_type_table() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, file) = open_generated(dir.path(), WeightFormat::TL1, 38);
    let recorded = Tl1Tilings::from_metadata(file.metadata()).unwrap();
    assert_eq!(recorded, tl1_tilings_of(&spec).unwrap());
    assert_eq!(recorded.get(512, 256), Some(Tl1Tiling::new(256, 128, 32)));
    assert!(file.metadata().get(&Tl1Tilings::key(512, 256)).is_some());
    assert!(Tl2Tilings::from_metadata(file.metadata())
        .unwrap()
        .is_empty());

    let (spec, file) = open_generated(dir.path(), WeightFormat::TL2, 39);
    let recorded = Tl2Tilings::from_metadata(file.metadata()).unwrap();
    assert_eq!(recorded, tl2_tilings_of(&spec).unwrap());
    assert_eq!(recorded.get(512, 256), Some(Tl2Tiling::new(128, 96)));
    assert!(file.metadata().get(&Tl2Tilings::key(512, 256)).is_some());
    assert!(Tl1Tilings::from_metadata(file.metadata())
        .unwrap()
        .is_empty());
}

#[test]
fn lut_logits_follow_the_i2s_twin() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [Arch::Bitnet, Arch::BitnetB158]
        .into_iter()
        .flat_map(|arch| [(arch, WeightFormat::TL1), (arch, WeightFormat::TL2)]);
    for (arch, format) in cases {
        let tl2 = Model::load(
            write(dir.path(), &spec(arch, format)),
            &ModelOptions::default(),
        )
        .unwrap();
        let i2s = Model::load(
            write(dir.path(), &spec(arch, WeightFormat::I2_S)),
            &ModelOptions::default(),
        )
        .unwrap();
        assert_eq!(tl2.layers()[0].wq.ty(), format.ggml_type());
        let (a, b) = (logits(&tl2), logits(&i2s));
        assert!(a.iter().all(|v| v.is_finite()), "{arch:?}");
        let n_vocab = tl2.n_vocab();
        let mut agree = 0;
        for (pos, (x, y)) in a.chunks(n_vocab).zip(b.chunks(n_vocab)).enumerate() {
            // Both formats hold the same codes and scale and quantize each token to int8 with
            // 127 / max|x|; they differ only where f32 and f64 division (or I2_S's 1e-5 floor)
            // round a value to a neighbouring integer, one step of max|x| / 127 in a few of
            // hundreds of terms: a relative change of a product far below 1e-3, so the logits
            // keep a cosine of at least 0.999 (on these weights they agree to the bit).
            let c = cosine(x, y);
            assert!(c >= 0.999, "{arch:?} position {pos}: cosine {c}");
            agree += usize::from(argmax(x) == argmax(y));
        }
        assert!(
            agree * 10 >= PROMPT.len() * 9,
            "{arch:?}: argmax agrees on {agree}"
        );
    }
}

#[test]
fn a_lut_tensor_without_tiling_is_a_typed_error_and_a_kernel_config_fixes_it() {
    for (format, name) in [(WeightFormat::TL1, "tl1"), (WeightFormat::TL2, "tl2")] {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(Arch::BitnetB158, format);
        let with_keys = write(dir.path(), &spec);
        let bare = without_tiling_keys(&with_keys, dir.path());
        let err = Model::load(&bare, &ModelOptions::default())
            .err()
            .expect("no tiling");
        let ModelError::MissingTiling {
            format: named,
            tensor,
            rows,
            cols,
        } = &err
        else {
            panic!("{err}");
        };
        assert_eq!((*named, tensor.as_str()), (name, "blk.0.attn_q.weight"));
        assert_eq!((*rows, *cols), (256, 256));
        let message = err.to_string();
        assert!(message.contains("kernel_config.ini"), "{message}");
        assert!(message.contains("m = 256, k = 256"), "{message}");
        assert!(message.contains(&format!("--{name}-config")), "{message}");

        let options = match format {
            WeightFormat::TL1 => options_with(
                Tl1Tilings::parse_ini(&ini_of(&spec)).unwrap(),
                Tl2Tilings::new(),
            ),
            _ => options_with(
                Tl1Tilings::new(),
                Tl2Tilings::parse_ini(&ini_of(&spec)).unwrap(),
            ),
        };
        let fixed = Model::load(&bare, &options).unwrap();
        let original = Model::load(&with_keys, &ModelOptions::default()).unwrap();
        assert_eq!(logits(&fixed), logits(&original), "{name}");
    }
}

#[test]
fn option_tilings_override_the_file_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(Arch::Bitnet, WeightFormat::TL2);
    let good = write(dir.path(), &spec);
    let (rows, cols) = (spec.n_ff, spec.n_embd);
    let mut w = build_model(&spec).unwrap();
    // BM = 48 is not a multiple of 32: the file's own tiling of the FFN gate/up shape is broken.
    w.set(
        &Tl2Tilings::key(rows, cols),
        Value::Array(Array {
            elem: ValueType::U32,
            items: vec![Value::U32(48), Value::U32(96)],
        }),
    )
    .unwrap();
    let broken = dir.path().join("broken.gguf");
    w.write_file(&broken).unwrap();
    let err = Model::load(&broken, &ModelOptions::default())
        .err()
        .expect("bad tiling");
    assert!(
        matches!(&err, ModelError::Format { tensor, .. } if tensor == "blk.0.ffn_gate.weight"),
        "{err}"
    );
    let mut fix = Tl2Tilings::new();
    fix.insert(rows, cols, tl2_tiling_rule(rows, cols).unwrap());
    let model = Model::load(&broken, &options_with(Tl1Tilings::new(), fix)).unwrap();
    let reference = Model::load(&good, &ModelOptions::default()).unwrap();
    assert_eq!(logits(&model), logits(&reference));
}

#[test]
fn malformed_tiling_metadata_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = build_model(&spec(Arch::Bitnet, WeightFormat::TL2)).unwrap();
    w.set("bitnet.tl2.tiling.256_256", Value::U32(128)).unwrap();
    let path = dir.path().join("m.gguf");
    w.write_file(&path).unwrap();
    let err = Model::load(&path, &ModelOptions::default())
        .err()
        .expect("malformed");
    assert!(
        matches!(
            err,
            ModelError::TilingConfig(TilingConfigError::Metadata { .. })
        ),
        "{err}"
    );
    let mut w = build_model(&spec(Arch::Bitnet, WeightFormat::TL1)).unwrap();
    // A TL1 tiling needs three numbers.
    w.set(
        &Tl1Tilings::key(256, 256),
        Value::Array(Array {
            elem: ValueType::U32,
            items: vec![Value::U32(128), Value::U32(64)],
        }),
    )
    .unwrap();
    w.write_file(&path).unwrap();
    let err = Model::load(&path, &ModelOptions::default())
        .err()
        .expect("malformed");
    assert!(err.to_string().contains("[BM, BK, bmm]"), "{err}");
}
