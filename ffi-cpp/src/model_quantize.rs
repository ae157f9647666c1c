//! Writing reference-quantized model files with `llama_model_quantize`.

use crate::backend::Backend;
use crate::bindings as sys;
use crate::convert::path_to_cstring;
use crate::error::{check, RefError};
use crate::types::GgmlType;

use std::path::Path;

/// A `llama_ftype`: the target format of a whole model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileType(pub i32);

impl FileType {
    pub const ALL_F32: Self = Self(0);
    pub const MOSTLY_F16: Self = Self(1);
    pub const MOSTLY_TQ1_0: Self = Self(36);
    pub const MOSTLY_TQ2_0: Self = Self(37);
    pub const MOSTLY_I2_S: Self = Self(40);
}

/// What `llama_model_quantize` should produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantizeParams {
    pub file_type: FileType,
    /// Type of `token_embd.weight`; `None` lets the reference choose.
    pub token_embedding_type: Option<GgmlType>,
    /// Type of `output.weight`; `None` lets the reference choose.
    pub output_tensor_type: Option<GgmlType>,
    /// Quantize every eligible tensor to the file type's default type.
    pub pure: bool,
}

impl QuantizeParams {
    /// The reference's defaults for `file_type`.
    pub fn new(file_type: FileType) -> Self {
        Self {
            file_type,
            token_embedding_type: None,
            output_tensor_type: None,
            pure: false,
        }
    }
}

/// Quantizes the GGUF model at `input` into `output` with the reference, on one thread
/// (with more, the reference has written corrupt I2_S files).
pub fn quantize_model_file(
    _backend: &Backend,
    input: impl AsRef<Path>,
    output: impl AsRef<Path>,
    params: &QuantizeParams,
) -> Result<(), RefError> {
    const CALL: &str = "bnref_model_quantize";
    let input = path_to_cstring(CALL, input.as_ref())?;
    let output = path_to_cstring(CALL, output.as_ref())?;
    let optional_type = |ty: Option<GgmlType>| ty.map_or(Ok(-1), |t| t.to_c(CALL));
    let c_params = sys::bnref_quantize_params {
        ftype: params.file_type.0,
        token_embedding_type: optional_type(params.token_embedding_type)?,
        output_tensor_type: optional_type(params.output_tensor_type)?,
        pure_: params.pure,
    };
    // SAFETY: both paths are valid C strings and `c_params` lives across the call.
    check(CALL, unsafe {
        sys::bnref_model_quantize(input.as_ptr(), output.as_ptr(), &c_params)
    })
}
