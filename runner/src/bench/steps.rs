//! `bitnet bench --steps`: the engine's decode time split by the steps of its graph, timed
//! through the tracer of [`Session::eval_traced`] (the CPU graph only).

use std::time::Instant;

use bitnet_engine::model::{argmax, ModelError, Session};
use serde::{Deserialize, Serialize};

/// Time spent on one step of the graph: from the op traced before it to `op` (named as the
/// reference's graph names it), over every layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTime {
    /// The op that ends the step; `argmax` for the pick after the logits.
    pub op: String,
    /// Seconds.
    pub seconds: f64,
    /// Bytes of weights its products read.
    pub weight_bytes: f64,
}

/// Sums the time of each step over the decode steps it times, in the order the ops first come.
#[derive(Debug, Default)]
pub struct StepClock {
    steps: Vec<StepTime>,
}

impl StepClock {
    /// One greedy decode step of `token`, its time split by op; returns the next token.
    pub fn decode(&mut self, session: &mut Session<'_>, token: u32) -> Result<u32, ModelError> {
        let steps = &mut self.steps;
        let mut last = Instant::now();
        let logits = session.eval_traced(&[token], &mut |traced| {
            let now = Instant::now();
            add(
                steps,
                traced.op,
                (now - last).as_secs_f64(),
                traced.weight_bytes as f64,
            );
            last = now;
        })?;
        let next = argmax(logits.as_slice());
        add(steps, "argmax", last.elapsed().as_secs_f64(), 0.0);
        Ok(next)
    }

    /// The steps timed since the last call.
    pub fn take(&mut self) -> Vec<StepTime> {
        std::mem::take(&mut self.steps)
    }
}

fn add(steps: &mut Vec<StepTime>, op: &str, seconds: f64, weight_bytes: f64) {
    match steps.iter_mut().find(|s| s.op == op) {
        Some(step) => {
            step.seconds += seconds;
            step.weight_bytes += weight_bytes;
        }
        None => steps.push(StepTime {
            op: op.to_string(),
            seconds,
            weight_bytes,
        }),
    }
}

/// The steps of several runs added up op by op, divided by `tokens`: seconds and weight bytes
/// per token.
pub fn per_token(runs: &[Vec<StepTime>], tokens: usize) -> Vec<StepTime> {
    let mut total = Vec::new();
    for step in runs.iter().flatten() {
        add(&mut total, &step.op, step.seconds, step.weight_bytes);
    }
    for step in &mut total {
        step.seconds /= tokens.max(1) as f64;
        step.weight_bytes /= tokens.max(1) as f64;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(op: &str, seconds: f64, weight_bytes: f64) -> StepTime {
        StepTime {
            op: op.into(),
            seconds,
            weight_bytes,
        }
    }

    #[test]
    fn runs_add_up_op_by_op_in_first_order() {
        let runs = [
            vec![step("attn_norm", 1.0, 0.0), step("Qcur", 3.0, 10.0)],
            vec![
                step("Qcur", 5.0, 10.0),
                step("attn_norm", 1.0, 0.0),
                step("argmax", 2.0, 0.0),
            ],
        ];
        let total = per_token(&runs, 2);
        assert_eq!(
            total,
            [
                step("attn_norm", 1.0, 0.0),
                step("Qcur", 4.0, 10.0),
                step("argmax", 1.0, 0.0)
            ]
        );
    }
}
