//! Compiling the reference and the shim into one static library.

use crate::object_cache::ObjectCache;
use crate::sources::{self, ReferenceSources};
use crate::tl2::{self, Tl2};

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;

/// Defines the reference's own build uses on Linux (ggml/src/CMakeLists.txt), release mode.
const DEFINES: &[(&str, Option<&str>)] = &[
    ("NDEBUG", None),
    ("GGML_USE_LLAMAFILE", None),
    ("GGML_SCHED_MAX_COPIES", Some("4")),
    ("_XOPEN_SOURCE", Some("600")),
    ("_GNU_SOURCE", None),
];

/// Language standards as CMake selects them (C11 / C++17 with GNU extensions).
const C_STD: &str = "gnu11";
const CPP_STD: &str = "gnu++17";

/// Preprocessor macros that reveal which instruction sets the compiler targets.
const ISA_MACROS: &[(&str, &str)] = &[
    ("__SSE3__", "SSE3"),
    ("__SSSE3__", "SSSE3"),
    ("__AVX__", "AVX"),
    ("__AVX2__", "AVX2"),
    ("__FMA__", "FMA"),
    ("__F16C__", "F16C"),
    ("__AVXVNNI__", "AVX_VNNI"),
    ("__AVX512F__", "AVX512F"),
    ("__AVX512BW__", "AVX512BW"),
    ("__AVX512VL__", "AVX512VL"),
    ("__AVX512VNNI__", "AVX512_VNNI"),
    ("__AVX512VBMI__", "AVX512_VBMI"),
    ("__AVX512BF16__", "AVX512_BF16"),
    ("__ARM_NEON", "NEON"),
    ("__ARM_FEATURE_DOTPROD", "DOTPROD"),
    ("__ARM_FEATURE_FP16_VECTOR_ARITHMETIC", "FP16_VA"),
    ("__ARM_FEATURE_MATMUL_INT8", "I8MM"),
    ("__ARM_FEATURE_SVE", "SVE"),
];

/// Bumped when the way objects are produced changes, to invalidate cached objects.
const CACHE_LAYOUT: &str = "bnref-objects-2";

/// What was compiled and how, for `reference_info()`.
pub struct BuildRecord {
    pub c_flags: String,
    pub cpp_flags: String,
    pub compiler: String,
    pub isa: String,
    /// What was done about the TL2 kernels.
    pub tl2: String,
}

/// Compiles the reference (reusing cached objects when nothing changed), its TL2 kernels and
/// the shim, and archives them all as `libbnref.a`.
pub fn build_library(
    sources: &ReferenceSources,
    fingerprint: &str,
    shim_dir: &Path,
    out_dir: &Path,
) -> Result<BuildRecord, String> {
    let object_dir = out_dir.join("reference");
    let mut c_build = reference_build(sources, &object_dir);
    c_build.std(C_STD).files(largest_first(sources.c_files()));
    let mut cpp_build = reference_build(sources, &object_dir);
    cpp_build
        .cpp(true)
        .std(CPP_STD)
        .files(largest_first(sources.cpp_files()?));

    let c_tool = c_build.try_get_compiler().map_err(|e| e.to_string())?;
    let cpp_tool = cpp_build.try_get_compiler().map_err(|e| e.to_string())?;
    let isa = target_isa(c_tool.to_command());
    let tl2 = tl2::prepare(sources, out_dir, &isa)?;
    let record = BuildRecord {
        c_flags: describe_flags(c_tool.args()),
        cpp_flags: describe_flags(cpp_tool.args()),
        compiler: compiler_version(c_tool.path(), cpp_tool.path()),
        isa,
        tl2: tl2.status.clone(),
    };

    // The ISA is part of the key because `-march=native` means something else on another CPU.
    let cache = ObjectCache::new(
        out_dir,
        format!(
            "{CACHE_LAYOUT}\n{fingerprint}\n{}\n{}\n{}\n{}\n{}\n",
            sources.bitnet_root.display(),
            record.compiler,
            record.c_flags,
            record.cpp_flags,
            record.isa
        ),
    );
    let mut objects = match cache.load() {
        Some(objects) => objects,
        None => cache.store(
            &object_dir,
            compile_reference(&c_build, &cpp_build, &object_dir)?,
        )?,
    };
    objects.extend(compile_tl2(
        sources,
        &tl2,
        fingerprint,
        &record,
        shim_dir,
        out_dir,
    )?);

    shim_build(sources, shim_dir)
        .files(shim_files(shim_dir)?)
        .objects(objects)
        .out_dir(out_dir)
        .try_compile("bnref")
        .map_err(|e| format!("compiling the shim failed: {e}"))?;
    if env::var("CARGO_CFG_TARGET_FAMILY").is_ok_and(|family| family == "unix") {
        println!("cargo:rustc-link-lib=pthread");
        println!("cargo:rustc-link-lib=m");
    }
    Ok(record)
}

