//! The kind-specific parameters of a case, and the file references they use.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use sha2::{Digest, Sha256 as Sha256Hasher};

/// A SHA-256 digest, written as 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sha256(String);

impl Sha256 {
    /// The digest of everything `reader` yields.
    pub fn of_reader(mut reader: impl Read) -> io::Result<Sha256> {
        let mut hasher = Sha256Hasher::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let hex = hasher
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Ok(Sha256(hex))
    }

    /// The digest as lowercase hex.
    pub fn as_hex(&self) -> &str {
        &self.0
    }
}

impl FromStr for Sha256 {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Sha256(s.to_ascii_lowercase()))
        } else {
            Err(format!("`{s}` is not a sha256: expected 64 hex digits"))
        }
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Sha256 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Sha256 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// The directory a relative path of a case is resolved against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileRoot {
    /// The fixtures root (committed models, snapshots).
    Fixtures,
    /// The external data directory (corpora, vocabularies); the case must need `data`.
    Data,
}

/// A file a case reads: a path, optionally pinned by its SHA-256 and placed under a root.
///
/// Written either as a plain path or as `{path: ..., sha256: ..., root: fixtures|data}`.
/// Without `root`, relative paths resolve against the data directory when the case needs
/// `data` and against the fixtures root otherwise (see [`FileRef::root_or`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileRef {
    /// The path as written.
    pub path: PathBuf,
    /// The expected digest of the file's content.
    pub sha256: Option<Sha256>,
    /// The directory the path is relative to, when the case names one.
    pub root: Option<FileRoot>,
}

/// Why a referenced file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FileCheckError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The resolved path.
        path: PathBuf,
        /// The I/O failure.
        source: io::Error,
    },
    /// The file's digest differs from the one the case pins.
    #[error("{path} has sha256 {actual}, but the case pins {expected}")]
    Mismatch {
        /// The resolved path.
        path: PathBuf,
        /// The digest in the case.
        expected: Sha256,
        /// The digest of the file.
        actual: Sha256,
    },
}

impl FileRef {
    /// The root the path resolves against: the one written, else `default`.
    pub fn root_or(&self, default: FileRoot) -> FileRoot {
        self.root.unwrap_or(default)
    }

    /// The path joined onto `base` unless it is already absolute.
    pub fn resolve(&self, base: &Path) -> PathBuf {
        base.join(&self.path)
    }

    /// Checks the file at `resolved` against the pinned digest; without one, only that it opens.
    pub fn verify(&self, resolved: &Path) -> Result<(), FileCheckError> {
        let read_error = |source| FileCheckError::Read {
            path: resolved.to_path_buf(),
            source,
        };
        let file = File::open(resolved).map_err(read_error)?;
        let Some(expected) = &self.sha256 else {
            return Ok(());
        };
        let actual = Sha256::of_reader(io::BufReader::new(file)).map_err(read_error)?;
        if &actual == expected {
            Ok(())
        } else {
            Err(FileCheckError::Mismatch {
                path: resolved.to_path_buf(),
                expected: expected.clone(),
                actual,
            })
        }
    }
}

impl<'de> Deserialize<'de> for FileRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FileRefVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PinnedPath {
    path: PathBuf,
    sha256: Option<Sha256>,
    root: Option<FileRoot>,
}

struct FileRefVisitor;

impl<'de> Visitor<'de> for FileRefVisitor {
    type Value = FileRef;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a path, or a mapping {path, sha256, root}")
    }

    fn visit_str<E: de::Error>(self, path: &str) -> Result<FileRef, E> {
        Ok(FileRef {
            path: PathBuf::from(path),
            sha256: None,
            root: None,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FileRef, A::Error> {
        let pinned = PinnedPath::deserialize(MapAccessDeserializer::new(map))?;
        Ok(FileRef {
            path: pinned.path,
            sha256: pinned.sha256,
            root: pinned.root,
        })
    }
}

/// A packed ternary weight format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum QuantFormat {
    /// bitnet.cpp's 2-bit format: 128-weight blocks, one f32 scale per tensor.
    #[serde(rename = "I2_S")]
    I2S,
    /// ggml's 1.69-bit base-3 format, 256-weight blocks with an f16 scale.
    #[serde(rename = "TQ1_0")]
    Tq1_0,
    /// ggml's 2-bit format, 256-weight blocks with an f16 scale.
    #[serde(rename = "TQ2_0")]
    Tq2_0,
    /// bitnet.cpp's lookup-table format for ARM (2 weights per 4-bit index).
    #[serde(rename = "TL1")]
    Tl1,
    /// bitnet.cpp's lookup-table format for x86 (3 weights per sign + 4-bit index).
    #[serde(rename = "TL2")]
    Tl2,
}

impl QuantFormat {
    /// The ggml type name.
    pub fn name(self) -> &'static str {
        match self {
            QuantFormat::I2S => "I2_S",
            QuantFormat::Tq1_0 => "TQ1_0",
            QuantFormat::Tq2_0 => "TQ2_0",
            QuantFormat::Tl1 => "TL1",
            QuantFormat::Tl2 => "TL2",
        }
    }
}

