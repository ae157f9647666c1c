//! Text generation on a [`Session`](crate::model::Session): sampling, stop conditions, streaming
//! with partial-UTF-8 handling, chat templates and run metrics.

mod chat;
mod generate;
mod metrics;
mod sampling;
mod stop;

pub use chat::{ChatMessage, ChatTemplate, ChatTemplateError, Role, CHAT_TEMPLATE_KEY};
pub use generate::{generate, GenerateOptions, Generation, GenerationError};
pub use metrics::{peak_rss_bytes, RunMetrics};
pub use sampling::{Sampler, SamplerConfig, SamplingError};
pub use stop::{StopConditions, StopReason};
