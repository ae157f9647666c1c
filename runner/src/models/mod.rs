//! Real models on this machine: where model files are looked for, the record of verified
//! digests, downloads from a Hugging Face-style hub into the cache, and `bitnet models`.
//! What the models are, and which cases run on them, is declared in `fixtures/models.yaml`
//! (schema: [`bitnet_conformance::models`]).

mod cli;
mod digests;
mod dirs;
mod download;
mod locate;
mod progress;

pub use cli::{default_models_file, run, ModelsArgs, ModelsCommand, MODELS_FILE_VAR};
pub use digests::{sha256_file, DigestCache, DIGESTS_FILE};
pub use dirs::{ModelDirs, CACHE_VAR, MODELS_VAR};
pub use download::{
    part_path, DownloadError, Downloaded, Hub, HubConfig, RetryPolicy, DEFAULT_ENDPOINT,
    ENDPOINT_VAR, FALLBACKS_VAR, TOKEN_VAR,
};
pub use locate::{locate, missing_reason, Located};