/// Flags shared by every translation unit.
fn configured() -> cc::Build {
    let mut build = cc::Build::new();
    build.opt_level(3).debug(false);
    for (name, value) in DEFINES {
        build.define(name, *value);
    }
    if native_build() {
        match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
            Ok("x86_64") => {
                build.flag("-march=native");
            }
            Ok("aarch64") => {
                build.flag("-mcpu=native");
            }
            _ => {}
        }
    }
    build
}

/// The shim's translation units: ours, so warnings are on (but not for the reference's headers).
fn shim_build(sources: &ReferenceSources, shim_dir: &Path) -> cc::Build {
    let mut build = configured();
    for dir in sources.include_dirs() {
        build.flag("-isystem").flag(dir.as_os_str());
    }
    build
        .cpp(true)
        .std(CPP_STD)
        .include(shim_dir)
        .warnings(true)
        .extra_warnings(true);
    build
}

/// BitNet's LUT unit with the generated kernels (cached like the reference, when they were
/// generated) and the shim's TL2 unit, both with `GGML_BITNET_X86_TL2` when the kernels exist.
fn compile_tl2(
    sources: &ReferenceSources,
    tl2: &Tl2,
    fingerprint: &str,
    record: &BuildRecord,
    shim_dir: &Path,
    out_dir: &Path,
) -> Result<Vec<PathBuf>, String> {
    let mut objects = Vec::new();
    let mut shim = shim_build(sources, shim_dir);
    shim.include(&tl2.include_dir)
        .file(shim_dir.join(TL2_SHIM))
        .out_dir(out_dir.join("tl2").join("shim"));
    if let Some(kernels) = &tl2.kernels {
        shim.define(tl2::DEFINE, None);
        let object_dir = out_dir.join("tl2").join("reference");
        let mut lut = reference_build(sources, &object_dir);
        lut.cpp(true)
            .std(CPP_STD)
            .include(&tl2.include_dir)
            .define(tl2::DEFINE, None)
            .file(&kernels.lut_source);
        let lut_tool = lut.try_get_compiler().map_err(|e| e.to_string())?;
        let cache = ObjectCache::new(
            out_dir,
            format!(
                "{CACHE_LAYOUT}\n{fingerprint}\n{}\n{}\n{}\n{}\n",
                sources::fingerprint(&[kernels.lut_source.clone(), kernels.header.clone()])?,
                record.compiler,
                describe_flags(lut_tool.args()),
                record.isa
            ),
        );
        objects.extend(match cache.load() {
            Some(cached) => cached,
            None => {
                fresh_dir(&object_dir)?;
                let compiled = lut
                    .try_compile_intermediates()
                    .map_err(|e| format!("compiling the TL2 kernels failed: {e}"))?;
                cache.store(&object_dir, compiled)?
            }
        });
    }
    objects.extend(
        shim.try_compile_intermediates()
            .map_err(|e| format!("compiling the TL2 shim failed: {e}"))?,
    );
    Ok(objects)
}

