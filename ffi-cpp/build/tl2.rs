//! The reference's TL2 (x86 LUT) kernels, generated per matrix shape by BitNet's
//! `utils/codegen_tl2.py`.
//!
//! They are built at kernel level only: `GGML_BITNET_X86_TL2` is defined for BitNet's
//! `ggml-bitnet-lut.cpp` and the shim's TL2 unit, never for ggml or llama.cpp, whose model
//! loading it would change for every type.

use crate::sources::ReferenceSources;

use std::env;
use std::fmt::{self, Write as _};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The define that selects the TL2 code paths.
pub const DEFINE: &str = "GGML_BITNET_X86_TL2";

/// Our driver around the reference's generator functions.
const CODEGEN_DRIVER: &str = include_str!("tl2_codegen.py");

/// The generator, relative to the BitNet root.
const GENERATOR: &str = "utils/codegen_tl2.py";
/// BitNet's LUT kernel unit, relative to the BitNet root.
const LUT_SOURCE: &str = "src/ggml-bitnet-lut.cpp";

/// The header the LUT unit includes, and the header telling the shim what was built.
const KERNELS_HEADER: &str = "bitnet-lut-kernels.h";
const SHAPES_HEADER: &str = "bnref_tl2_shapes.h";

/// Rows one SIMD block computes (the generator's `bm`); the generator supports only 32.
const SIMD_ROWS: u32 = 32;

/// One weight shape (M rows = ggml ne1, K columns = ne0) with its tiling.
pub struct Shape {
    pub m: u32,
    pub k: u32,
    /// Rows per tile (`BM`).
    pub bm: u32,
    /// Columns per block handled three at a time (`BK`); the rest go two at a time.
    pub bk: u32,
}

const fn shape(m: u32, k: u32, bm: u32, bk: u32) -> Shape {
    Shape { m, k, bm, bk }
}

/// The shapes kernels are generated for: three small ones for tests, then the GEMV shapes of
/// BitNet b1.58 2B-4T (attention q/o, k/v, FFN up/gate, FFN down).
pub const SHAPES: &[Shape] = &[
    shape(256, 256, 128, 96),
    shape(128, 384, 64, 192),
    shape(64, 512, 64, 96),
    shape(2560, 2560, 128, 96),
    shape(640, 2560, 128, 96),
    shape(6912, 2560, 128, 96),
    shape(2560, 6912, 128, 96),
];

impl Shape {
    /// The generator's preconditions; it emits kernels that silently compute nothing otherwise.
    fn check(&self) -> Result<(), String> {
        let two_k = self.k % self.bk;
        let problems = [
            (
                self.bm > 0 && self.m % self.bm == 0,
                "M is a multiple of BM",
            ),
            (self.bm % SIMD_ROWS == 0, "BM is a multiple of 32"),
            (self.bk > 0 && self.bk % 24 == 0, "BK is a multiple of 24"),
            (two_k % 32 == 0, "K mod BK is a multiple of 32"),
            (two_k <= 256, "K mod BK is at most 256"),
        ]
        .into_iter()
        .filter(|(holds, _)| !holds)
        .map(|(_, rule)| rule)
        .collect::<Vec<_>>();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("TL2 shape {self} breaks: {}", problems.join(", ")))
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{} (BM {}, BK {})", self.m, self.k, self.bm, self.bk)
    }
}

/// What the build does about TL2.
pub struct Tl2 {
    /// Holds the shapes header, and the kernels header when they were generated.
    pub include_dir: PathBuf,
    /// The kernel sources, when they were generated.
    pub kernels: Option<Kernels>,
    /// One line for `reference_info()`: what was generated, or why nothing was.
    pub status: String,
}

/// BitNet's LUT unit and the kernels generated for it.
pub struct Kernels {
    /// `ggml-bitnet-lut.cpp`, which includes the generated header.
    pub lut_source: PathBuf,
    /// The generated `bitnet-lut-kernels.h`.
    pub header: PathBuf,
}

