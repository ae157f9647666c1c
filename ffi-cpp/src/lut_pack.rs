//! Packing weights as TL1 or TL2 with the reference converter's own code, run by Python.

use crate::error::RefError;
use crate::tl2::{expect_len, tl2_tensor_nbytes};

use std::env;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{self, Command};
use std::sync::atomic::{AtomicU64, Ordering};

/// Our driver: takes the packing functions out of the converter and runs them with numpy.
const DRIVER: &str = include_str!("lut_pack.py");
/// Exit status of [`DRIVER`] when numpy cannot be imported.
const NUMPY_MISSING: i32 = 3;

/// The reference converter, relative to the BitNet root.
const CONVERTER: &str = "utils/convert-hf-to-gguf-bitnet.py";

/// Rows one TL2 SIMD block computes (`bmm` in the kernel configuration); the only value the
/// reference's TL2 generator supports.
const TL2_SIMD_ROWS: usize = 32;

/// Packs the `m` × `k` weights (row-major: `weights[row * k + col]`) as the TL2 tensor ggml
/// loads, for kernels tiled in `bm` rows and three-column blocks of `bk` (see
/// [`tl2_shapes`](crate::tl2_shapes)).
///
/// The codes come from `transform_to_tl2` of the reference's `utils/convert-hf-to-gguf-bitnet.py`
/// (in the BitNet tree this crate was built from), run with `python3` and numpy. It keeps only
/// the sign of each weight (|w| < 1e-6 counts as zero) and takes max |w| as the scale. The
/// tensor is the codes, zeros up to a multiple of 32 bytes, the f32 scale (little-endian) and
/// zeros to 32 bytes more: [`tl2_tensor_nbytes`] in all.
pub fn tl2_reference_pack(
    weights: &[f32],
    m: usize,
    k: usize,
    bm: usize,
    bk: usize,
) -> Result<Vec<u8>, RefError> {
    const CALL: &str = "tl2_reference_pack";
    let rest = if bk == 0 { 0 } else { k % bk };
    check_tiling(
        CALL,
        format!("{m}x{k} with BM {bm}, BK {bk}"),
        &[
            (bm > 0 && m % bm == 0, "M is a multiple of BM"),
            (bm % TL2_SIMD_ROWS == 0, "BM is a multiple of 32"),
            (bk > 0 && bk % 24 == 0, "BK is a multiple of 24"),
            (rest % 32 == 0, "K mod BK is a multiple of 32"),
            (rest <= 256, "K mod BK is at most 256"),
            (k >= 256, "K is at least 256 (ggml's TL2 size assumes it)"),
        ],
    )?;
    let pack = Pack {
        call: CALL,
        format: "tl2",
        m,
        k,
        config: format!("bm = {bm}\nbk = {bk}\nbmm = {TL2_SIMD_ROWS}\n"),
    };
    let (codes, scale) = pack.run(weights, (k - 256) * m / 3 * 5 / 8 + 256 * m / 2 * 4 / 8)?;
    let padded = codes.len().next_multiple_of(32);
    let mut tensor = codes;
    tensor.resize(padded, 0);
    tensor.extend_from_slice(&scale);
    tensor.resize(padded + 32, 0);
    expect_len(
        CALL,
        "the packed tensor",
        tl2_tensor_nbytes(m, k)?,
        tensor.len(),
    )?;
    Ok(tensor)
}

/// Packs the `m` × `k` weights (row-major) as the TL1 tensor ggml loads, for kernels tiled in
/// `bm` rows, `bk` columns and SIMD blocks of `bmm` rows (32 or 64), with `transform_to_tl1` of
/// the reference converter, run as [`tl2_reference_pack`] runs its TL2 packer. The converter
/// keeps the signs (|w| < 1e-6 counts as zero) and max |w| as the scale, and writes the scale as
/// a separate tensor that the 32-byte alignment of GGUF places right after the codes, where ggml
/// reads it: the tensor here is the `m · k / 4` code bytes, the f32 scale and zeros to 32 bytes.
pub fn tl1_reference_pack(
    weights: &[f32],
    m: usize,
    k: usize,
    (bm, bk, bmm): (usize, usize, usize),
) -> Result<Vec<u8>, RefError> {
    const CALL: &str = "tl1_reference_pack";
    let by = 256usize.checked_div(bmm).unwrap_or(0);
    check_tiling(
        CALL,
        format!("{m}x{k} with BM {bm}, BK {bk}, bmm {bmm}"),
        &[
            (bmm == 32 || bmm == 64, "bmm is 32 or 64"),
            (bm > 0 && m % bm == 0, "M is a multiple of BM"),
            (bmm > 0 && bm % bmm == 0, "BM is a multiple of bmm"),
            (bk > 0 && k % bk == 0, "K is a multiple of BK"),
            (by > 0 && bk % by == 0, "BK is a multiple of 256 / bmm"),
        ],
    )?;
    let pack = Pack {
        call: CALL,
        format: "tl1",
        m,
        k,
        config: format!("bm = {bm}\nbk = {bk}\nbmm = {bmm}\n"),
    };
    let (mut tensor, scale) = pack.run(weights, m * k / 4)?;
    tensor.extend_from_slice(&scale);
    tensor.resize(m * k / 4 + 32, 0);
    Ok(tensor)
}

