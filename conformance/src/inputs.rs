//! Deterministic inputs handed identically to both sides of a trial: seeded tensors,
//! activation vectors, token streams, and llama.cpp-style tokenizer vector files.
//!
//! The generator is SplitMix64 written out here, so a seed means the same values whatever
//! crate versions are in use; distributions that need `ln`/`cos` follow the platform's libm.

use crate::case::{Input, Shape};

/// SplitMix64: a tiny, well-mixed 64-bit generator.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> SeededRng {
        SeededRng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), 53 bits of precision.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box–Muller, one value per call).
    pub fn gaussian(&mut self) -> f64 {
        let radius = (-2.0 * (1.0 - self.unit()).ln()).sqrt();
        radius * (std::f64::consts::TAU * self.unit()).cos()
    }

    /// Student-t with `dof` degrees of freedom: a normal over √(χ²/dof).
    pub fn student_t(&mut self, dof: u32) -> f64 {
        let z = self.gaussian();
        let chi2: f64 = (0..dof).map(|_| self.gaussian().powi(2)).sum();
        z / (chi2 / f64::from(dof)).sqrt()
    }

    /// Uniform integer in [0, n); `n` must be non-zero.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

impl Input {
    /// The `shape.rows × shape.cols` weights (row-major) for a seeded distribution; `None`
    /// for [`Input::Tensor`], which is read from its model file instead.
    pub fn generate(&self, shape: Shape) -> Option<Vec<f32>> {
        let n = shape.len();
        let values = match *self {
            Input::Gaussian { seed, mean, std } => {
                let mut rng = SeededRng::new(seed);
                (0..n)
                    .map(|_| (mean + std * rng.gaussian()) as f32)
                    .collect()
            }
            Input::Uniform { seed, low, high } => {
                let mut rng = SeededRng::new(seed);
                (0..n)
                    .map(|_| (low + (high - low) * rng.unit()) as f32)
                    .collect()
            }
            Input::HeavyTailed { seed, dof, scale } => {
                let mut rng = SeededRng::new(seed);
                (0..n)
                    .map(|_| (scale * rng.student_t(dof)) as f32)
                    .collect()
            }
            Input::ZeroRows { seed, every } => {
                let mut rng = SeededRng::new(seed);
                (0..n)
                    .map(|i| {
                        let value = rng.gaussian() as f32;
                        if (i / shape.cols) % every == 0 {
                            0.0
                        } else {
                            value
                        }
                    })
                    .collect()
            }
            Input::Ternary { seed, scale } => {
                let mut rng = SeededRng::new(seed);
                (0..n)
                    .map(|_| (scale * (rng.below(3) as f64 - 1.0)) as f32)
                    .collect()
            }
            Input::Tensor { .. } => return None,
        };
        Some(values)
    }
}

/// `count` standard-normal vectors of `cols` values each, concatenated.
pub fn activations(seed: u64, count: usize, cols: usize) -> Vec<f32> {
    let mut rng = SeededRng::new(seed);
    (0..count * cols).map(|_| rng.gaussian() as f32).collect()
}

/// `count` token ids drawn uniformly from `0..vocab`; `vocab` must be non-zero.
pub fn random_tokens(seed: u64, count: usize, vocab: u32) -> Vec<u32> {
    let mut rng = SeededRng::new(seed);
    (0..count)
        .map(|_| rng.below(u64::from(vocab)) as u32)
        .collect()
}

/// One tokenizer test vector: a text and its expected ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizerVector {
    /// The text, exactly as stored.
    pub text: String,
    /// The ids the tokenizer must produce.
    pub ids: Vec<u32>,
}

/// Why a pair of `.inp`/`.out` files does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VectorFileError {
    /// The `.inp` text does not end with the separator.
    #[error(".inp: text #{0} is not followed by the `__ggml_vocab_test__` separator line")]
    Unterminated(usize),
    /// A `.out` line holds something other than ids.
    #[error(".out line {line}: `{word}` is not a token id")]
    BadId {
        /// 1-based line.
        line: usize,
        /// The offending word.
        word: String,
    },
    /// The files hold different numbers of entries.
    #[error(".inp holds {texts} texts but .out holds {lines} lines")]
    CountMismatch {
        /// Texts in `.inp`.
        texts: usize,
        /// Lines in `.out`.
        lines: usize,
    },
}

const VECTOR_SEPARATOR: &str = "\n__ggml_vocab_test__\n";

