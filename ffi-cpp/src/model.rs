//! Loaded reference models: metadata and tokenization.

use crate::backend::Backend;
use crate::bindings as sys;
use crate::convert::{path_to_cstring, str_to_cstring, tokens_from_c, tokens_to_c};
use crate::error::{check, RefError};
use crate::guard::sized_call;

use std::mem::MaybeUninit;
use std::path::Path;
use std::ptr::{self, NonNull};
use std::sync::Arc;

/// How to load a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelParams {
    /// Load only the vocabulary (enough for tokenization; contexts cannot be created).
    pub vocab_only: bool,
    /// Map the file instead of reading it.
    pub use_mmap: bool,
}

impl Default for ModelParams {
    fn default() -> Self {
        Self {
            vocab_only: false,
            use_mmap: true,
        }
    }
}

/// A `llama_vocab_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VocabType(pub i32);

impl VocabType {
    pub const NONE: Self = Self(0);
    /// SentencePiece (LLaMA).
    pub const SPM: Self = Self(1);
    /// Byte-level BPE (GPT-2, LLaMA 3).
    pub const BPE: Self = Self(2);
}

/// Hyperparameters and special tokens of a loaded model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    pub n_vocab: u32,
    pub n_ctx_train: u32,
    pub n_embd: u32,
    pub n_layer: u32,
    pub vocab_type: VocabType,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// Whether tokenizing with `add_special` prepends BOS.
    pub add_bos: bool,
    pub vocab_only: bool,
}

/// A model loaded by the reference. Cloning shares it; it is freed with its last clone
/// (contexts keep it alive too).
#[derive(Clone)]
pub struct Model {
    inner: Arc<LoadedModel>,
}

struct LoadedModel {
    handle: ModelHandle,
    info: ModelInfo,
}

/// An owned `bnref_model`, freed on drop.
struct ModelHandle(NonNull<sys::bnref_model>);

// SAFETY: after loading, the shim and the reference only read the model (vocabulary,
// hyperparameters, weights); every piece of mutable evaluation state lives in contexts. The
// reference's tokenizers keep their working state per call, so concurrent use from several
// threads is sound, as the reference's own tokenizer tests and multi-context use rely on.
unsafe impl Send for ModelHandle {}
// SAFETY: see above; all methods reachable through `&Model` are read-only on the C side.
unsafe impl Sync for ModelHandle {}

impl Drop for ModelHandle {
    fn drop(&mut self) {
        // SAFETY: the handle came from bnref_model_load and no context outlives it, since
        // each context holds a clone of the owning `Model`.
        unsafe { sys::bnref_model_free(self.0.as_ptr()) }
    }
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("info", &self.inner.info)
            .finish()
    }
}

