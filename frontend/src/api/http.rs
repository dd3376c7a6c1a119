//! GraphQL over HTTP: posts typed operations to `/graphql` and turns failures into [`ApiError`].

use std::fmt;

use gloo_net::http::Request;
use graphql_client::GraphQLQuery;
use serde_json::Value;

use super::session;

/// Same origin as the app: the server serves both.
pub(crate) const ENDPOINT: &str = "/graphql";

/// What went wrong, from `errors[0].extensions.code` or from the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// No valid token, or wrong credentials.
    Unauthenticated,
    /// Signed in, but not allowed.
    Forbidden,
    /// The thing does not exist (or belongs to someone else).
    NotFound,
    /// The input was rejected; the server's message says why.
    BadUserInput,
    /// The thing already exists; the server's message says which.
    Duplicate,
    /// Too many requests.
    RateLimited,
    /// The language model provider failed.
    Upstream,
    /// The server failed.
    Internal,
    /// The server could not be reached.
    Network,
    /// The answer was not what the contract promises.
    Unexpected,
}

impl ErrorCode {
    fn from_extension(code: &str) -> Self {
        match code {
            "UNAUTHENTICATED" => Self::Unauthenticated,
            "FORBIDDEN" => Self::Forbidden,
            "NOT_FOUND" => Self::NotFound,
            "BAD_USER_INPUT" => Self::BadUserInput,
            "DUPLICATE" => Self::Duplicate,
            "RATE_LIMITED" => Self::RateLimited,
            "UPSTREAM" => Self::Upstream,
            "INTERNAL" => Self::Internal,
            _ => Self::Unexpected,
        }
    }
}

/// A failed API call, with a message fit to show to the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The kind of failure.
    pub code: ErrorCode,
    /// A human message.
    pub message: String,
}

