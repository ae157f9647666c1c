//! Deterministic summaries of a trial's candidate output, kept as insta snapshots named after
//! the case: hashes of packed bytes, token ids, tensor tables. Never raw floats.

use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use bitnet_conformance::backend::{QuantOutput, TensorTable};
use bitnet_conformance::case::QuantizationParams;
use sha2::{Digest, Sha256};

/// Text to snapshot, and whether it depends on the candidate's reduction width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    text: String,
    width_dependent: bool,
}

/// The name suffix of snapshots kept for candidates that reduce in 16 lanes (AVX-512 builds).
pub const LANES16_SUFFIX: &str = "-lanes16";

impl Summary {
    /// A tensor table: alignment, data offset and every tensor's type, shape, offset and size.
    pub fn table(table: &TensorTable) -> Summary {
        let mut text = format!(
            "alignment {}\ndata offset {}\nfile size {}\ntensors {}\n",
            table.alignment,
            table.data_offset,
            table.file_size,
            table.tensors.len()
        );
        for t in &table.tensors {
            let _ = writeln!(
                text,
                "{} type {} shape {:?} offset {} size {}",
                t.name, t.ggml_type, t.shape, t.offset, t.size
            );
        }
        Summary::plain(text)
    }

    /// A quantized tensor: format, shape (and LUT tiling), compared byte count and their sha256.
    pub fn quantized(params: &QuantizationParams, output: &QuantOutput) -> Summary {
        let tiling = params
            .tiling
            .map(|t| format!("tiling {t}\n"))
            .unwrap_or_default();
        Summary::plain(format!(
            "format {}\nshape {}\n{tiling}packed bytes {}\npacked sha256 {}\ndots {}\n",
            params.format,
            params.shape,
            output.packed.len(),
            hex_sha256(&output.packed),
            output.dots.len()
        ))
    }

    /// Token ids per text, one line each.
    pub fn tokens(texts: &[String], ids: &[Vec<u32>]) -> Summary {
        let mut text = format!("texts {}\n", texts.len());
        for (index, row) in ids.iter().enumerate() {
            let row: Vec<String> = row.iter().map(u32::to_string).collect();
            let _ = writeln!(text, "#{index}: {}", row.join(" "));
        }
        Summary::plain(text)
    }

    /// Greedily generated token ids per prompt: a near-tie may resolve differently when the
    /// candidate sums in 16 lanes instead of 8, so a case may keep one snapshot per width.
    pub fn generated(prompts: &[String], ids: &[Vec<u32>]) -> Summary {
        Summary {
            width_dependent: true,
            ..Summary::tokens(prompts, ids)
        }
    }

    /// How many tokens a perplexity run scored.
    pub fn scored(tokens: usize) -> Summary {
        Summary::plain(format!("scored tokens {tokens}\n"))
    }

    fn plain(text: String) -> Summary {
        Summary {
            text,
            width_dependent: false,
        }
    }

    /// The snapshot of case `id` in `dir` this summary is compared with: `<id>-lanes16` when
    /// the summary depends on the reduction width, the candidate reduces in 16 lanes and that
    /// snapshot exists; `<id>` otherwise.
    pub fn snapshot_name(&self, dir: &Path, id: &str, lanes16: bool) -> String {
        let wide = format!("{id}{LANES16_SUFFIX}");
        if self.width_dependent && lanes16 && dir.join(format!("{wide}.snap")).is_file() {
            wide
        } else {
            id.to_string()
        }
    }

    /// Whether [`Summary::snapshot_name`] looks at the candidate's reduction width.
    pub fn width_dependent(&self) -> bool {
        self.width_dependent
    }
}

/// Lowercase hex sha256 of `bytes`.
pub fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares `summary` with the snapshot `<dir>/<name>.snap`; the error says how to bless it.
pub fn check(dir: &Path, name: &str, summary: &Summary) -> Result<(), String> {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(dir);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    let content = summary.text.as_str();
    settings
        .bind(|| catch_unwind(AssertUnwindSafe(|| insta::assert_snapshot!(name, content))))
        .map_err(|_| {
            format!(
                "snapshot {}/{name}.snap does not match: if the new output is right, bless it \
                 (`cargo insta review`, or rerun with INSTA_UPDATE=always); a tolerance never \
                 fixes a snapshot; greedy tokens that differ only because the candidate sums \
                 in 16 lanes go to `{name}{LANES16_SUFFIX}.snap`",
                dir.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_lowercase_hex() {
        assert_eq!(
            hex_sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn token_summaries_list_ids_per_text() {
        let summary = Summary::tokens(&["a".into(), "b".into()], &[vec![1, 2], vec![]]);
        assert_eq!(summary.text, "texts 2\n#0: 1 2\n#1: \n");
    }

    #[test]
    fn generations_take_the_16_lane_snapshot_only_where_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let generated = Summary::generated(&["a".into()], &[vec![1]]);
        let tokenized = Summary::tokens(&["a".into()], &[vec![1]]);
        assert_eq!(generated.snapshot_name(dir.path(), "case", true), "case");
        std::fs::write(dir.path().join("case-lanes16.snap"), "").unwrap();
        assert_eq!(
            generated.snapshot_name(dir.path(), "case", true),
            "case-lanes16"
        );
        assert_eq!(generated.snapshot_name(dir.path(), "case", false), "case");
        assert_eq!(tokenized.snapshot_name(dir.path(), "case", true), "case");
    }
}
