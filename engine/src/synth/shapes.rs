//! Full-size model shapes for benchmarks: the weights are synthetic, the shapes real.

use super::spec::{Arch, SynthSpec, VocabSource, WeightFormat};

impl SynthSpec {
    /// The shapes of BitNet-b1.58-2B-4T: 30 layers of width 2560, FFN 6912, 20 query and 5 KV
    /// heads of 128, a 128256-token vocabulary with a tied F16 embedding, I2_S weights, RoPE
    /// base 500000, RMSNorm epsilon 1e-5, context 4096 (about 1.2 GB). `arch` is `bitnet` for
    /// runs beside the pinned reference (which knows no `bitnet-b1.58`), `bitnet-b1.58` for the
    /// real model's graph.
    pub fn bitnet_2b_4t(arch: Arch) -> Self {
        SynthSpec {
            arch,
            format: WeightFormat::I2_S,
            embd_f16: true,
            n_layer: 30,
            n_embd: 2560,
            n_ff: 6912,
            n_head: 20,
            n_head_kv: 5,
            n_ctx: 4096,
            vocab: VocabSource::ByteLevelPadded(128_256),
            seed: 2_404,
            rope_base: 500_000.0,
            eps: 1e-5,
        }
    }

    /// A 0.65 B-parameter model of the same family for quick runs: 24 layers of width 1536, FFN
    /// 4096, 12 query and 4 KV heads of 128, a 32000-token vocabulary with a tied F16 embedding,
    /// I2_S weights, context 4096 (about 250 MB).
    pub fn bitnet_700m(arch: Arch) -> Self {
        SynthSpec {
            n_layer: 24,
            n_embd: 1536,
            n_ff: 4096,
            n_head: 12,
            n_head_kv: 4,
            vocab: VocabSource::ByteLevelPadded(32_000),
            seed: 700,
            ..Self::bitnet_2b_4t(arch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn benchmark_shapes_are_valid_and_have_128_wide_heads() {
        for arch in [Arch::Bitnet, Arch::BitnetB158] {
            for spec in [SynthSpec::bitnet_2b_4t(arch), SynthSpec::bitnet_700m(arch)] {
                spec.validate().unwrap();
                assert_eq!(spec.head_dim(), 128);
                assert_eq!(spec.arch, arch);
            }
        }
    }
}
