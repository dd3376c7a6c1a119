//! Every error carries `extensions.code`, including those async-graphql raises itself.
//!
//! Resolver errors get their code from [`AppError`](crate::error::AppError). Errors raised
//! before a resolver runs — a query that does not parse, one that fails validation (unknown
//! fields, depth and complexity limits, an unknown operation), an argument of the wrong type
//! or out of range — come from async-graphql without one; [`CodedSchema`] fills it in, so a
//! client can always branch on the code.
//!
//! It wraps the schema as an [`Executor`] rather than installing an extension: with any
//! extension installed, async-graphql runs the extension chain around every field it
//! resolves, which cost a tenth of the read path's throughput (issue 10's `graphql_load`).

use std::sync::Arc;

use async_graphql::{Data, Executor, Request, Response, ServerError};
use futures::stream::{self, BoxStream, StreamExt};

use super::AppSchema;
use crate::error::ErrorCode;

/// The schema as served: the same executor, with a code on every error.
#[derive(Clone)]
pub struct CodedSchema(pub AppSchema);

/// Sets `code` on `error` unless it already has one.
fn ensure_code(error: &mut ServerError, code: ErrorCode) {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", code.as_str());
    }
}

/// The code for an error that reached the response without one: arguments that failed to
/// coerce are the caller's mistake; so is anything raised before execution (no path:
/// validation, limits, operation selection); anything else is ours.
fn fill_codes(mut response: Response) -> Response {
    for error in &mut response.errors {
        let code = if error.message.starts_with("Failed to parse")
            || error.message.starts_with("Invalid value for argument")
        {
            ErrorCode::BadUserInput
        } else if error.path.is_empty() {
            ErrorCode::GraphqlValidationFailed
        } else {
            ErrorCode::Internal
        };
        ensure_code(error, code);
    }
    response
}

/// Parses the request's query up front (the schema reuses the document), so a syntax error
/// is answered as `GRAPHQL_PARSE_FAILED`: the answer to a query that does not parse.
fn parse_failure(request: &mut Request) -> Option<Response> {
    let mut error = request.parsed_query().err()?;
    ensure_code(&mut error, ErrorCode::GraphqlParseFailed);
    Some(Response::from_errors(vec![error]))
}

impl Executor for CodedSchema {
    async fn execute(&self, mut request: Request) -> Response {
        if let Some(response) = parse_failure(&mut request) {
            return response;
        }
        fill_codes(self.0.execute(request).await)
    }

    fn execute_stream(
        &self,
        mut request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        if let Some(response) = parse_failure(&mut request) {
            return stream::once(async move { response }).boxed();
        }
        Executor::execute_stream(&self.0, request, session_data)
            .map(fill_codes)
            .boxed()
    }
}
