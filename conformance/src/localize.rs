//! The divergence localizer: when a model's logits disagree, compare the intermediate tensors
//! of both sides op by op, in graph order, and name the first one whose NMSE exceeds the bound.
//!
//! Tensors are named as the reference's graph names them (`attn_norm-0`, `Qcur-3`,
//! `result_norm`, …): a backend that traces its graph reports its tensors under those names,
//! laid out token-major with the innermost axis first, as ggml stores them.

use std::collections::BTreeMap;
use std::fmt;

use crate::backend::GraphTensor;
use crate::metrics::nmse;

/// The per-layer ops a trace reports (each as `<op>-<layer>`), followed by the graph's
/// final ops [`FINAL_OPS`]: the reference's names for the `bitnet` and `llama` graphs.
pub const LAYER_OPS: [&str; 14] = [
    "attn_norm",
    "Qcur",
    "Kcur",
    "Vcur",
    "kqv_out",
    "attn_sub_norm",
    "attn_o_out",
    "ffn_inp",
    "ffn_norm",
    "ffn_sub_out",
    "ffn_sub_norm",
    "ffn_down",
    "ffn_out",
    "l_out",
];

/// The ops after the last layer.
pub const FINAL_OPS: [&str; 2] = ["result_norm", "result_output"];

/// One op present on both sides.
#[derive(Debug, Clone, PartialEq)]
pub struct OpComparison {
    /// The graph name.
    pub name: String,
    /// Σ(c−r)²/Σr² over the tensor; infinite when the lengths differ.
    pub nmse: f64,
    /// Largest |c−r|; infinite when the lengths differ.
    pub max_abs: f64,
    /// Element counts of candidate and reference.
    pub lens: (usize, usize),
}

impl OpComparison {
    fn of(name: &str, candidate: &[f32], reference: &[f32]) -> OpComparison {
        let same_len = candidate.len() == reference.len();
        let max_abs = if same_len {
            candidate
                .iter()
                .zip(reference)
                .map(|(c, r)| f64::from((c - r).abs()))
                .fold(0.0, |m, d| if d.is_nan() { f64::NAN } else { m.max(d) })
        } else {
            f64::INFINITY
        };
        OpComparison {
            name: name.to_string(),
            nmse: if same_len {
                nmse(candidate, reference)
            } else {
                f64::INFINITY
            },
            max_abs,
            lens: (candidate.len(), reference.len()),
        }
    }

    /// Whether the op stays within `bound` (a NaN never does).
    pub fn within(&self, bound: f64) -> bool {
        self.nmse <= bound
    }
}

/// What the localizer found.
#[derive(Debug, Clone, PartialEq)]
pub struct Localization {
    /// The NMSE bound each op was held to.
    pub bound: f64,
    /// Ops traced by both sides, in the reference's graph order.
    pub ops: Vec<OpComparison>,
    /// Index in `ops` of the first op over the bound.
    pub first_divergent: Option<usize>,
    /// Reference ops the candidate did not trace (compared ops are unaffected).
    pub only_reference: Vec<String>,
}

/// Compares the traced tensors of both sides in the reference's order. Where a name occurs
/// more than once on a side (a graph names a tensor again after reshaping or rotating it), the
/// last occurrence is the one compared, at that position.
pub fn localize(candidate: &[GraphTensor], reference: &[GraphTensor], bound: f64) -> Localization {
    let candidate = last_by_name(candidate);
    let mut order: Vec<&GraphTensor> = Vec::new();
    for tensor in reference {
        order.retain(|t| t.name != tensor.name);
        order.push(tensor);
    }
    let mut ops = Vec::new();
    let mut only_reference = Vec::new();
    for tensor in order {
        match candidate.get(tensor.name.as_str()) {
            Some(c) => ops.push(OpComparison::of(&tensor.name, &c.values, &tensor.values)),
            None => only_reference.push(tensor.name.clone()),
        }
    }
    let first_divergent = ops.iter().position(|op| !op.within(bound));
    Localization {
        bound,
        ops,
        first_divergent,
        only_reference,
    }
}

fn last_by_name(tensors: &[GraphTensor]) -> BTreeMap<&str, &GraphTensor> {
    tensors.iter().map(|t| (t.name.as_str(), t)).collect()
}

impl fmt::Display for Localization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.first_divergent {
            Some(i) => {
                let op = &self.ops[i];
                write!(
                    f,
                    "first divergent op: `{}` (NMSE {:.3e} > {:.1e}, max |Δ| {:.3e}",
                    op.name, op.nmse, self.bound, op.max_abs
                )?;
                if op.lens.0 != op.lens.1 {
                    write!(f, ", {} vs {} elements", op.lens.0, op.lens.1)?;
                }
                write!(f, ")")?;
                if i > 0 {
                    let before = &self.ops[i - 1];
                    write!(
                        f,
                        "; the op before it, `{}`, agrees (NMSE {:.3e})",
                        before.name, before.nmse
                    )?;
                }
            }
            None => write!(
                f,
                "all {} traced ops agree within NMSE {:.1e}",
                self.ops.len(),
                self.bound
            )?,
        }
        if !self.only_reference.is_empty() {
            write!(
                f,
                "; not traced by the candidate: {}",
                self.only_reference.join(", ")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, values: &[f32]) -> GraphTensor {
        GraphTensor {
            name: name.into(),
            values: values.to_vec(),
        }
    }

    #[test]
    fn names_the_first_op_over_the_bound_in_reference_order() {
        let reference = [
            t("attn_norm-0", &[1.0, 2.0]),
            t("Qcur-0", &[0.0, 0.0]),
            t("Qcur-0", &[3.0, 4.0]),
            t("l_out-0", &[5.0, 6.0]),
            t("result_norm", &[7.0, 8.0]),
        ];
        let candidate = [
            t("result_norm", &[7.5, 8.0]),
            t("attn_norm-0", &[1.0, 2.0]),
            t("Qcur-0", &[3.0, 4.1]),
            t("l_out-0", &[5.0, 6.0]),
        ];
        let found = localize(&candidate, &reference, 1e-6);
        let names: Vec<_> = found.ops.iter().map(|op| op.name.as_str()).collect();
        assert_eq!(names, ["attn_norm-0", "Qcur-0", "l_out-0", "result_norm"]);
        assert_eq!(found.first_divergent, Some(1));
        let text = found.to_string();
        assert!(
            text.starts_with("first divergent op: `Qcur-0` (NMSE 4.000e-4 > 1.0e-6"),
            "{text}"
        );
        assert!(
            text.contains("the op before it, `attn_norm-0`, agrees"),
            "{text}"
        );
    }

    #[test]
    fn lengths_nans_and_missing_ops_are_reported() {
        let reference = [t("a-0", &[1.0, 2.0]), t("b-0", &[1.0]), t("c-0", &[1.0])];
        let candidate = [t("a-0", &[1.0, 2.0, 3.0]), t("b-0", &[f32::NAN])];
        let found = localize(&candidate, &reference, 1e-6);
        assert_eq!(found.first_divergent, Some(0));
        assert!(found.to_string().contains("3 vs 2 elements"));
        assert!(!found.ops[1].within(1.0), "a NaN never agrees");
        assert_eq!(found.only_reference, ["c-0"]);

        let agreeing = localize(&reference, &reference, 0.0);
        assert_eq!(agreeing.first_divergent, None);
        assert_eq!(
            agreeing.to_string(),
            "all 3 traced ops agree within NMSE 0.0e0"
        );
    }
}
