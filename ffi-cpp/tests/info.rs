//! The description of the linked reference.

use bitnet_ffi_cpp::reference_info;

#[test]
fn reference_info_describes_the_build() {
    let info = reference_info();
    assert!(info.source.contains("bitnet-cpp-sys 0.0.5") || info.source.contains("BITNET_CPP_DIR"));
    assert!(!info.version.is_empty());
    assert!(info.fingerprint.starts_with("fnv1a64:"));
    assert!(info.c_flags.contains("-O3") && info.c_flags.contains("-DNDEBUG"));
    assert!(info.cpp_flags.contains("-std=gnu++17"));
    assert!(!info.compiler.is_empty());
    if cfg!(target_arch = "x86_64") && std::is_x86_feature_detected!("avx2") {
        assert!(info.isa.split(' ').any(|f| f == "AVX2"), "{}", info.isa);
        assert!(
            info.system_info.contains("AVX2 = 1"),
            "{}",
            info.system_info
        );
    }
    assert!(
        info.architectures.contains(&"bitnet") && info.architectures.contains(&"llama"),
        "{:?}",
        info.architectures
    );
    assert!(!info.architectures.contains(&"(unknown)"));
    let text = info.to_string();
    assert!(text.starts_with("source:") && text.contains(info.fingerprint));
}
