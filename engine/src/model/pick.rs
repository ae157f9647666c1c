//! What the device that holds a row of logits does toward the next token before the host
//! finishes the pick: the device's share of a sampler, so that a GPU returns one token or a few
//! candidates instead of the whole row.

/// The device's share of one pick.
#[derive(Debug, Clone, PartialEq)]
pub struct PickRequest {
    /// The repetition penalty (`1`: none) and the distinct tokens it applies to.
    pub penalty: f32,
    /// Distinct recent tokens, ascending.
    pub penalized: Vec<u32>,
    /// How the device narrows the (penalized) row.
    pub narrowing: Narrowing,
}

/// How a device narrows a row of logits. Whatever it returns, the host's sampler finishes
/// exactly as it would on the whole row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Narrowing {
    /// The tokens whose logits are at least `k`-th largest (ties included).
    TopK(usize),
    /// The most likely tokens whose probabilities add up to more than `p` (with a margin), and
    /// the mass of the whole row as [`row_mass`] adds it.
    TopP(f32),
    /// The tokens whose logits are at least the largest plus `offset` (`offset <= 0`).
    AtLeast(f32),
    /// The whole draw: a token from the softmax of the row divided by `temperature`, at
    /// `unit` of the way through its mass.
    Draw {
        /// Divides the logits.
        temperature: f32,
        /// A uniform value in `[0, 1)`.
        unit: f64,
    },
}

/// What came back from the device.
#[derive(Debug, Clone, PartialEq)]
pub enum Picked {
    /// The token itself.
    Token(u32),
    /// The candidates of the narrowing, in token order, with their penalized logits; the row's
    /// mass for [`Narrowing::TopP`].
    Candidates {
        /// `(token, logit)` pairs.
        candidates: Vec<(u32, f32)>,
        /// The row's mass, for top-p.
        mass: Option<f64>,
    },
    /// The whole row (the CPU's logits, or a row the device could not narrow).
    Logits(Vec<f32>),
}

/// Weights of a [`row_mass`] added in one run before the runs are added.
pub const MASS_BLOCK: usize = 256;

/// The softmax weight of `logit` against the row's largest, `max`: the reference's 8-lane
/// `expf` of the difference, the same bits on every device.
pub fn pick_weight(logit: f32, max: f32) -> f32 {
    super::vec_math::vec_expf(logit - max, crate::kernels::ReduceWidth::Lanes8)
}

/// The sums of `weights` in runs of [`MASS_BLOCK`], each added in order in f64.
pub fn block_masses(weights: impl ExactSizeIterator<Item = f32>) -> Vec<f64> {
    let mut masses = Vec::with_capacity(weights.len().div_ceil(MASS_BLOCK));
    for (i, w) in weights.enumerate() {
        if i % MASS_BLOCK == 0 {
            masses.push(0.0);
        }
        *masses.last_mut().expect("pushed above") += f64::from(w);
    }
    masses
}

/// The mass of a row of logits whose largest is `max`: the [`block_masses`] of its
/// [`pick_weight`]s, added in order.
pub fn row_mass(logits: impl ExactSizeIterator<Item = f32>, max: f32) -> f64 {
    block_masses(logits.map(|l| pick_weight(l, max)))
        .into_iter()
        .fold(0.0, |total, m| total + m)
}
