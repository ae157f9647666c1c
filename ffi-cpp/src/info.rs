//! What reference this crate was built against, for reports that must be reproducible.

use crate::bindings as sys;
use crate::convert::owned_string;

use std::fmt;
use std::sync::OnceLock;

/// Where the reference came from and how it was compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ReferenceInfo {
    /// How the sources were found (pinned crates.io package or `BITNET_CPP_DIR`).
    pub source: &'static str,
    /// Package version or the BitNet and llama.cpp commits.
    pub version: &'static str,
    /// Hash of every source and header file compiled.
    pub fingerprint: &'static str,
    /// C and C++ compilers with their versions.
    pub compiler: &'static str,
    /// Flags of the C translation units (include paths omitted).
    pub c_flags: &'static str,
    /// Flags of the C++ translation units (include paths omitted).
    pub cpp_flags: &'static str,
    /// Instruction-set extensions the compiler targeted.
    pub isa: &'static str,
    /// The reference's own report of its compiled-in CPU features.
    pub system_info: String,
    /// The `general.architecture` names its model loader accepts.
    pub architectures: Vec<&'static str>,
}

/// Describes the reference linked into this crate.
pub fn reference_info() -> ReferenceInfo {
    static SYSTEM_INFO: OnceLock<String> = OnceLock::new();
    let system_info = SYSTEM_INFO.get_or_init(|| {
        // SAFETY: llama_print_system_info returns a NUL-terminated static buffer that it
        // rewrites on every call; the OnceLock makes this the only call.
        unsafe { owned_string(sys::bnref_system_info()) }
            .trim()
            .to_string()
    });
    ReferenceInfo {
        source: env!("BNREF_SOURCE"),
        version: env!("BNREF_VERSION"),
        fingerprint: env!("BNREF_FINGERPRINT"),
        compiler: env!("BNREF_COMPILER"),
        c_flags: env!("BNREF_C_FLAGS"),
        cpp_flags: env!("BNREF_CPP_FLAGS"),
        isa: env!("BNREF_ISA"),
        system_info: system_info.clone(),
        architectures: env!("BNREF_ARCHITECTURES").split(',').collect(),
    }
}

impl fmt::Display for ReferenceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "source:      {}", self.source)?;
        writeln!(f, "version:     {}", self.version)?;
        writeln!(f, "fingerprint: {}", self.fingerprint)?;
        writeln!(f, "compiler:    {}", self.compiler)?;
        writeln!(f, "C flags:     {}", self.c_flags)?;
        writeln!(f, "C++ flags:   {}", self.cpp_flags)?;
        writeln!(f, "ISA:         {}", self.isa)?;
        writeln!(f, "archs:       {}", self.architectures.join(", "))?;
        write!(f, "system info: {}", self.system_info)
    }
}
