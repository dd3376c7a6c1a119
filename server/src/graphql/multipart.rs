//! The `POST /graphql` body extractor: JSON requests and GraphQL multipart requests
//! (file uploads), with the upload size limit from `guides.max_upload_bytes`.
//!
//! async-graphql-axum's `GraphQLRequest` parses multipart bodies with default options (no
//! per-file limit) and answers a refused body with an empty 413/400. This extractor sets
//! the limits and answers with a GraphQL error body carrying `extensions.code`, so a client
//! shows "the file is larger than …" like any other error.

use async_graphql::http::{receive_body, MultipartOptions};
use async_graphql::ParseRequestError;
use axum::extract::{FromRef, FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;

use crate::error::ErrorCode;
use crate::state::AppState;

/// Files one request may carry.
const MAX_FILES: usize = 4;

/// A parsed GraphQL request.
pub struct GraphqlBody(pub async_graphql::Request);

impl<S> FromRequest<S> for GraphqlBody
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let app = AppState::from_ref(state);
        let limit = app.settings.guides.max_upload_bytes;
        let options = MultipartOptions::default()
            .max_file_size(usize::try_from(limit).unwrap_or(usize::MAX))
            .max_num_files(MAX_FILES);
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = req
            .into_body()
            .into_data_stream()
            .map_err(|err| std::io::Error::other(err.to_string()))
            .into_async_read();
        match receive_body(content_type, body, options).await {
            Ok(request) => Ok(Self(request)),
            Err(ParseRequestError::PayloadTooLarge) => Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("The file is larger than the upload limit of {limit} bytes."),
            )),
            Err(ParseRequestError::Io(err)) if err.to_string().contains("length limit") => {
                Err(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!(
                        "The request is larger than the limit of {} bytes.",
                        app.settings.server.max_body_bytes
                    ),
                ))
            }
            Err(err) => Err(error(
                StatusCode::BAD_REQUEST,
                &format!("The request is not a valid GraphQL request: {err}."),
            )),
        }
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({
        "data": null,
        "errors": [{
            "message": message,
            "extensions": { "code": ErrorCode::BadUserInput.as_str() },
        }],
    });
    (status, axum::Json(body)).into_response()
}
