//! Generators for committed fixture files, so every binary fixture can be rebuilt and checked.

use bitnet_conformance::inputs::SeededRng;
use bitnet_engine::formats::{I2s, Shape, TernaryFormat, Tq1_0, Tq2_0};
use bitnet_engine::gguf::{GgmlType, GgufError, GgufWriter, Layout, Value};
use bitnet_engine::synth::{build_model, Arch, SynthError, SynthSpec, WeightFormat};
use bitnet_ffi_cpp::{
    quantize_model_file, FileType, GgmlType as RefType, QuantizeParams, RefError,
};
use std::path::{Path, PathBuf};

/// Where [`tiny_ternary_model`] is committed, relative to the fixtures root.
pub const TINY_TERNARY_MODEL: &str = "models/tiny-ternary.gguf";

/// The committed synthetic models, relative to the fixtures root, with their architecture and
/// weight format; each is [`SynthSpec::tiny`] of those.
pub const TINY_MODELS: [(&str, Arch, WeightFormat); 15] = [
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
    (
        "models/tiny-llama-tq2_0.gguf",
        Arch::Llama,
        WeightFormat::TQ2_0,
    ),
    (
        "models/tiny-llama-tq1_0.gguf",
        Arch::Llama,
        WeightFormat::TQ1_0,
    ),
    (
        "models/tiny-bitnet-b1.58-i2_s.gguf",
        Arch::BitnetB158,
        WeightFormat::I2_S,
    ),
    (
        "models/tiny-bitnet-b1.58-tq2_0.gguf",
        Arch::BitnetB158,
        WeightFormat::TQ2_0,
    ),
    (
        "models/tiny-bitnet-b1.58-tq1_0.gguf",
        Arch::BitnetB158,
        WeightFormat::TQ1_0,
    ),
    (
        "models/tiny-bitnet-tl2.gguf",
        Arch::Bitnet,
        WeightFormat::TL2,
    ),
    ("models/tiny-llama-tl2.gguf", Arch::Llama, WeightFormat::TL2),
    (
        "models/tiny-bitnet-b1.58-tl2.gguf",
        Arch::BitnetB158,
        WeightFormat::TL2,
    ),
    (
        "models/tiny-bitnet-tl1.gguf",
        Arch::Bitnet,
        WeightFormat::TL1,
    ),
    ("models/tiny-llama-tl1.gguf", Arch::Llama, WeightFormat::TL1),
    (
        "models/tiny-bitnet-b1.58-tl1.gguf",
        Arch::BitnetB158,
        WeightFormat::TL1,
    ),
];

/// Where [`f32_model`] of each architecture is committed: ternary values stored as F32.
pub const F32_MODELS: [(&str, Arch); 3] = [
    ("models/tiny-bitnet-f32.gguf", Arch::Bitnet),
    ("models/tiny-llama-f32.gguf", Arch::Llama),
    ("models/tiny-bitnet-b1.58-f32.gguf", Arch::BitnetB158),
];

/// A model of `arch` whose ternary weights are stored as F32 (as converters write them before
/// quantizing): one layer of width 128 and FFN 256, so the file stays under a megabyte.
pub fn f32_model(arch: Arch) -> Result<Vec<u8>, GenerateError> {
    let spec = SynthSpec {
        n_layer: 1,
        n_embd: 128,
        n_ff: 256,
        n_head: 2,
        n_head_kv: if arch == Arch::BitnetB158 { 1 } else { 2 },
        ..SynthSpec::tiny(arch, WeightFormat::F32)
    };
    Ok(build_model(&spec)?.to_bytes())
}

