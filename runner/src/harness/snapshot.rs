//! Deterministic summaries of a trial's candidate output, kept as insta snapshots named after
//! the case: hashes of packed bytes, token ids, tensor tables. Never raw floats.

use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use bitnet_conformance::backend::{QuantOutput, TensorTable};
use bitnet_conformance::case::QuantizationParams;
use sha2::{Digest, Sha256};

/// Text to snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary(String);

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
        Summary(text)
    }

    /// A quantized tensor: format, shape (and LUT tiling), compared byte count and their sha256.
    pub fn quantized(params: &QuantizationParams, output: &QuantOutput) -> Summary {
        let tiling = params
            .tiling
            .map(|t| format!("tiling {t}\n"))
            .unwrap_or_default();
        Summary(format!(
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
        Summary(text)
    }

    /// How many tokens a perplexity run scored.
    pub fn scored(tokens: usize) -> Summary {
        Summary(format!("scored tokens {tokens}\n"))
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
    let content = summary.0.as_str();
    settings
        .bind(|| catch_unwind(AssertUnwindSafe(|| insta::assert_snapshot!(name, content))))
        .map_err(|_| {
            format!(
                "snapshot {}/{name}.snap does not match: if the new output is right, bless it \
                 (`cargo insta review`, or rerun with INSTA_UPDATE=always); a tolerance never \
                 fixes a snapshot",
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
        assert_eq!(summary.0, "texts 2\n#0: 1 2\n#1: \n");
    }
}