impl fmt::Display for QuantFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A 2-D tensor shape: `rows` output features of `cols` inputs each (ggml's ne1 × ne0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shape {
    /// Number of rows.
    pub rows: usize,
    /// Elements per row.
    pub cols: usize,
}

impl Shape {
    /// rows × cols.
    pub fn len(self) -> usize {
        self.rows * self.cols
    }

    /// Whether the shape holds no element.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// The tiling LUT kernels were generated for (the code generators' `BM`, `BK` and `bmm`); TL
/// formats only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tiling {
    /// Rows per tile (`BM`).
    pub bm: usize,
    /// Weights per K tile (`BK`).
    pub bk: usize,
    /// Rows per SIMD block (`bmm`): 32 or 64 for TL1, which needs it; TL2 takes 32 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bmm: Option<usize>,
}

impl fmt::Display for Tiling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BM={} BK={}", self.bm, self.bk)?;
        match self.bmm {
            Some(bmm) => write!(f, " bmm={bmm}"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}×{}", self.rows, self.cols)
    }
}

fn one() -> f64 {
    1.0
}

fn minus_one() -> f64 {
    -1.0
}

fn three() -> u32 {
    3
}

fn yes() -> bool {
    true
}

/// Where a quantization case's weights come from: a seeded distribution or a real tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Input {
    /// Normal values, `mean` 0 and `std` 1 unless given.
    Gaussian {
        /// Generator seed.
        seed: u64,
        /// Mean.
        #[serde(default)]
        mean: f64,
        /// Standard deviation.
        #[serde(default = "one")]
        std: f64,
    },
    /// Uniform values in [`low`, `high`), [-1, 1) unless given.
    Uniform {
        /// Generator seed.
        seed: u64,
        /// Lower end (included).
        #[serde(default = "minus_one")]
        low: f64,
        /// Upper end (excluded).
        #[serde(default = "one")]
        high: f64,
    },
    /// Student-t values with `dof` degrees of freedom (3 unless given), times `scale`.
    HeavyTailed {
        /// Generator seed.
        seed: u64,
        /// Degrees of freedom; smaller means heavier tails.
        #[serde(default = "three")]
        dof: u32,
        /// Multiplier.
        #[serde(default = "one")]
        scale: f64,
    },
    /// Standard normal rows, except every `every`-th row (from row 0) is all zeros.
    ZeroRows {
        /// Generator seed.
        seed: u64,
        /// Period of the zero rows; 1 makes the whole tensor zero.
        every: usize,
    },
    /// Values already in `scale` × {-1, 0, +1}, each third equally likely.
    Ternary {
        /// Generator seed.
        seed: u64,
        /// The magnitude of the non-zero values.
        #[serde(default = "one")]
        scale: f64,
    },
    /// The leading `shape` block of a tensor read by name from a model file.
    Tensor {
        /// The model file.
        model: FileRef,
        /// The tensor's name in the GGUF file.
        name: String,
    },
}

/// The activation vectors quantized weights are multiplied with (dot products, GEMV).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Activations {
    /// Generator seed (standard normal values).
    pub seed: u64,
    /// Number of vectors of `cols` values.
    pub count: usize,
}

/// `alignment` cases: a GGUF file's tensor table as parsed by both sides.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlignmentParams {
    /// The GGUF file.
    pub model: FileRef,
}