/// The committed copies of the tiny `bitnet` model that the reference's own quantizer
/// (`llama_model_quantize`) wrote from its F16 twin, relative to the fixtures root, with what was
/// asked for: the file type, and for some the type of the (tied) token embedding, which the
/// reference otherwise keeps as F16 for ternary file types.
pub const REFERENCE_QUANTIZED_MODELS: [(&str, QuantizeParams); 5] = [
    (
        "models/tiny-bitnet-refq-i2_s.gguf",
        reference_params(FileType::MOSTLY_I2_S, None),
    ),
    (
        "models/tiny-bitnet-refq-tq2_0.gguf",
        reference_params(FileType::MOSTLY_TQ2_0, None),
    ),
    (
        "models/tiny-bitnet-refq-tq1_0.gguf",
        reference_params(FileType::MOSTLY_TQ1_0, None),
    ),
    (
        "models/tiny-bitnet-refq-i2_s-q8_0-embd.gguf",
        reference_params(FileType::MOSTLY_I2_S, Some(RefType::Q8_0)),
    ),
    (
        "models/tiny-bitnet-refq-i2_s-q6k-embd.gguf",
        reference_params(FileType::MOSTLY_I2_S, Some(RefType::Q6_K)),
    ),
];

/// `llama_model_quantize`'s parameters for `file_type`, with the token embedding (the tied output
/// head of these models) in `token_embedding_type` or, for `None`, the reference's default.
const fn reference_params(
    file_type: FileType,
    token_embedding_type: Option<RefType>,
) -> QuantizeParams {
    QuantizeParams {
        file_type,
        token_embedding_type,
        output_tensor_type: None,
        pure: false,
    }
}

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
    /// The reference failed to quantize the model.
    #[error("the reference quantizer: {0}")]
    Reference(#[from] RefError),
    /// A scratch file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The scratch file.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
}

/// The bytes of [`SynthSpec::tiny`] of `arch` and `format`: two layers of width 256 with a
/// byte-level vocabulary, deterministic like every fixture here.
pub fn tiny_model(arch: Arch, format: WeightFormat) -> Result<Vec<u8>, GenerateError> {
    Ok(build_model(&SynthSpec::tiny(arch, format))?.to_bytes())
}

/// The bytes the reference's `llama_model_quantize` writes with `params` from the F16 twin of
/// [`SynthSpec::tiny`] (`bitnet`). The F16 source and the output pass through `scratch`, a
/// directory the caller owns.
///
/// The quantizer leaves the padding after each I2_S tensor's scale uninitialised (whatever its
/// heap held), which no reader looks at; it is zeroed here so the fixture is reproducible.
pub fn reference_quantized_model(
    reference: &bitnet_ffi_cpp::Backend,
    params: &QuantizeParams,
    scratch: &Path,
) -> Result<Vec<u8>, GenerateError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| GenerateError::Io { path, source }
    };
    let source = scratch.join("tiny-bitnet-f16.gguf");
    let embedding = params
        .token_embedding_type
        .map_or_else(|| "default".to_string(), |ty| ty.0.to_string());
    let output = scratch.join(format!(
        "tiny-bitnet-ftype{}-embd-{embedding}.gguf",
        params.file_type.0
    ));
    std::fs::write(&source, tiny_model(Arch::Bitnet, WeightFormat::F16)?).map_err(io(&source))?;
    quantize_model_file(reference, &source, &output, params)?;
    let mut bytes = std::fs::read(&output).map_err(io(&output))?;
    zero_i2s_padding(&mut bytes)?;
    Ok(bytes)
}

/// Zeroes the bytes of every I2_S tensor past its codes and f32 scale.
fn zero_i2s_padding(file: &mut [u8]) -> Result<(), GenerateError> {
    let layout = Layout::parse(file)?;
    for tensor in layout.tensors.iter().filter(|t| t.ty == GgmlType::I2_S) {
        let start = tensor.file_offset + tensor.n_elements() / 4 + 4;
        let end = tensor.file_offset + tensor.n_bytes;
        let file_len = file.len() as u64;
        let padding = usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(start, end)| file.get_mut(start..end))
            .ok_or_else(|| GgufError::TensorOutOfBounds {
                tensor: tensor.name.clone(),
                start,
                end,
                file_len,
            })?;
        padding.fill(0);
    }
    Ok(())
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
