//! Error policy and the mapping of errors onto GraphQL.
//!
//! - `DbErr` stays in data code: services wrap it in their own `thiserror` enum.
//! - Each service has one `thiserror` enum saying what went wrong in its words
//!   (`AccountError`, …) and converts into [`AppError`], the single error type the API knows.
//! - [`AppError`] carries a stable [`ErrorCode`] that clients read from `extensions.code`.
//! - `anyhow` is used only at start-up and in background tasks, where the error is logged
//!   rather than returned to a user.
//! - Internal errors are logged with their whole cause chain and returned to the client as
//!   a generic message: a user never sees SQL, file paths or provider responses.
//! - Nothing a user or the network controls is `unwrap()`ed.

use std::fmt;

use async_graphql::ErrorExtensions;

/// The codes a client can rely on in `errors[].extensions.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// No valid session or API token.
    Unauthenticated,
    /// Signed in, but not allowed.
    Forbidden,
    /// The object does not exist or belongs to somebody else.
    NotFound,
    /// The input is invalid; the message says how.
    BadUserInput,
    /// The request is not a GraphQL document.
    GraphqlParseFailed,
    /// The document does not fit the schema or exceeds a depth, complexity or size limit.
    GraphqlValidationFailed,
    /// The same content already exists; the message names it.
    Duplicate,
    /// Too many requests; try again later.
    RateLimited,
    /// A language-model provider failed.
    Upstream,
    /// A bug or an infrastructure failure; details are in the server log.
    Internal,
}

impl ErrorCode {
    /// The wire form of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::BadUserInput => "BAD_USER_INPUT",
            Self::GraphqlParseFailed => "GRAPHQL_PARSE_FAILED",
            Self::GraphqlValidationFailed => "GRAPHQL_VALIDATION_FAILED",
            Self::Duplicate => "DUPLICATE",
            Self::RateLimited => "RATE_LIMITED",
            Self::Upstream => "UPSTREAM",
            Self::Internal => "INTERNAL",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error every resolver returns.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A user-facing error with a code and a message meant for people.
    #[error("{message}")]
    User {
        /// Stable code.
        code: ErrorCode,
        /// Human message.
        message: String,
    },
    /// Anything unexpected. Logged, never shown.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    /// A user-facing error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::User {
            code,
            message: message.into(),
        }
    }

    /// `what` with `id` does not exist for this caller.
    pub fn not_found(what: &str, id: impl fmt::Display) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} {id} not found"))
    }

    /// The caller is not signed in.
    pub fn unauthenticated() -> Self {
        Self::new(
            ErrorCode::Unauthenticated,
            "Sign in first: this request needs a valid session or API token.",
        )
    }

    /// Invalid input, with a message that says how to fix it.
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadUserInput, message)
    }

    /// Wraps an unexpected error.
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Self::Internal(err.into())
    }

    /// The code this error reports.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::User { code, .. } => *code,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<sea_orm::DbErr> for AppError {
    fn from(err: sea_orm::DbErr) -> Self {
        Self::internal(err)
    }
}

impl ErrorExtensions for AppError {
    fn extend(&self) -> async_graphql::Error {
        let message = match self {
            Self::User { message, .. } => message.clone(),
            Self::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error");
                "Internal server error; the details are in the server log.".to_owned()
            }
        };
        let code = self.code();
        async_graphql::Error::new(message).extend_with(|_, ext| ext.set("code", code.as_str()))
    }
}

/// Converts a service result into a GraphQL result carrying `extensions.code`.
///
/// async-graphql converts any `Display` error into `async_graphql::Error` without
/// extensions, so resolvers call `.gql()` instead of relying on `?` alone.
pub trait GqlResultExt<T> {
    /// Maps the error through [`AppError`] into a GraphQL error.
    fn gql(self) -> async_graphql::Result<T>;
}

impl<T, E: Into<AppError>> GqlResultExt<T> for Result<T, E> {
    fn gql(self) -> async_graphql::Result<T> {
        self.map_err(|err| err.into().extend())
    }
}

/// Shorthand for service results.
pub type AppResult<T> = Result<T, AppError>;