/// `quantization` cases: weights × format × shape.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantizationParams {
    /// The packed format.
    pub format: QuantFormat,
    /// The weight matrix's shape.
    pub shape: Shape,
    /// The LUT tiling; required by TL1 and TL2, refused by the other formats.
    pub tiling: Option<Tiling>,
    /// The weights, written `{<distribution>: {seed: ...}}` or `{tensor: {model, name}}`.
    #[serde(deserialize_with = "serde_yaml::with::singleton_map::deserialize")]
    pub input: Input,
    /// Vectors to multiply the packed weights with; no dot products without them.
    pub activations: Option<Activations>,
}

impl QuantizationParams {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.shape.is_empty() {
            return Err(format!("shape {} holds no element", self.shape));
        }
        if self.activations.is_some_and(|a| a.count == 0) {
            return Err("activations.count must be at least 1".into());
        }
        match (self.format, self.tiling) {
            (QuantFormat::Tl1, None) => {
                return Err(
                    "TL1 needs `tiling: {bm, bk, bmm}` (the kernels' BM, BK and bmm)".into(),
                )
            }
            (QuantFormat::Tl2, None) => {
                return Err("TL2 needs `tiling: {bm, bk}` (the kernels' BM and BK)".into())
            }
            (QuantFormat::Tl1, Some(t)) if !matches!(t.bmm, Some(32 | 64)) => {
                return Err(format!(
                    "TL1 needs `tiling.bmm` 32 or 64, not {}",
                    t.bmm.map_or("none".into(), |b| b.to_string())
                ))
            }
            (QuantFormat::Tl2, Some(t)) if t.bmm.is_some_and(|b| b != 32) => {
                return Err(format!("TL2 kernels take `tiling.bmm` 32 only, not {t}"))
            }
            (QuantFormat::Tl1 | QuantFormat::Tl2, Some(_)) => {}
            (format, Some(_)) => {
                return Err(format!("`tiling` applies to TL1 and TL2, not {format}"))
            }
            (_, None) => {}
        }
        match self.input {
            Input::ZeroRows { every: 0, .. } => Err("zero_rows.every must be at least 1".into()),
            Input::HeavyTailed { dof: 0, .. } => Err("heavy_tailed.dof must be at least 1".into()),
            Input::Uniform { low, high, .. } if low >= high => {
                Err(format!("uniform: low {low} must be below high {high}"))
            }
            _ => Ok(()),
        }
    }
}

/// `logits` cases: a model run over prompts, logits at every position.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogitsParams {
    /// The model file.
    pub model: FileRef,
    /// The same weights in a format the reference backend multiplies, which it runs instead
    /// of `model` (the candidate still runs `model`).
    pub reference_model: Option<FileRef>,
    /// Prompts, each evaluated from an empty context.
    pub prompts: Vec<String>,
    /// Whether tokenization adds BOS (default true).
    #[serde(default = "yes")]
    pub add_bos: bool,
}

impl LogitsParams {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.prompts.is_empty() {
            return Err("`prompts` is empty".into());
        }
        Ok(())
    }
}

/// The tokens a perplexity case scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TextSource {
    /// A text file.
    File(FileRef),
    /// `count` token ids drawn uniformly from the vocabulary with `seed`.
    Tokens {
        /// Generator seed.
        seed: u64,
        /// Number of tokens.
        count: usize,
    },
}

/// `perplexity` cases: llama-perplexity's protocol over a text.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerplexityParams {
    /// The model file.
    pub model: FileRef,
    /// The text to score: `{file: ...}` or `{tokens: {seed, count}}`.
    #[serde(deserialize_with = "serde_yaml::with::singleton_map::deserialize")]
    pub text: TextSource,
    /// Context length of each chunk.
    pub ctx: usize,
    /// How many chunks to score; all that fit when absent.
    pub chunks: Option<usize>,
    /// Score only this trailing fraction of a text file: the text from the first line start
    /// at or after byte ⌊(1 − held_out) · length⌋, the usual held-out split of a corpus.
    pub held_out: Option<f64>,
    /// A published perplexity of this model on this text and protocol; the `expected`
    /// reference compares the candidate's perplexity with it.
    pub expected_ppl: Option<f64>,
}

