//! The one client for language models: OpenAI chat completions with provider presets,
//! structured output, bounded concurrency, retries, a response cache and cost accounting.
//!
//! Every LLM feature (item extraction, grading, synthesis, report narrative) calls
//! [`LlmClient::chat`] or [`LlmClient::structured`] with [`CallParams`] (where and how) and a
//! [`CallContext`] (for whom and why). Provider differences live in [`provider`].
//!
//! ```no_run
//! # use gradelab::llm::*;
//! # async fn grade(llm: &LlmClient, user_id: i32, job_id: i32) -> Result<(), LlmError> {
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct Grade { score: u32, feedback: String }
//!
//! let params = llm.params_for_user(user_id).await?.max_tokens(200).seed(1);
//! let ctx = CallContext::task("grade").user(user_id).job(job_id);
//! let messages = [Message::system("You grade answers."), Message::user("…")];
//! let grade = llm.structured::<Grade>(&ctx, &params, &messages).await?;
//! println!("{} ({} tokens)", grade.value.score, grade.meta.usage.completion_tokens);
//! # Ok(()) }
//! ```

pub mod accounting;
pub mod cache;
mod client;
mod error;
pub mod logprobs;
pub mod provider;
pub mod retry;
pub mod schema;
pub mod secrets;
mod ssrf;
mod types;
pub mod user_settings;

pub use accounting::{estimate, rough_tokens, Estimate};
pub use client::{LlmClient, LlmStatus};
pub use error::LlmError;
pub use logprobs::{expected_number, NumberReading, TokenLogprob};
pub use provider::{Price, Provider, StructuredMode};
pub use retry::RetryPolicy;
pub use schema::OutputSchema;
pub use secrets::SecretBox;
pub use types::{
    CachePolicy, CallContext, CallMeta, CallParams, ChatResponse, Endpoint, Message, Role,
    Structured, Usage,
};
