//! What can go wrong in a language-model call, in words a teacher can act on.

use std::time::Duration;

use sea_orm::DbErr;

use crate::error::{AppError, ErrorCode};

/// Longest excerpt of a provider's body or a model's output kept in an error message.
pub(crate) const EXCERPT_CHARS: usize = 500;

/// A failed language-model call.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The settings (the server's or the user's) cannot work: unknown provider, bad URL, …
    #[error("The LLM settings are invalid: {0}")]
    InvalidSettings(String),
    /// The provider needs an API key and none is configured.
    #[error(
        "The {provider} provider needs an API key: add one in your LLM settings or set GRADELAB_LLM__API_KEY."
    )]
    MissingApiKey {
        /// Provider preset name.
        provider: String,
    },
    /// No connection could be made (refused, reset, DNS).
    #[error("{message}")]
    Unreachable {
        /// Human message naming the URL and how to fix it.
        message: String,
        /// HTTP attempts made.
        attempts: u32,
    },
    /// Every attempt timed out.
    #[error("The language model at {base_url} did not answer within {}s (tried {attempts} times).", timeout.as_secs_f32())]
    Timeout {
        /// Endpoint.
        base_url: String,
        /// Per-attempt timeout.
        timeout: Duration,
        /// HTTP attempts made.
        attempts: u32,
    },
    /// The provider kept answering 429.
    #[error("The language-model provider is rate limiting requests (HTTP 429, tried {attempts} times){}.", retry_hint(*retry_after))]
    RateLimited {
        /// What the last `Retry-After` asked for, if anything.
        retry_after: Option<Duration>,
        /// HTTP attempts made.
        attempts: u32,
    },
    /// The provider answered with an error status.
    #[error(
        "The language-model provider answered HTTP {status} (tried {attempts} times): {message}"
    )]
    Status {
        /// HTTP status code.
        status: u16,
        /// The provider's error message, or an excerpt of its body, with a hint.
        message: String,
        /// HTTP attempts made.
        attempts: u32,
    },
    /// The provider's answer is not an OpenAI chat completion.
    #[error("The language-model provider sent something that is not a chat completion: {message}")]
    Protocol {
        /// What is wrong with it.
        message: String,
        /// Start of the body, for inspection.
        raw: String,
        /// HTTP attempts made.
        attempts: u32,
    },
    /// The model's reply did not parse as the requested type, even after one repair.
    #[error("The model's reply is not valid `{schema}` JSON, even after asking it to repair it: {error}")]
    InvalidOutput {
        /// Name of the expected type.
        schema: String,
        /// The parse error of the last reply.
        error: String,
        /// The last reply, verbatim.
        raw: String,
        /// HTTP attempts made.
        attempts: u32,
    },
    /// The database failed (cache or accounting).
    #[error(transparent)]
    Db(#[from] DbErr),
    /// A user's API key could not be sealed or opened for a reason on the server's side.
    #[error("API keys cannot be stored or read: {0}")]
    KeyStore(String),
}

fn retry_hint(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(wait) => format!("; it asks to wait {}s", wait.as_secs()),
        None => "; try again later".to_owned(),
    }
}

impl LlmError {
    /// HTTP attempts made before this error (0 when none was sent).
    pub fn attempts(&self) -> u32 {
        match self {
            Self::Unreachable { attempts, .. }
            | Self::Timeout { attempts, .. }
            | Self::RateLimited { attempts, .. }
            | Self::Status { attempts, .. }
            | Self::Protocol { attempts, .. }
            | Self::InvalidOutput { attempts, .. } => *attempts,
            Self::InvalidSettings(_)
            | Self::MissingApiKey { .. }
            | Self::Db(_)
            | Self::KeyStore(_) => 0,
        }
    }

    /// The raw model output or provider body kept for inspection, if any.
    pub fn raw(&self) -> Option<&str> {
        match self {
            Self::Protocol { raw, .. } | Self::InvalidOutput { raw, .. } => Some(raw),
            _ => None,
        }
    }

    /// The stable API code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidSettings(_) | Self::MissingApiKey { .. } => ErrorCode::BadUserInput,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::Unreachable { .. }
            | Self::Timeout { .. }
            | Self::Status { .. }
            | Self::Protocol { .. }
            | Self::InvalidOutput { .. } => ErrorCode::Upstream,
            Self::Db(_) | Self::KeyStore(_) => ErrorCode::Internal,
        }
    }
}

impl From<LlmError> for AppError {
    fn from(err: LlmError) -> Self {
        match err.code() {
            ErrorCode::Internal => AppError::internal(err),
            code => AppError::new(code, err.to_string()),
        }
    }
}

/// The first `max` characters of `text`, marked when cut.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
