//! GraphQL over HTTP: posts typed operations to `/graphql` and turns failures into [`ApiError`].

use std::fmt;

use gloo_net::http::Request;
use graphql_client::{GraphQLQuery, Response};

use super::session;

/// Same origin as the app: the server serves both.
const ENDPOINT: &str = "/graphql";

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
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    fn network() -> Self {
        Self::new(
            ErrorCode::Network,
            "Could not reach the GradeLab server. Check your connection and try again.",
        )
    }

    fn unexpected() -> Self {
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

    /// Maps one GraphQL error; `had_token` tells an expired session from a failed sign-in.
    fn from_graphql(error: &graphql_client::Error, had_token: bool) -> Self {
        let code = error
            .extensions
            .as_ref()
            .and_then(|extensions| extensions.get("code"))
            .and_then(|code| code.as_str())
            .map_or(ErrorCode::Unexpected, ErrorCode::from_extension);
        let server_message = error.message.trim();
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
/// session: the token is cleared, and the route guards go to `/signin`.
pub async fn post<Q: GraphQLQuery>(variables: Q::Variables) -> Result<Q::ResponseData, ApiError> {
    let token = session::token();
    let mut request = Request::post(ENDPOINT).header("Accept", "application/json");
    if let Some(token) = &token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let response = request
        .json(&Q::build_query(variables))
        .map_err(|_| ApiError::unexpected())?
        .send()
        .await
        .map_err(|_| ApiError::network())?;
    let status = response.status();
    let body: Response<Q::ResponseData> = response.json().await.map_err(|_| {
        if (200..300).contains(&status) {
            ApiError::unexpected()
        } else {
            ApiError::http_status(status)
        }
    })?;

    if let Some(error) = body.errors.as_deref().and_then(<[_]>::first) {
        let error = ApiError::from_graphql(error, token.is_some());
        if error.code == ErrorCode::Unauthenticated && token.is_some() {
            session::clear_token();
        }
        return Err(error);
    }
    body.data.ok_or_else(ApiError::unexpected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: &str, message: &str) -> graphql_client::Error {
        serde_json::from_value(serde_json::json!({
            "message": message,
            "extensions": { "code": code },
        }))
        .expect("valid error literal")
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