/// The held-out tail of `text`: from the first line start at or after byte
/// ⌊(1 − fraction) · length⌋ to the end.
pub fn held_out_tail(text: &str, fraction: f64) -> &str {
    let cut = (((1.0 - fraction) * text.len() as f64).floor() as usize).min(text.len());
    let bytes = text.as_bytes();
    if cut == 0 || bytes[cut - 1] == b'\n' {
        return &text[cut..];
    }
    match bytes[cut..].iter().position(|&b| b == b'\n') {
        Some(newline) => &text[cut + newline + 1..],
        None => "",
    }
}

impl PerplexityParams {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.ctx < 4 {
            return Err(format!("ctx {} is too short to score anything", self.ctx));
        }
        if self.chunks == Some(0) {
            return Err("chunks must be at least 1".into());
        }
        if let Some(fraction) = self.held_out {
            if !(fraction > 0.0 && fraction < 1.0) {
                return Err(format!(
                    "held_out {fraction} must lie strictly between 0 and 1"
                ));
            }
            if !matches!(self.text, TextSource::File(_)) {
                return Err("held_out needs a text `file`".into());
            }
        }
        if let Some(ppl) = self.expected_ppl {
            if !(ppl.is_finite() && ppl >= 1.0) {
                return Err(format!(
                    "expected_ppl {ppl} is not a perplexity (finite, ≥ 1)"
                ));
            }
        }
        if let TextSource::Tokens { count, .. } = self.text {
            if count < self.ctx {
                return Err(format!(
                    "{count} tokens do not fill one chunk of ctx {}",
                    self.ctx
                ));
            }
        }
        Ok(())
    }
}

/// `token_match` cases: exactly one of `tokenize` or `generate`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenMatchParams {
    /// The model (or vocab-only GGUF) file.
    pub model: FileRef,
    /// For `generate`: the same weights in a format the reference backend multiplies, which
    /// it runs instead of `model`.
    pub reference_model: Option<FileRef>,
    /// Compare tokenizer output.
    pub tokenize: Option<TokenizeParams>,
    /// Compare greedy generation.
    pub generate: Option<GenerateParams>,
}

impl TokenMatchParams {
    pub(crate) fn check(&self) -> Result<(), String> {
        match (&self.tokenize, &self.generate) {
            (Some(_), None) if self.reference_model.is_some() => {
                Err("`reference_model` applies to `generate` only".into())
            }
            (Some(t), None) => t.check(),
            (None, Some(g)) => g.check(),
            _ => Err("give exactly one of `tokenize` and `generate`".into()),
        }
    }
}

/// Tokenizer vectors: llama.cpp-style `.inp`/`.out` files, or free texts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizeParams {
    /// Base path of `<vectors>.inp` (texts) and `<vectors>.out` (expected ids).
    pub vectors: Option<PathBuf>,
    /// Texts without expected ids (compared between backends only).
    pub texts: Option<Vec<String>>,
    /// Whether BOS/EOS are added (default false, as llama.cpp's tokenizer tests).
    #[serde(default)]
    pub add_special: bool,
    /// Whether special-token text is parsed as special tokens (default false).
    #[serde(default)]
    pub parse_special: bool,
}

impl TokenizeParams {
    fn check(&self) -> Result<(), String> {
        match (&self.vectors, &self.texts) {
            (Some(_), None) => Ok(()),
            (None, Some(texts)) if texts.is_empty() => Err("tokenize.texts is empty".into()),
            (None, Some(_)) => Ok(()),
            _ => Err("tokenize: give exactly one of `vectors` and `texts`".into()),
        }
    }

    /// The `.inp` and `.out` paths of `vectors`, if given.
    pub fn vector_files(&self) -> Option<(PathBuf, PathBuf)> {
        let base = self.vectors.as_ref()?.as_os_str();
        let with = |ext: &str| {
            let mut path = base.to_os_string();
            path.push(ext);
            PathBuf::from(path)
        };
        Some((with(".inp"), with(".out")))
    }
}

/// Greedy generation from prompts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateParams {
    /// Prompts, each generated from an empty context.
    pub prompts: Vec<String>,
    /// Tokens to generate per prompt.
    pub tokens: usize,
    /// Whether tokenization adds BOS (default true).
    #[serde(default = "yes")]
    pub add_bos: bool,
}

