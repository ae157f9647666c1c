//! Tensor-data checks: alignment, bounds and overlap. All problems are collected, not just the first.

use super::error::GgufError;
use super::parse::Layout;

impl Layout {
    /// Every tensor-data problem in the file; empty when the file is valid.
    pub fn validate(&self) -> Vec<GgufError> {
        let mut issues = Vec::new();
        let mut spans = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            if t.offset % self.alignment != 0 {
                issues.push(GgufError::MisalignedTensor {
                    tensor: t.name.clone(),
                    offset: t.offset,
                    alignment: self.alignment,
                });
            }
            let end = self
                .data_offset
                .checked_add(t.offset)
                .and_then(|s| s.checked_add(t.n_bytes));
            match end {
                Some(end) if end <= self.file_len => spans.push((t.file_offset, end, &t.name)),
                _ => issues.push(GgufError::TensorOutOfBounds {
                    tensor: t.name.clone(),
                    start: t.file_offset,
                    end: end.unwrap_or(u64::MAX),
                    file_len: self.file_len,
                }),
            }
        }
        spans.sort();
        let mut furthest: Option<(u64, u64, &String)> = None;
        for &(start, end, name) in &spans {
            if let Some((other_start, other_end, other)) = furthest {
                if start < other_end && end > start {
                    issues.push(GgufError::TensorOverlap {
                        tensor: name.clone(),
                        start,
                        end,
                        other: other.clone(),
                        other_start,
                        other_end,
                    });
                }
            }
            if furthest.is_none_or(|(_, e, _)| end > e) {
                furthest = Some((start, end, name));
            }
        }
        issues
    }
}