/// The reference's own sources: third-party code, compiled quietly into `object_dir`.
fn reference_build(sources: &ReferenceSources, object_dir: &Path) -> cc::Build {
    let mut build = configured();
    build
        .includes(sources.include_dirs())
        .warnings(false)
        .out_dir(object_dir);
    build
}

/// Orders translation units so the slowest (largest) start first, shortening the build.
fn largest_first(mut files: Vec<PathBuf>) -> Vec<PathBuf> {
    files.sort_by_key(|f| std::cmp::Reverse(fs::metadata(f).map_or(0, |m| m.len())));
    files
}

fn native_build() -> bool {
    env::var("HOST").ok() == env::var("TARGET").ok()
}

/// The shim's TL2 unit, kept out of [`shim_files`] because it is compiled with the TL2 define.
const TL2_SHIM: &str = "tl2/bnref_tl2.cpp";

/// The shim's translation units other than [`TL2_SHIM`].
fn shim_files(shim_dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = fs::read_dir(shim_dir)
        .map_err(|e| format!("cannot list {}: {e}", shim_dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "cpp"))
        .collect::<Vec<_>>();
    files.sort();
    Ok(files)
}

/// Compiles C and C++ sources at the same time so that both cores stay busy.
fn compile_reference(
    c_build: &cc::Build,
    cpp_build: &cc::Build,
    object_dir: &Path,
) -> Result<Vec<PathBuf>, String> {
    fresh_dir(object_dir)?;
    let (c_objects, cpp_objects) = thread::scope(|scope| {
        let c = scope.spawn(|| c_build.try_compile_intermediates());
        let cpp = cpp_build.try_compile_intermediates();
        (c.join(), cpp)
    });
    let c_objects = c_objects
        .map_err(|_| "the C compile thread panicked".to_string())?
        .map_err(|e| format!("compiling the reference's C sources failed: {e}"))?;
    let cpp_objects =
        cpp_objects.map_err(|e| format!("compiling the reference's C++ sources failed: {e}"))?;
    Ok(c_objects.into_iter().chain(cpp_objects).collect())
}

/// Empties `dir`, creating it if needed.
fn fresh_dir(dir: &Path) -> Result<(), String> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// The compiler arguments minus include paths (which only say where the sources are).
fn describe_flags(args: &[OsString]) -> String {
    let mut kept = Vec::new();
    let mut skip_next = false;
    for arg in args.iter().map(|a| a.to_string_lossy()) {
        if skip_next {
            skip_next = false;
        } else if arg == "-I" || arg == "-isystem" {
            skip_next = true;
        } else if !arg.starts_with("-I") {
            kept.push(arg.into_owned());
        }
    }
    kept.join(" ")
}

fn compiler_version(c: &Path, cpp: &Path) -> String {
    let first_line = |path: &Path| {
        Command::new(path)
            .arg("--version")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.lines().next().map(str::to_string))
            .unwrap_or_else(|| "version unknown".into())
    };
    format!(
        "{} ({}); {} ({})",
        c.display(),
        first_line(c),
        cpp.display(),
        first_line(cpp)
    )
}

/// The instruction-set extensions the compiler targets with the chosen flags.
fn target_isa(mut command: Command) -> String {
    let defines = command
        .args(["-dM", "-E", "-x", "c"])
        .arg(if cfg!(windows) { "NUL" } else { "/dev/null" })
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok());
    let Some(defines) = defines else {
        return "unknown".into();
    };
    let defined = |macro_name: &str| {
        defines
            .lines()
            .any(|line| line.split_whitespace().nth(1) == Some(macro_name))
    };
    let features = ISA_MACROS
        .iter()
        .filter(|(macro_name, _)| defined(macro_name))
        .map(|(_, feature)| *feature)
        .collect::<Vec<_>>();
    if features.is_empty() {
        "baseline".into()
    } else {
        features.join(" ")
    }
}
