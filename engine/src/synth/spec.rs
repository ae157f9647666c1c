//! What a synthetic model looks like.

use std::path::PathBuf;

use crate::gguf::GgmlType;

/// The graph family, named as in `general.architecture`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// `bitnet`: sub-norms, SiLU-gated FFN (1bitLLM bitnet_b1_58).
    Bitnet,
    /// `bitnet-b1.58`: sub-norms, ReLU²-gated FFN, GQA (BitNet-b1.58-2B-4T).
    BitnetB158,
    /// `llama`: no sub-norms, SiLU-gated FFN.
    Llama,
}

impl Arch {
    /// Every architecture.
    pub const ALL: [Arch; 3] = [Arch::Bitnet, Arch::BitnetB158, Arch::Llama];

    /// The `general.architecture` string.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Bitnet => "bitnet",
            Arch::BitnetB158 => "bitnet-b1.58",
            Arch::Llama => "llama",
        }
    }

    /// Every `general.architecture` string [`Arch::from_name`] accepts.
    pub const NAMES: [&'static str; 4] = ["bitnet", "bitnet-b1.58", "bitnet-25", "llama"];

    /// The architecture of a `general.architecture` string (`bitnet-25` is an alias of
    /// `bitnet-b1.58`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "bitnet" => Some(Arch::Bitnet),
            "bitnet-b1.58" | "bitnet-25" => Some(Arch::BitnetB158),
            "llama" => Some(Arch::Llama),
            _ => None,
        }
    }

    /// Whether the blocks have `attn_sub_norm` and `ffn_sub_norm`.
    pub fn has_sub_norms(self) -> bool {
        !matches!(self, Arch::Llama)
    }
}

/// How the linear layers of the blocks are stored.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    /// bitnet.cpp's I2_S (2 bits, one scale per tensor).
    I2_S,
    /// bitnet.cpp's TL1 (ARM lookup-table format, one scale per tensor), tiled per shape by
    /// [`super::tl1_tiling_rule`]; the file records the tilings in `bitnet.tl1.tiling.*` keys.
    TL1,
    /// bitnet.cpp's TL2 (lookup-table format, one scale per tensor), tiled per shape by
    /// [`super::tl2_tiling_rule`]; the file records the tilings in `bitnet.tl2.tiling.*` keys.
    TL2,
    /// ggml's TQ1_0.
    TQ1_0,
    /// ggml's TQ2_0.
    TQ2_0,
    /// Ternary values stored as f32.
    F32,
    /// Ternary values stored as f16.
    F16,
}

impl WeightFormat {
    /// Every format.
    pub const ALL: [WeightFormat; 7] = [
        WeightFormat::I2_S,
        WeightFormat::TL1,
        WeightFormat::TL2,
        WeightFormat::TQ1_0,
        WeightFormat::TQ2_0,
        WeightFormat::F32,
        WeightFormat::F16,
    ];

    /// The tensor type.
    pub fn ggml_type(self) -> GgmlType {
        match self {
            WeightFormat::I2_S => GgmlType::I2_S,
            WeightFormat::TL1 => GgmlType::TL1,
            WeightFormat::TL2 => GgmlType::TL2,
            WeightFormat::TQ1_0 => GgmlType::TQ1_0,
            WeightFormat::TQ2_0 => GgmlType::TQ2_0,
            WeightFormat::F32 => GgmlType::F32,
            WeightFormat::F16 => GgmlType::F16,
        }
    }

    /// The `general.file_type` (`llama_ftype`) of a model whose blocks use this format; TL1, TL2
    /// and I2_S use bitnet.cpp's `LLAMA_FTYPE_MOSTLY_TL1` (38), `LLAMA_FTYPE_MOSTLY_TL2` (39) and
    /// `LLAMA_FTYPE_MOSTLY_I2_S` (40).
    pub fn file_type(self) -> u32 {
        match self {
            WeightFormat::F32 => 0,
            WeightFormat::F16 => 1,
            WeightFormat::TQ1_0 => 36,
            WeightFormat::TQ2_0 => 37,
            WeightFormat::TL1 => 38,
            WeightFormat::TL2 => 39,
            WeightFormat::I2_S => 40,
        }
    }

    /// The row-length multiple the format needs (TL1 and TL2 have further per-shape constraints,
    /// checked by [`super::tl1_tiling_rule`] and [`super::tl2_tiling_rule`]).
    pub fn row_multiple(self) -> usize {
        match self {
            WeightFormat::I2_S => 128,
            WeightFormat::TL1 => 4,
            WeightFormat::TL2 => 32,
            WeightFormat::TQ1_0 | WeightFormat::TQ2_0 => 256,
            WeightFormat::F32 | WeightFormat::F16 => 1,
        }
    }
}

