//! Generators for committed fixture files, so every binary fixture can be rebuilt and checked.

use bitnet_conformance::inputs::SeededRng;
use bitnet_engine::formats::{I2s, Shape, TernaryFormat, Tq1_0, Tq2_0};
use bitnet_engine::gguf::{GgmlType, GgufError, GgufWriter, Value};
use bitnet_engine::synth::{build_model, Arch, SynthError, SynthSpec, WeightFormat};

/// Where [`tiny_ternary_model`] is committed, relative to the fixtures root.
pub const TINY_TERNARY_MODEL: &str = "models/tiny-ternary.gguf";

/// The committed synthetic models, relative to the fixtures root, with their architecture and
/// weight format; each is [`SynthSpec::tiny`] of those.
pub const TINY_MODELS: [(&str, Arch, WeightFormat); 4] = [
    (
        "models/tiny-bitnet-i2_s.gguf",
        Arch::Bitnet,
        WeightFormat::I2_S,
    ),
    (
        "models/tiny-bitnet-tq2_0.gguf",
        Arch::Bitnet,
        WeightFormat::TQ2_0,
    ),
    (
        "models/tiny-bitnet-tq1_0.gguf",
        Arch::Bitnet,
        WeightFormat::TQ1_0,
    ),
    (
        "models/tiny-llama-i2_s.gguf",
        Arch::Llama,
        WeightFormat::I2_S,
    ),
];

/// Why a fixture could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// Packing weights failed.
    #[error("packing `{tensor}`: {message}")]
    Pack {
        /// The tensor.
        tensor: &'static str,
        /// What the format said.
        message: String,
    },
    /// Building the GGUF file failed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// Building a synthetic model failed.
    #[error(transparent)]
    Synth(#[from] SynthError),
}

/// The bytes of [`SynthSpec::tiny`] of `arch` and `format`: two layers of width 256 with a
/// byte-level vocabulary, deterministic like every fixture here.
pub fn tiny_model(arch: Arch, format: WeightFormat) -> Result<Vec<u8>, GenerateError> {
    Ok(build_model(&SynthSpec::tiny(arch, format))?.to_bytes())
}

/// A small GGUF file with one tensor of each ternary format (I2_S, TQ1_0, TQ2_0) beside F32
/// tensors of odd sizes, on a 64-byte alignment, so offsets, padding and per-type sizes are all
/// exercised. Deterministic: the same bytes on every run and platform.
pub fn tiny_ternary_model() -> Result<Vec<u8>, GenerateError> {
    let mut writer = GgufWriter::new();
    writer.set("general.architecture", Value::String("bitnet-b1.58".into()))?;
    writer.set("general.name", Value::String("tiny ternary fixture".into()))?;
    writer.set("general.alignment", Value::U32(64))?;
    let mut rng = SeededRng::new(0x5EED);
    let mut values = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.gaussian() as f32).collect() };

    let embd = values(24 * 7);
    writer.add_tensor(
        "token_embd.weight",
        GgmlType::F32,
        &[24, 7],
        f32_bytes(&embd),
    )?;
    let packed: [(&'static str, &dyn TernaryFormat, GgmlType, Shape); 3] = [
        (
            "blk.0.attn_q.weight",
            &I2s,
            GgmlType::I2_S,
            Shape::new(128, 6),
        ),
        (
            "blk.0.ffn_up.weight",
            &Tq2_0,
            GgmlType::TQ2_0,
            Shape::new(256, 3),
        ),
        (
            "blk.0.ffn_down.weight",
            &Tq1_0,
            GgmlType::TQ1_0,
            Shape::new(256, 5),
        ),
    ];
    for (name, format, ty, shape) in packed {
        let weights = values(shape.ne0 * shape.ne1);
        let bytes = format
            .quantize(&weights, shape)
            .map_err(|e| GenerateError::Pack {
                tensor: name,
                message: e.to_string(),
            })?;
        writer.add_tensor(name, ty, &[shape.ne0 as u64, shape.ne1 as u64], bytes)?;
    }
    let norm = values(13);
    writer.add_tensor("output_norm.weight", GgmlType::F32, &[13], f32_bytes(&norm))?;
    Ok(writer.to_bytes())
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}
