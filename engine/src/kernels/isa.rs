//! Instruction-set selection for the CPU kernels.

use std::str::FromStr;

use super::table::DotKernels;
use super::{KernelError, StreamPrefetch};

/// An instruction set the kernels are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable scalar reference code.
    Scalar,
    /// x86-64 AVX2 with FMA and F16C.
    Avx2,
    /// x86-64 AVX2 with AVX-VNNI (`vpdpbusd` on 256-bit registers) for the int8 cores.
    AvxVnni,
    /// x86-64 AVX-512 F + BW (needs AVX2 too).
    Avx512,
    /// x86-64 AVX-512 with VNNI (`vpdpbusd`) for the int8 cores.
    Avx512Vnni,
    /// AArch64 NEON.
    Neon,
}

impl Isa {
    /// Every ISA, from the most portable.
    pub const ALL: [Isa; 6] = [
        Isa::Scalar,
        Isa::Avx2,
        Isa::AvxVnni,
        Isa::Avx512,
        Isa::Avx512Vnni,
        Isa::Neon,
    ];

    /// The lower-case name used in reports (`"scalar"`, `"avx2"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::AvxVnni => "avxvnni",
            Isa::Avx512 => "avx512",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::Neon => "neon",
        }
    }

    /// How this ISA's one-token products ask for the weight rows they stream on this CPU; `None`
    /// for the ISAs whose kernels leave streams to the hardware prefetcher.
    pub fn stream_prefetch(self) -> Option<StreamPrefetch> {
        match self {
            Isa::Scalar | Isa::Neon => None,
            Isa::Avx2 | Isa::AvxVnni | Isa::Avx512 | Isa::Avx512Vnni => {
                Some(StreamPrefetch::for_this_cpu())
            }
        }
    }

    /// Whether this CPU can run the ISA's kernels.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => super::x86::avx2::is_supported(),
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => super::x86::avx_vnni::is_supported(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => super::x86::avx512::is_supported(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => super::x86::avx512::is_supported_vnni(),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            _ => false,
        }
    }

    /// The ISAs this CPU supports, from the most portable.
    pub fn supported() -> Vec<Isa> {
        Isa::ALL
            .into_iter()
            .filter(|isa| isa.is_supported())
            .collect()
    }

    /// The fastest supported ISA.
    pub fn best() -> Isa {
        Isa::supported().last().copied().unwrap_or(Isa::Scalar)
    }

    /// The dot-product kernels of this ISA, or `None` when the CPU lacks it.
    pub fn dots(self) -> Option<&'static DotKernels> {
        match self {
            Isa::Scalar => Some(&super::table::SCALAR),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => super::x86::avx2::kernels(),
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => super::x86::avx_vnni::kernels(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => super::x86::avx512::kernels(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => super::x86::avx512::kernels_vnni(),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => super::neon::kernels(),
            _ => None,
        }
    }
}

impl FromStr for Isa {
    type Err = KernelError;

    /// Parses a name of [`Isa::name`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Isa::ALL
            .into_iter()
            .find(|isa| isa.name() == s)
            .ok_or_else(|| KernelError::UnknownIsa {
                name: s.to_string(),
                known: Isa::ALL.map(Isa::name).join(", "),
            })
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_known_ones() {
        for isa in Isa::ALL {
            assert_eq!(isa.name().parse::<Isa>().unwrap(), isa);
        }
        let err = "avx1024".parse::<Isa>().unwrap_err().to_string();
        assert!(err.contains("`avx1024`"), "{err}");
        assert!(
            err.contains("scalar, avx2, avxvnni, avx512, avx512vnni, neon"),
            "{err}"
        );
    }
}
