//! Intermediate tensors captured through the reference's eval callback.

use crate::bindings as sys;
use crate::context::Context;
use crate::convert::owned_string;
use crate::error::{check, RefError};
use crate::types::GgmlType;

use std::mem::MaybeUninit;
use std::slice;

/// A tensor of the reference's graph, copied as f32 right after it was computed.
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedTensor {
    /// Graph name, e.g. `attn_norm-0` (layer suffix) or `result_norm`.
    pub name: String,
    /// Type of the tensor in the graph.
    pub source_type: GgmlType,
    /// Shape, `ne[0]` innermost (`ne[1]` is usually the token position).
    pub ne: [u64; 4],
    /// The values in ne order; `None` if the type cannot be converted.
    pub data: Option<Vec<f32>>,
    /// Which `llama_decode` call of the context produced it.
    pub eval_index: u32,
}

impl Context {
    /// Removes and returns the tensors captured so far (see [`crate::ContextParams::capture`]).
    pub fn take_captures(&mut self) -> Result<Vec<CapturedTensor>, RefError> {
        const CALL: &str = "bnref_context_capture_get";
        // SAFETY: the handle is alive; the call only reads it.
        let count = unsafe { sys::bnref_context_n_captures(self.as_ptr()) };
        let mut captures = Vec::with_capacity(count);
        for index in 0..count {
            let mut out = MaybeUninit::<sys::bnref_capture>::uninit();
            // SAFETY: the handle is alive and `out` is a valid place for one capture.
            check(CALL, unsafe {
                sys::bnref_context_capture_get(self.as_ptr(), index, out.as_mut_ptr())
            })?;
            // SAFETY: on success the shim filled every field.
            let raw = unsafe { out.assume_init() };
            let data = (!raw.data.is_null()).then(|| {
                // SAFETY: `data` points to `len` floats owned by the context, unchanged until
                // its next evaluation or clear; they are copied right away.
                unsafe { slice::from_raw_parts(raw.data, raw.len) }.to_vec()
            });
            captures.push(CapturedTensor {
                // SAFETY: the name is owned by the context and valid until the clear below.
                name: unsafe { owned_string(raw.name) },
                source_type: GgmlType(raw.source_type.unsigned_abs()),
                ne: raw.ne.map(i64::unsigned_abs),
                data,
                eval_index: raw.eval_index,
            });
        }
        // SAFETY: the handle is alive and exclusively borrowed; nothing refers to the captures.
        unsafe { sys::bnref_context_clear_captures(self.as_ptr()) };
        Ok(captures)
    }
}