/// The rules a tiling breaks, as an error naming them all.
fn check_tiling(
    call: &'static str,
    what: String,
    rules: &[(bool, &'static str)],
) -> Result<(), RefError> {
    let broken = rules
        .iter()
        .filter(|(holds, _)| !holds)
        .map(|(_, rule)| *rule)
        .collect::<Vec<_>>();
    if broken.is_empty() {
        Ok(())
    } else {
        Err(RefError::invalid(
            call,
            format!("{what} breaks: {}", broken.join(", ")),
        ))
    }
}

/// One run of the converter's packer.
struct Pack {
    call: &'static str,
    format: &'static str,
    m: usize,
    k: usize,
    /// The kernel config section's tiling lines.
    config: String,
}

impl Pack {
    /// Packs `weights`, returning the codes (`codes_len` bytes) and the scale's 4 bytes.
    fn run(&self, weights: &[f32], codes_len: usize) -> Result<(Vec<u8>, Vec<u8>), RefError> {
        let (call, m, k) = (self.call, self.m, self.k);
        let n = m
            .checked_mul(k)
            .ok_or_else(|| RefError::invalid(call, format!("{m}x{k} weights are too many")))?;
        expect_len(call, "weights", n, weights.len())?;
        let converter = Path::new(env!("BNREF_BITNET_ROOT")).join(CONVERTER);
        if !converter.is_file() {
            return Err(RefError::Unsupported {
                call,
                message: format!("the BitNet tree has no {CONVERTER}"),
            });
        }
        let work = WorkDir::new(call, self.format)?;
        let bytes = weights
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect::<Vec<_>>();
        work.write("weights.f32", &bytes)?;
        work.write(
            "include/kernel_config.ini",
            format!("[Kernels_0]\nm = {m}\nk = {k}\n{}", self.config).as_bytes(),
        )?;
        work.write("lut_pack.py", DRIVER.as_bytes())?;
        self.run_driver(&work, &converter)?;
        let codes = work.read("codes.bin")?;
        let scale = work.read("scale.f32")?;
        if codes.len() != codes_len || scale.len() != 4 {
            return Err(RefError::Internal {
                call,
                message: format!(
                    "the packer wrote {} code bytes and a {}-byte scale, expected {codes_len} \
                     and 4",
                    codes.len(),
                    scale.len()
                ),
            });
        }
        Ok((codes, scale))
    }

    fn run_driver(&self, work: &WorkDir, converter: &Path) -> Result<(), RefError> {
        let unavailable = |message: String| RefError::PythonUnavailable {
            call: self.call,
            message,
        };
        let output = Command::new("python3")
            .arg("-B")
            .arg("lut_pack.py")
            .arg(self.format)
            .arg(converter)
            .arg(self.m.to_string())
            .arg(self.k.to_string())
            .current_dir(&work.dir)
            .output()
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => unavailable("python3 was not found on PATH".into()),
                _ => unavailable(format!("python3 cannot be run: {e}")),
            })?;
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        match output.status.code() {
            Some(0) => Ok(()),
            Some(NUMPY_MISSING) => Err(unavailable(format!(
                "{stderr} (numpy comes with `pip install gguf`)"
            ))),
            _ => Err(RefError::Reference {
                call: self.call,
                message: format!(
                    "the converter's {} packer failed ({}): {stderr}",
                    self.format.to_uppercase(),
                    output.status
                ),
            }),
        }
    }
}

/// A scratch directory for one packing run, removed afterwards.
struct WorkDir {
    dir: PathBuf,
    call: &'static str,
}

impl WorkDir {
    fn new(call: &'static str, format: &str) -> Result<Self, RefError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = env::temp_dir().join(format!(
            "bnref-{format}-pack-{}-{}",
            process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        let work = WorkDir { dir, call };
        fs::create_dir_all(work.dir.join("include")).map_err(|e| work.io_error(&work.dir, &e))?;
        Ok(work)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), RefError> {
        let path = self.dir.join(name);
        fs::write(&path, bytes).map_err(|e| self.io_error(&path, &e))
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, RefError> {
        let path = self.dir.join(name);
        fs::read(&path).map_err(|e| self.io_error(&path, &e))
    }

    fn io_error(&self, path: &Path, error: &io::Error) -> RefError {
        RefError::Io {
            call: self.call,
            message: format!("{}: {error}", path.display()),
        }
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}
