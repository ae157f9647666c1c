//! Model loading and the forward pass of the `bitnet`, `bitnet-b1.58` and `llama` graphs on the CPU.
//!
//! The numerics reproduce a GCC `-O3 -march=native` build of the reference on the same CPU (with the
//! default [`ModelOptions`]): RMSNorm sums squares in f64; every ternary matmul quantizes its input
//! per token (I8_S for I2_S, Q8_K for TQ1_0/TQ2_0, lookup tables for TL1 and TL2, whose tilings
//! come from [`ModelOptions::tl1_tilings`] and [`ModelOptions::tl2_tilings`] or the file's
//! metadata), and so do Q8_0 and Q6_K token embeddings used
//! as output heads (to Q8_0 and Q8_K), whose rows dequantize as ggml's `get_rows` does; RoPE angles
//! advance by repeated f32 multiplication and each rotation is contracted into an FMA; SiLU and
//! softmax use the reference's vectorized `expf`; the F16 KV cache rounds keys and values when
//! stored and the attended length is padded to 32 cells; `K·q` takes the vector dot product per
//! token (on f16-rounded queries) while `V·p` and the dense weights follow the reference's batched
//! dispatch. Weights stay in the memory-mapped file; only the small norm vectors are copied
//! ([`Model::weight_memory`]).

mod attention;
mod device;
mod error;
mod linear;
mod loader;
mod lut_tilings;
pub mod ops;
mod options;
mod perplexity;
pub mod pick;
mod session;
mod vec_math;

pub use crate::synth::Arch;
#[cfg(feature = "cuda")]
pub(crate) use attention::KV_PAD;
pub use device::{resolve_device, Device, DeviceChoice, DeviceError, DeviceStrategy};
pub use error::ModelError;
pub use linear::Linear;
pub use loader::{Layer, Model, WeightMemory};
pub use lut_tilings::{
    LutTiling, LutTilings, ModelTilings, TilingConfigError, Tl1Tilings, Tl2Tilings,
};
pub use options::{ModelOptions, SPLIT_ATTENTION_FROM};
pub use perplexity::{perplexity, perplexity_with_progress, Perplexity};
pub use pick::{Narrowing, PickRequest, Picked};
pub use session::{argmax, Logits, Session, TracedOp};