impl ApiError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn network() -> Self {
        Self::new(
            ErrorCode::Network,
            "Could not reach the GradeLab server. Check your connection and try again.",
        )
    }

    pub(crate) fn unexpected() -> Self {
        Self::new(
            ErrorCode::Unexpected,
            "The server sent an answer this page does not understand. Please reload.",
        )
    }

    fn http_status(status: u16) -> Self {
        let code = match status {
            401 => ErrorCode::Unauthenticated,
            403 => ErrorCode::Forbidden,
            413 => ErrorCode::BadUserInput,
            429 => ErrorCode::RateLimited,
            500..=599 => ErrorCode::Internal,
            _ => ErrorCode::Unexpected,
        };
        Self::new(
            code,
            format!("The server answered with HTTP status {status}. Please try again."),
        )
    }

    /// Maps one GraphQL error object (`{message, extensions: {code}}`); `had_token` tells an
    /// expired session from a failed sign-in.
    fn from_graphql(error: &Value, had_token: bool) -> Self {
        let code = error
            .pointer("/extensions/code")
            .and_then(Value::as_str)
            .map_or(ErrorCode::Unexpected, ErrorCode::from_extension);
        let server_message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim();
        let or_server = |fallback: &str| {
            if server_message.is_empty() {
                fallback.to_owned()
            } else {
                server_message.to_owned()
            }
        };
        let message = match code {
            ErrorCode::Unauthenticated if had_token => "Please sign in again.".to_owned(),
            // Without a token this is a sign-in attempt: the server says what failed.
            ErrorCode::Unauthenticated => or_server("Please sign in again."),
            ErrorCode::Forbidden => "You do not have access to that.".to_owned(),
            ErrorCode::NotFound => or_server("That could not be found."),
            ErrorCode::BadUserInput | ErrorCode::Duplicate => {
                or_server("Please check what you entered.")
            }
            ErrorCode::RateLimited => {
                "Too many requests. Please wait a moment and try again.".to_owned()
            }
            ErrorCode::Upstream => {
                "The language model service did not answer. Please try again later.".to_owned()
            }
            ErrorCode::Internal => {
                "Something went wrong on the server. Please try again.".to_owned()
            }
            ErrorCode::Network | ErrorCode::Unexpected => or_server("Something went wrong."),
        };
        Self::new(code, message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

/// Runs one operation, with `Authorization: Bearer <token>` when signed in.
///
/// An `UNAUTHENTICATED` answer to a request that carried a token ends the
/// session: the token is cleared, and the app goes to `/signin`.
pub async fn post<Q: GraphQLQuery>(variables: Q::Variables) -> Result<Value, ApiError> {
    let body =
        serde_json::to_string(&Q::build_query(variables)).map_err(|_| ApiError::unexpected())?;
    send(body).await
}

/// The untyped part of [`post`], shared by every operation.
async fn send(body: String) -> Result<Value, ApiError> {
    let token = session::token();
    let mut request = Request::post(ENDPOINT)
        .header("Accept", "application/json")
        .header("Content-Type", "application/json");
    if let Some(token) = &token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let response = request
        .body(body)
        .map_err(|_| ApiError::unexpected())?
        .send()
        .await
        .map_err(|_| ApiError::network())?;
    let status = response.status();
    let body = response.text().await.map_err(|_| ApiError::network())?;
    decode(status, &body, token.is_some())
}

/// Turns an HTTP answer to a GraphQL operation into its `data` (read it with
/// [`super::json::Read`]) or an [`ApiError`]; shared by [`post`] and the multipart upload.
/// `had_token` says whether the request was authenticated (an `UNAUTHENTICATED` answer
/// then ends the session).
pub fn decode(status: u16, body: &str, had_token: bool) -> Result<Value, ApiError> {
    let body = super::json::parse(body).ok_or_else(|| {
        if (200..300).contains(&status) {
            ApiError::unexpected()
        } else {
            ApiError::http_status(status)
        }
    })?;
    data_of(body, had_token)
}

/// The `data` of a GraphQL result (`{data, errors}`), or its first error.
pub fn data_of(mut result: Value, had_token: bool) -> Result<Value, ApiError> {
    if let Some(error) = result.get("errors").and_then(|errors| errors.get(0)) {
        return Err(graphql_error(error, had_token));
    }
    result
        .get_mut("data")
        .map(Value::take)
        .filter(|data| !data.is_null())
        .ok_or_else(ApiError::unexpected)
}

/// Maps a GraphQL error object (over HTTP or WebSocket), ending the session on
/// `UNAUTHENTICATED`.
pub fn graphql_error(error: &Value, had_token: bool) -> ApiError {
    let error = ApiError::from_graphql(error, had_token);
    if error.code == ErrorCode::Unauthenticated && had_token {
        session::clear_token();
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: &str, message: &str) -> Value {
        serde_json::json!({
            "message": message,
            "extensions": { "code": code },
        })
    }

    #[test]
    fn data_or_the_first_error() {
        let ok = data_of(serde_json::json!({ "data": { "x": 1 } }), false);
        assert_eq!(ok, Ok(serde_json::json!({ "x": 1 })));
        let failed = data_of(
            serde_json::json!({ "data": null, "errors": [error("NOT_FOUND", "guide 9 not found")] }),
            false,
        );
        assert_eq!(
            failed.map_err(|e| (e.code, e.message)),
            Err((ErrorCode::NotFound, "guide 9 not found".to_owned()))
        );
        let empty = data_of(serde_json::json!({}), false);
        assert_eq!(empty.map_err(|e| e.code), Err(ErrorCode::Unexpected));
    }

    #[test]
    fn expired_session_asks_to_sign_in_again() {
        let e = ApiError::from_graphql(&error("UNAUTHENTICATED", "token revoked"), true);
        assert_eq!(e.code, ErrorCode::Unauthenticated);
        assert_eq!(e.message, "Please sign in again.");
    }

    #[test]
    fn failed_sign_in_shows_the_server_message() {
        let e = ApiError::from_graphql(&error("UNAUTHENTICATED", "Wrong email or password"), false);
        assert_eq!(e.message, "Wrong email or password");
    }

    #[test]
    fn user_input_and_duplicates_show_the_server_message() {
        let e = ApiError::from_graphql(&error("DUPLICATE", "email already registered"), false);
        assert_eq!(e.code, ErrorCode::Duplicate);
        assert_eq!(e.message, "email already registered");
        let e = ApiError::from_graphql(&error("BAD_USER_INPUT", "password too short"), true);
        assert_eq!(e.code, ErrorCode::BadUserInput);
        assert_eq!(e.message, "password too short");
    }

    #[test]
    fn internal_errors_get_a_generic_message() {
        let e = ApiError::from_graphql(&error("INTERNAL", "db pool timed out"), true);
        assert_eq!(e.code, ErrorCode::Internal);
        assert!(!e.message.contains("db pool"));
    }
}
