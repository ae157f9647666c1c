//! The device's share of a sampler's pick ([`PickRequest`]) on a row of logits in device
//! memory, and the buffers it needs.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, CudaView};

use super::gpu::driver;
use super::launch::{dim, Launcher, PickArgs};
use super::CudaError;
use crate::model::{Narrowing, PickRequest, Picked};

/// The most candidates a pick returns; a row with more goes to the host whole.
const PICK_CAP: usize = 16_384;

/// The narrowings as the `pick` kernel takes them (`PICK_*` in kernels.cu).
const PICK_TOP_K: i32 = 0;
const PICK_TOP_P: i32 = 1;
const PICK_AT_LEAST: i32 = 2;
const PICK_DRAW: i32 = 3;

/// `result[0]` of the `pick` kernel (`PICKED_*` in kernels.cu).
const PICKED_TOKEN: i32 = 1;
const PICKED_CANDIDATES: i32 = 2;

/// Device buffers of picks from rows of `n` logits.
pub(crate) struct PickBuffers {
    n: usize,
    work: CudaSlice<f32>,
    penalized: CudaSlice<u32>,
    /// `(token, logit bits)` pairs.
    candidates: CudaSlice<u32>,
    /// What was picked, the token, the number of candidates, and the mass as a double in
    /// words 4 and 5.
    result: CudaSlice<i32>,
}

impl PickBuffers {
    /// Buffers for rows of `n` logits.
    pub fn new(stream: &Arc<CudaStream>, n: usize) -> Result<Self, CudaError> {
        let alloc = driver("allocating the sampler's buffers");
        Ok(PickBuffers {
            n,
            work: stream.alloc_zeros(n.max(1)).map_err(&alloc)?,
            penalized: stream.alloc_zeros(1).map_err(&alloc)?,
            candidates: stream.alloc_zeros(2 * PICK_CAP).map_err(&alloc)?,
            result: stream.alloc_zeros(6).map_err(&alloc)?,
        })
    }

    /// Runs `request` on `row` (`n` logits) and brings back what it picked: a token, the
    /// candidates, or the whole row when the device leaves the pick to the host.
    pub fn pick(
        &mut self,
        launcher: &Launcher<'_>,
        row: &CudaView<f32>,
        request: &PickRequest,
    ) -> Result<Picked, CudaError> {
        let stream = launcher.stream;
        if row.len() != self.n || self.n == 0 {
            return Err(CudaError::Request(format!(
                "a pick from {} logits with buffers for {}",
                row.len(),
                self.n
            )));
        }
        let n_penalized = request.penalized.len();
        if self.penalized.len() < n_penalized {
            self.penalized = stream
                .alloc_zeros(n_penalized)
                .map_err(driver("allocating the penalized tokens"))?;
        }
        if n_penalized > 0 {
            stream
                .memcpy_htod(
                    &request.penalized,
                    &mut self.penalized.slice_mut(..n_penalized),
                )
                .map_err(driver("copying the penalized tokens"))?;
        }
        let args = pick_args(request.narrowing, request.penalty, n_penalized)?;
        launcher.pick(
            row,
            &mut self.work,
            &self.penalized,
            &args,
            (&mut self.candidates, PICK_CAP),
            &mut self.result,
        )?;
        let mut result = [0i32; 6];
        stream
            .memcpy_dtoh(&self.result, &mut result)
            .map_err(driver("copying the pick to the host"))?;
        match result[0] {
            PICKED_TOKEN => Ok(Picked::Token(result[1] as u32)),
            PICKED_CANDIDATES => {
                let count = usize::try_from(result[2]).unwrap_or(0).min(PICK_CAP);
                let mut pairs = vec![0u32; 2 * count];
                if count > 0 {
                    stream
                        .memcpy_dtoh(&self.candidates.slice(..2 * count), &mut pairs)
                        .map_err(driver("copying the candidates to the host"))?;
                }
                let mass_bits = u64::from(result[4] as u32) | (u64::from(result[5] as u32) << 32);
                let mass = matches!(request.narrowing, Narrowing::TopP(_))
                    .then_some(f64::from_bits(mass_bits));
                Ok(Picked::Candidates {
                    candidates: pairs
                        .chunks_exact(2)
                        .map(|pair| (pair[0], f32::from_bits(pair[1])))
                        .collect(),
                    mass,
                })
            }
            _ => {
                let mut logits = vec![0f32; self.n];
                stream
                    .memcpy_dtoh(row, &mut logits)
                    .map_err(driver("copying logits to the host"))?;
                Ok(Picked::Logits(logits))
            }
        }
    }
}

/// The kernel's arguments for `narrowing`.
fn pick_args(
    narrowing: Narrowing,
    penalty: f32,
    n_penalized: usize,
) -> Result<PickArgs, CudaError> {
    let mut args = PickArgs {
        n_penalized: dim(n_penalized)?,
        penalty,
        mode: PICK_TOP_K,
        k: 0,
        p: 1.0,
        offset: 0.0,
        temperature: 1.0,
        unit: 0.0,
    };
    match narrowing {
        Narrowing::TopK(k) => args.k = dim(k)?,
        Narrowing::TopP(p) => (args.mode, args.p) = (PICK_TOP_P, p),
        Narrowing::AtLeast(offset) => (args.mode, args.offset) = (PICK_AT_LEAST, offset),
        Narrowing::Draw { temperature, unit } => {
            (args.mode, args.temperature, args.unit) = (PICK_DRAW, temperature, unit)
        }
    }
    Ok(args)
}
