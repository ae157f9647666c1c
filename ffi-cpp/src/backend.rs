//! The once-per-process initialisation of the reference.

use crate::bindings as sys;
use crate::error::{check, RefError};

use std::sync::OnceLock;

/// Proof that the reference backend is initialised (`llama_backend_init`, fp16 tables).
///
/// Obtain it with [`Backend::init`]; kernels, files and models all take one. Copying the
/// token is free; initialisation happens once per process however often `init` is called.
#[derive(Debug, Clone, Copy)]
pub struct Backend {
    _initialised: (),
}

impl Backend {
    /// Initialises the reference on first use and returns the token.
    pub fn init() -> Result<Self, RefError> {
        static INIT: OnceLock<Result<(), RefError>> = OnceLock::new();
        INIT.get_or_init(|| {
            // SAFETY: bnref_init takes no arguments and is safe to call from any thread.
            check("bnref_init", unsafe { sys::bnref_init() })
        })
        .clone()
        .map(|()| Self { _initialised: () })
    }
}