/// Where the tokenizer of a synthetic model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VocabSource {
    /// Copy every `tokenizer.*` key of this GGUF file.
    Gguf(PathBuf),
    /// The small GPT-2 byte-level vocabulary of [`super::byte_level_vocab`].
    ByteLevel,
    /// The byte-level vocabulary padded with unused placeholder tokens to this many entries:
    /// for benchmark models, where only the vocabulary size matters.
    ByteLevelPadded(usize),
}

/// A synthetic model: shapes, formats, vocabulary and seed.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSpec {
    /// The graph family.
    pub arch: Arch,
    /// Format of the block linear layers.
    pub format: WeightFormat,
    /// Store `token_embd` as f16 (true) or f32.
    pub embd_f16: bool,
    /// Number of blocks.
    pub n_layer: usize,
    /// Model width.
    pub n_embd: usize,
    /// FFN width.
    pub n_ff: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// Training context length (`context_length`).
    pub n_ctx: usize,
    /// The tokenizer.
    pub vocab: VocabSource,
    /// Seed of the weights.
    pub seed: u64,
    /// RoPE frequency base.
    pub rope_base: f32,
    /// RMSNorm epsilon.
    pub eps: f32,
}

impl SynthSpec {
    /// A tiny model (2 layers, width 256, FFN 512, 4 heads of 64, context 128, byte-level
    /// vocabulary) of the given architecture and format; `bitnet-b1.58` gets 2 KV heads.
    pub fn tiny(arch: Arch, format: WeightFormat) -> Self {
        SynthSpec {
            arch,
            format,
            embd_f16: true,
            n_layer: 2,
            n_embd: 256,
            n_ff: 512,
            n_head: 4,
            n_head_kv: if arch == Arch::BitnetB158 { 2 } else { 4 },
            n_ctx: 128,
            vocab: VocabSource::ByteLevel,
            seed: 42,
            rope_base: 10000.0,
            eps: 1e-5,
        }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Checks that the shapes fit each other and the weight format.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("n_layer", self.n_layer),
            ("n_embd", self.n_embd),
            ("n_ff", self.n_ff),
            ("n_head", self.n_head),
            ("n_head_kv", self.n_head_kv),
            ("n_ctx", self.n_ctx),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be positive"));
        }
        if !self.n_embd.is_multiple_of(self.n_head) || !self.head_dim().is_multiple_of(2) {
            return Err(format!(
                "n_embd {} must split into {} heads of even width",
                self.n_embd, self.n_head
            ));
        }
        if !self.n_head.is_multiple_of(self.n_head_kv) {
            return Err(format!(
                "n_head {} is not a multiple of n_head_kv {}",
                self.n_head, self.n_head_kv
            ));
        }
        let m = self.format.row_multiple();
        if !self.n_embd.is_multiple_of(m) || !self.n_ff.is_multiple_of(m) {
            return Err(format!(
                "{:?} needs n_embd ({}) and n_ff ({}) to be multiples of {m}",
                self.format, self.n_embd, self.n_ff
            ));
        }
        let fits = match self.format {
            WeightFormat::TL1 => |rows, cols| super::tl1_tiling_rule(rows, cols).is_some(),
            WeightFormat::TL2 => |rows, cols| super::tl2_tiling_rule(rows, cols).is_some(),
            _ => |_, _| true,
        };
        for (rows, cols) in self.linear_shapes() {
            if !fits(rows, cols) {
                return Err(format!(
                    "no {:?} tiling fits {rows} rows × {cols} columns",
                    self.format
                ));
            }
        }
        Ok(())
    }

    /// The `(rows, columns)` of the block linear layers: attention Q/output, K/V, FFN gate/up
    /// and FFN down.
    pub fn linear_shapes(&self) -> [(usize, usize); 4] {
        let n_embd_kv = self.head_dim() * self.n_head_kv;
        [
            (self.n_embd, self.n_embd),
            (n_embd_kv, self.n_embd),
            (self.n_ff, self.n_embd),
            (self.n_embd, self.n_ff),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_parses_and_every_arch_is_listed() {
        for name in Arch::NAMES {
            assert!(Arch::from_name(name).is_some(), "{name}");
        }
        for arch in Arch::ALL {
            assert!(Arch::NAMES.contains(&arch.name()), "{arch:?}");
        }
        assert_eq!(Arch::from_name("bitnet-25"), Some(Arch::BitnetB158));
        assert_eq!(Arch::from_name("gpt2"), None);
    }
}