impl GenerateParams {
    fn check(&self) -> Result<(), String> {
        if self.prompts.is_empty() {
            return Err("generate.prompts is empty".into());
        }
        if self.tokens == 0 {
            return Err("generate.tokens must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_ref_from_path_or_mapping() {
        let plain: FileRef = serde_yaml::from_str("models/tiny.gguf").unwrap();
        assert_eq!(plain.path, PathBuf::from("models/tiny.gguf"));
        assert!(plain.sha256.is_none());
        let digest = "AB".repeat(32);
        let pinned: FileRef =
            serde_yaml::from_str(&format!("{{path: m.gguf, sha256: {digest}}}")).unwrap();
        assert_eq!(pinned.sha256.unwrap().as_hex(), "ab".repeat(32));
        let err = serde_yaml::from_str::<FileRef>("{path: m.gguf, sha: x}").unwrap_err();
        assert!(err.to_string().contains("unknown field `sha`"), "{err}");
        let err = serde_yaml::from_str::<FileRef>("{path: m.gguf, sha256: abc}").unwrap_err();
        assert!(err.to_string().contains("64 hex digits"), "{err}");
    }

    #[test]
    fn file_verification_compares_digests() {
        let dir = std::env::temp_dir().join(format!("conformance-fileref-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("abc.txt");
        std::fs::write(&path, "abc").unwrap();
        let good = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let file = FileRef {
            path: "abc.txt".into(),
            sha256: Some(good.parse().unwrap()),
            root: None,
        };
        let resolved = file.resolve(&dir);
        file.verify(&resolved).unwrap();
        let wrong = FileRef {
            sha256: Some("0".repeat(64).parse().unwrap()),
            ..file.clone()
        };
        assert!(matches!(
            wrong.verify(&resolved),
            Err(FileCheckError::Mismatch { .. })
        ));
        assert!(matches!(
            file.verify(&dir.join("missing")),
            Err(FileCheckError::Read { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn input_distributions_parse_with_defaults() {
        let parse = |text: &str| -> Result<Input, serde_yaml::Error> {
            serde_yaml::with::singleton_map::deserialize(serde_yaml::Deserializer::from_str(text))
        };
        let input = parse("gaussian: {seed: 3}").unwrap();
        assert_eq!(
            input,
            Input::Gaussian {
                seed: 3,
                mean: 0.0,
                std: 1.0
            }
        );
        let input = parse("tensor: {model: m.gguf, name: blk.0.attn_q.weight}").unwrap();
        assert!(matches!(input, Input::Tensor { .. }));
        let err = parse("gaussian: {seed: 3,\n  sd: 2}").unwrap_err();
        assert_eq!(err.location().unwrap().line(), 2, "{err}");
        assert!(parse("cauchy: {seed: 3}").is_err());
    }

    #[test]
    fn lut_formats_need_a_tiling_and_others_refuse_one() {
        let params = |format: &str, tiling: &str| -> QuantizationParams {
            serde_yaml::from_str(&format!(
                "{{format: {format}, shape: {{rows: 32, cols: 256}}, {tiling}input: {{gaussian: {{seed: 1}}}}}}"
            ))
            .unwrap()
        };
        assert!(params("TL2", "tiling: {bm: 32, bk: 96}, ").check().is_ok());
        let err = params("TL2", "").check().unwrap_err();
        assert!(err.contains("needs `tiling"), "{err}");
        let err = params("I2_S", "tiling: {bm: 32, bk: 96}, ")
            .check()
            .unwrap_err();
        assert!(err.contains("not I2_S"), "{err}");
        assert!(serde_yaml::from_str::<Tiling>("{bm: 32, bk: 96, bn: 1}").is_err());
    }

    #[test]
    fn vector_files_append_extensions() {
        let params = TokenizeParams {
            vectors: Some("tok/ggml-vocab-bpe.gguf".into()),
            texts: None,
            add_special: false,
            parse_special: false,
        };
        let (inp, out) = params.vector_files().unwrap();
        assert_eq!(inp, PathBuf::from("tok/ggml-vocab-bpe.gguf.inp"));
        assert_eq!(out, PathBuf::from("tok/ggml-vocab-bpe.gguf.out"));
    }
}