impl Model {
    /// Loads the GGUF model at `path`.
    pub fn load(
        _backend: &Backend,
        path: impl AsRef<Path>,
        params: &ModelParams,
    ) -> Result<Self, RefError> {
        const CALL: &str = "bnref_model_load";
        let c_path = path_to_cstring(CALL, path.as_ref())?;
        let c_params = sys::bnref_model_params {
            vocab_only: params.vocab_only,
            use_mmap: params.use_mmap,
        };
        let mut raw = ptr::null_mut();
        // SAFETY: the path is a valid C string, `c_params` lives across the call and `raw`
        // is a valid output location.
        check(CALL, unsafe {
            sys::bnref_model_load(c_path.as_ptr(), &c_params, &mut raw)
        })?;
        let handle = NonNull::new(raw)
            .map(ModelHandle)
            .ok_or_else(|| RefError::Internal {
                call: CALL,
                message: "succeeded without a handle".into(),
            })?;
        let info = read_info(&handle)?;
        Ok(Self {
            inner: Arc::new(LoadedModel { handle, info }),
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.inner.info
    }

    pub(crate) fn as_ptr(&self) -> *const sys::bnref_model {
        self.inner.handle.0.as_ptr()
    }

    /// The metadata value of `key`, as text.
    pub fn meta(&self, key: &str) -> Result<String, RefError> {
        const CALL: &str = "bnref_model_meta";
        let c_key = str_to_cstring(CALL, key)?;
        let bytes = sized_call(CALL, 256, |buf: *mut u8, cap, len| {
            // SAFETY: the model is alive, the key is a valid C string and `buf` has `cap` bytes.
            unsafe { sys::bnref_model_meta(self.as_ptr(), c_key.as_ptr(), buf.cast(), cap, len) }
        })?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Token ids of `text`. `add_special` adds BOS/EOS as the vocabulary asks;
    /// `parse_special` recognises special tokens written out in the text.
    pub fn tokenize(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, RefError> {
        const CALL: &str = "bnref_tokenize";
        let guess = text.len() + 2;
        let tokens = sized_call(CALL, guess, |buf: *mut i32, cap, n| {
            // SAFETY: the model is alive, `text` is readable for text.len() bytes and `buf`
            // has room for `cap` tokens.
            unsafe {
                sys::bnref_tokenize(
                    self.as_ptr(),
                    text.as_ptr().cast(),
                    text.len(),
                    add_special,
                    parse_special,
                    buf,
                    cap,
                    n,
                )
            }
        })?;
        tokens_from_c(CALL, tokens)
    }

    /// The bytes of one token (possibly part of a UTF-8 sequence). `special` renders
    /// control tokens instead of leaving them empty.
    pub fn token_to_piece(&self, token: u32, special: bool) -> Result<Vec<u8>, RefError> {
        const CALL: &str = "bnref_token_to_piece";
        let token = tokens_to_c(CALL, &[token])?[0];
        sized_call(CALL, 32, |buf: *mut u8, cap, len| {
            // SAFETY: the model is alive and `buf` has room for `cap` bytes.
            unsafe {
                sys::bnref_token_to_piece(self.as_ptr(), token, special, buf.cast(), cap, len)
            }
        })
    }

    /// The text of `tokens` as the reference renders it.
    pub fn detokenize(
        &self,
        tokens: &[u32],
        remove_special: bool,
        unparse_special: bool,
    ) -> Result<Vec<u8>, RefError> {
        const CALL: &str = "bnref_detokenize";
        let c_tokens = tokens_to_c(CALL, tokens)?;
        sized_call(CALL, tokens.len() * 8 + 16, |buf: *mut u8, cap, len| {
            // SAFETY: the model is alive, `c_tokens` holds its length in ids and `buf` has
            // room for `cap` bytes.
            unsafe {
                sys::bnref_detokenize(
                    self.as_ptr(),
                    c_tokens.as_ptr(),
                    c_tokens.len(),
                    remove_special,
                    unparse_special,
                    buf.cast(),
                    cap,
                    len,
                )
            }
        })
    }
}

fn read_info(handle: &ModelHandle) -> Result<ModelInfo, RefError> {
    const CALL: &str = "bnref_model_info_get";
    let mut out = MaybeUninit::<sys::bnref_model_info>::uninit();
    // SAFETY: the model was just loaded and `out` is a valid place for its info.
    check(CALL, unsafe {
        sys::bnref_model_info_get(handle.0.as_ptr(), out.as_mut_ptr())
    })?;
    // SAFETY: on success the shim filled every field.
    let raw = unsafe { out.assume_init() };
    let count = |v: i32| u32::try_from(v).unwrap_or(0);
    Ok(ModelInfo {
        n_vocab: count(raw.n_vocab),
        n_ctx_train: count(raw.n_ctx_train),
        n_embd: count(raw.n_embd),
        n_layer: count(raw.n_layer),
        vocab_type: VocabType(raw.vocab_type),
        bos: u32::try_from(raw.bos).ok(),
        eos: u32::try_from(raw.eos).ok(),
        add_bos: raw.add_bos,
        vocab_only: raw.vocab_only,
    })
}