/// Parses llama.cpp's tokenizer test vectors: `.inp` holds texts each followed by a
/// `__ggml_vocab_test__` line, `.out` holds one line of space-separated ids per text.
pub fn parse_tokenizer_vectors(
    inp: &str,
    out: &str,
) -> Result<Vec<TokenizerVector>, VectorFileError> {
    let mut texts = Vec::new();
    let mut rest = inp;
    while !rest.is_empty() {
        let end = rest
            .find(VECTOR_SEPARATOR)
            .ok_or(VectorFileError::Unterminated(texts.len() + 1))?;
        texts.push(rest[..end].to_string());
        rest = &rest[end + VECTOR_SEPARATOR.len()..];
    }
    let lines: Vec<&str> = out.strip_suffix('\n').unwrap_or(out).split('\n').collect();
    let lines = if out.is_empty() { Vec::new() } else { lines };
    if lines.len() != texts.len() {
        return Err(VectorFileError::CountMismatch {
            texts: texts.len(),
            lines: lines.len(),
        });
    }
    texts
        .into_iter()
        .zip(lines)
        .enumerate()
        .map(|(index, (text, line))| {
            let ids = line
                .split_whitespace()
                .map(|word| {
                    word.parse().map_err(|_| VectorFileError::BadId {
                        line: index + 1,
                        word: word.to_string(),
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(TokenizerVector { text, ids })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: Shape = Shape { rows: 4, cols: 64 };

    #[test]
    fn same_seed_same_values() {
        let input = Input::Gaussian {
            seed: 9,
            mean: 0.0,
            std: 1.0,
        };
        assert_eq!(input.generate(SHAPE), input.generate(SHAPE));
        let other = Input::Gaussian {
            seed: 10,
            mean: 0.0,
            std: 1.0,
        };
        assert_ne!(input.generate(SHAPE), other.generate(SHAPE));
    }

    #[test]
    fn splitmix_first_output_is_the_published_one() {
        assert_eq!(SeededRng::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn gaussian_moments_are_plausible() {
        let mut rng = SeededRng::new(1);
        let xs: Vec<f64> = (0..20_000).map(|_| rng.gaussian()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
    }

    #[test]
    fn uniform_stays_in_range() {
        let input = Input::Uniform {
            seed: 2,
            low: -0.5,
            high: 0.25,
        };
        let values = input.generate(SHAPE).unwrap();
        assert!(values.iter().all(|v| (-0.5..0.25).contains(v)));
    }

    #[test]
    fn zero_rows_and_ternary_have_their_shape() {
        let zero = Input::ZeroRows { seed: 3, every: 2 }
            .generate(SHAPE)
            .unwrap();
        assert!(zero[..64].iter().all(|v| *v == 0.0));
        assert!(zero[64..128].iter().any(|v| *v != 0.0));
        assert!(zero[128..192].iter().all(|v| *v == 0.0));
        let ternary = Input::Ternary {
            seed: 4,
            scale: 0.5,
        }
        .generate(SHAPE)
        .unwrap();
        assert!(ternary.iter().all(|v| [-0.5, 0.0, 0.5].contains(v)));
        for level in [-0.5, 0.0, 0.5] {
            assert!(ternary.contains(&level));
        }
    }

    #[test]
    fn heavy_tails_reach_further_than_gaussian() {
        let shape = Shape {
            rows: 64,
            cols: 256,
        };
        let max_abs = |v: Vec<f32>| v.iter().fold(0f32, |m, x| m.max(x.abs()));
        let t = Input::HeavyTailed {
            seed: 5,
            dof: 2,
            scale: 1.0,
        };
        let g = Input::Gaussian {
            seed: 5,
            mean: 0.0,
            std: 1.0,
        };
        assert!(max_abs(t.generate(shape).unwrap()) > max_abs(g.generate(shape).unwrap()));
    }

    #[test]
    fn tokens_stay_in_vocab() {
        let tokens = random_tokens(7, 1000, 50);
        assert!(tokens.iter().all(|t| *t < 50));
        assert_eq!(tokens, random_tokens(7, 1000, 50));
        assert_eq!(activations(1, 3, 8).len(), 24);
    }

    #[test]
    fn tokenizer_vectors_parse() {
        let inp = "\n__ggml_vocab_test__\nHello\n__ggml_vocab_test__\n a\nb\n__ggml_vocab_test__\n";
        let out = "\n 9906\n 264 198 65\n";
        let vectors = parse_tokenizer_vectors(inp, out).unwrap();
        assert_eq!(vectors.len(), 3);
        assert_eq!(vectors[0].text, "");
        assert!(vectors[0].ids.is_empty());
        assert_eq!(vectors[2].text, " a\nb");
        assert_eq!(vectors[2].ids, [264, 198, 65]);
    }

    #[test]
    fn tokenizer_vector_errors() {
        assert_eq!(
            parse_tokenizer_vectors("a\n__ggml_vocab_test__\nb", " 1\n"),
            Err(VectorFileError::Unterminated(2))
        );
        assert_eq!(
            parse_tokenizer_vectors("a\n__ggml_vocab_test__\n", " 1\n 2\n"),
            Err(VectorFileError::CountMismatch { texts: 1, lines: 2 })
        );
        assert_eq!(
            parse_tokenizer_vectors("a\n__ggml_vocab_test__\n", " 1 x\n"),
            Err(VectorFileError::BadId {
                line: 1,
                word: "x".into()
            })
        );
    }
}