/// Generates the kernels when the target can run them, and always writes the shapes header
/// that tells the shim what was built.
pub fn prepare(sources: &ReferenceSources, out_dir: &Path, isa: &str) -> Result<Tl2, String> {
    for shape in SHAPES {
        shape.check()?;
    }
    let include_dir = out_dir.join("tl2").join("include");
    fs::create_dir_all(&include_dir)
        .map_err(|e| format!("cannot create {}: {e}", include_dir.display()))?;
    let kernels_header = include_dir.join(KERNELS_HEADER);
    let _ = fs::remove_file(&kernels_header);
    let lut_source = sources.bitnet_root.join(LUT_SOURCE);
    if sources.watch {
        println!("cargo:rerun-if-changed={}", lut_source.display());
        println!(
            "cargo:rerun-if-changed={}",
            sources.bitnet_root.join(GENERATOR).display()
        );
    }

    let tl2 = match unavailable(sources, isa) {
        Some(reason) => Tl2 {
            include_dir,
            kernels: None,
            status: format!("not built: {reason}"),
        },
        None => {
            generate(sources, out_dir, &kernels_header)?;
            let shapes = SHAPES.iter().map(Shape::to_string).collect::<Vec<_>>();
            Tl2 {
                include_dir,
                kernels: Some(Kernels {
                    lut_source,
                    header: kernels_header,
                }),
                status: format!("generated by {GENERATOR} for {}", shapes.join(", ")),
            }
        }
    };
    let shapes_header = tl2.include_dir.join(SHAPES_HEADER);
    fs::write(&shapes_header, shapes_header_text(&tl2))
        .map_err(|e| format!("cannot write {}: {e}", shapes_header.display()))?;
    Ok(tl2)
}

/// Why the kernels cannot be generated for this build, if they cannot.
fn unavailable(sources: &ReferenceSources, isa: &str) -> Option<String> {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if arch != "x86_64" {
        return Some(format!(
            "TL2 kernels are x86_64 code and the target is {arch}"
        ));
    }
    if !isa.split(' ').any(|feature| feature == "AVX2") {
        return Some(format!(
            "TL2 kernels need AVX2 and the compiler targets {isa}"
        ));
    }
    for file in [GENERATOR, LUT_SOURCE] {
        if !sources.bitnet_root.join(file).is_file() {
            return Some(format!("the BitNet sources have no {file}"));
        }
    }
    match Command::new("python3").arg("--version").output() {
        Ok(output) if output.status.success() => None,
        Ok(output) => Some(format!(
            "python3, which runs {GENERATOR}, failed to start ({})",
            output.status
        )),
        Err(e) => Some(format!(
            "python3, which runs {GENERATOR}, cannot be run: {e}"
        )),
    }
}

/// Runs our driver (written to `out_dir`) over the reference's generator.
fn generate(
    sources: &ReferenceSources,
    out_dir: &Path,
    kernels_header: &Path,
) -> Result<(), String> {
    let driver = out_dir.join("tl2").join("tl2_codegen.py");
    fs::write(&driver, CODEGEN_DRIVER)
        .map_err(|e| format!("cannot write {}: {e}", driver.display()))?;
    // `-B`: importing the generator must not write bytecode into the reference's tree.
    let output = Command::new("python3")
        .arg("-B")
        .arg(&driver)
        .arg(&sources.bitnet_root)
        .arg(kernels_header)
        .args(
            SHAPES
                .iter()
                .map(|s| format!("{},{},{},{}", s.m, s.k, s.bm, s.bk)),
        )
        .output()
        .map_err(|e| format!("cannot run python3 on {}: {e}", driver.display()))?;
    if output.status.success() && kernels_header.is_file() {
        Ok(())
    } else {
        Err(format!(
            "generating the TL2 kernels with {GENERATOR} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// `BNREF_TL2_STATUS` (a C string) and `BNREF_TL2_SHAPES(X)`, which applies `X(M, K, BM, BK)`
/// to every shape with kernels (none when they were not built).
fn shapes_header_text(tl2: &Tl2) -> String {
    let mut text = String::from(
        "/* Written by the build script: the TL2 kernels compiled into this library. */\n\
         #pragma once\n\n",
    );
    let _ = writeln!(text, "#define BNREF_TL2_STATUS {}", c_string(&tl2.status));
    text.push_str("#define BNREF_TL2_SHAPES(X)");
    if tl2.kernels.is_some() {
        for s in SHAPES {
            let _ = write!(text, " X({}, {}, {}, {})", s.m, s.k, s.bm, s.bk);
        }
    }
    text.push('\n');
    text
}

/// `text` as a C string literal.
fn c_string(text: &str) -> String {
    let mut literal = String::from("\"");
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                literal.push('\\');
                literal.push(c);
            }
            ' '..='~' => literal.push(c),
            _ => {
                let mut utf8 = [0u8; 4];
                for byte in c.encode_utf8(&mut utf8).bytes() {
                    let _ = write!(literal, "\\{byte:03o}");
                }
            }
        }
    }
    literal.push('"');
    literal
}
