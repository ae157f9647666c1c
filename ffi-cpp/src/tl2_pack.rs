//! Packing weights as TL2 with the reference converter's own code, run by Python.

use crate::error::RefError;
use crate::tl2::{expect_len, tl2_tensor_nbytes};

use std::env;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{self, Command};
use std::sync::atomic::{AtomicU64, Ordering};

const CALL: &str = "tl2_reference_pack";

/// Our driver: takes the packing functions out of the converter and runs them with numpy.
const DRIVER: &str = include_str!("tl2_pack.py");
/// Exit status of [`DRIVER`] when numpy cannot be imported.
const NUMPY_MISSING: i32 = 3;

/// The reference converter, relative to the BitNet root.
const CONVERTER: &str = "utils/convert-hf-to-gguf-bitnet.py";

/// Rows one SIMD block computes (`bmm` in the kernel configuration); the only value the
/// reference's generator supports.
const SIMD_ROWS: usize = 32;

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
    check_tiling(m, k, bm, bk)?;
    let n = m
        .checked_mul(k)
        .ok_or_else(|| RefError::invalid(CALL, format!("{m}x{k} weights are too many")))?;
    expect_len(CALL, "weights", n, weights.len())?;
    let converter = Path::new(env!("BNREF_BITNET_ROOT")).join(CONVERTER);
    if !converter.is_file() {
        return Err(RefError::Unsupported {
            call: CALL,
            message: format!("the BitNet tree has no {CONVERTER}"),
        });
    }

    let work = WorkDir::new()?;
    let bytes = weights
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect::<Vec<_>>();
    work.write("weights.f32", &bytes)?;
    work.write(
        "include/kernel_config.ini",
        format!("[Kernels_0]\nm = {m}\nk = {k}\nbm = {bm}\nbk = {bk}\nbmm = {SIMD_ROWS}\n")
            .as_bytes(),
    )?;
    work.write("tl2_pack.py", DRIVER.as_bytes())?;
    run_driver(&work, &converter, m, k)?;

    let codes = work.read("codes.bin")?;
    let scale = work.read("scale.f32")?;
    let expected_codes = codes_len(m, k);
    if codes.len() != expected_codes || scale.len() != 4 {
        return Err(RefError::Internal {
            call: CALL,
            message: format!(
                "the packer wrote {} code bytes and a {}-byte scale, expected {expected_codes} \
                 and 4",
                codes.len(),
                scale.len()
            ),
        });
    }
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

/// The constraints of the reference's TL2 generator and packer.
fn check_tiling(m: usize, k: usize, bm: usize, bk: usize) -> Result<(), RefError> {
    let rest = if bk == 0 { 0 } else { k % bk };
    let broken = [
        (bm > 0 && m % bm == 0, "M is a multiple of BM"),
        (bm % SIMD_ROWS == 0, "BM is a multiple of 32"),
        (bk > 0 && bk % 24 == 0, "BK is a multiple of 24"),
        (rest % 32 == 0, "K mod BK is a multiple of 32"),
        (rest <= 256, "K mod BK is at most 256"),
        (k >= 256, "K is at least 256 (ggml's TL2 size assumes it)"),
    ]
    .into_iter()
    .filter(|(holds, _)| !holds)
    .map(|(_, rule)| rule)
    .collect::<Vec<_>>();
    if broken.is_empty() {
        Ok(())
    } else {
        Err(RefError::invalid(
            CALL,
            format!(
                "{m}x{k} with BM {bm}, BK {bk} breaks: {}",
                broken.join(", ")
            ),
        ))
    }
}

/// The code bytes the converter pads to (K ≥ 256): 5 bits per 3 weights for K − 256 columns,
/// 4 bits per 2 weights for the last 256.
fn codes_len(m: usize, k: usize) -> usize {
    (k - 256) * m / 3 * 5 / 8 + 256 * m / 2 * 4 / 8
}

fn run_driver(work: &WorkDir, converter: &Path, m: usize, k: usize) -> Result<(), RefError> {
    let unavailable = |message: String| RefError::PythonUnavailable {
        call: CALL,
        message,
    };
    let output = Command::new("python3")
        .arg("-B")
        .arg("tl2_pack.py")
        .arg(converter)
        .arg(m.to_string())
        .arg(k.to_string())
        .current_dir(&work.0)
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
            call: CALL,
            message: format!(
                "the converter's TL2 packer failed ({}): {stderr}",
                output.status
            ),
        }),
    }
}

/// A scratch directory for one packing run, removed afterwards.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> Result<Self, RefError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = env::temp_dir().join(format!(
            "bnref-tl2-pack-{}-{}",
            process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("include")).map_err(|e| io_error(&dir, &e))?;
        Ok(Self(dir))
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), RefError> {
        let path = self.0.join(name);
        fs::write(&path, bytes).map_err(|e| io_error(&path, &e))
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, RefError> {
        let path = self.0.join(name);
        fs::read(&path).map_err(|e| io_error(&path, &e))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn io_error(path: &Path, error: &io::Error) -> RefError {
    RefError::Io {
        call: CALL,
        message: format!("{}: {error}", path.display()),
    }
}
