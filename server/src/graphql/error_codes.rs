//! Every error carries `extensions.code`, including those async-graphql raises itself.
//!
//! Resolver errors get their code from [`AppError`](crate::error::AppError). Errors raised
//! before a resolver runs — a query that does not parse, one that fails validation (unknown
//! fields, depth and complexity limits), an argument of the wrong type or out of range —
//! come from async-graphql without one; this extension fills it in, so a client can always
//! branch on the code.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextRequest, NextSubscribe,
    NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Response, ServerError, ServerResult, ValidationResult, Variables};
use futures::stream::{BoxStream, StreamExt};

use crate::error::ErrorCode;

/// Installs [`ErrorCodes`] on a schema.
pub struct ErrorCodesExtension;

impl ExtensionFactory for ErrorCodesExtension {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodes)
    }
}

/// The extension itself.
struct ErrorCodes;

/// Sets `code` on `error` unless it already has one.
fn ensure_code(error: &mut ServerError, code: ErrorCode) {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", code.as_str());
    }
}

/// The code for an error that reached the response without one: arguments that failed to
/// coerce are the caller's mistake; anything else is ours.
fn fill_codes(mut response: Response) -> Response {
    for error in &mut response.errors {
        let code = if error.message.starts_with("Failed to parse")
            || error.message.starts_with("Invalid value for argument")
        {
            ErrorCode::BadUserInput
        } else {
            ErrorCode::Internal
        };
        ensure_code(error, code);
    }
    response
}

#[async_graphql::async_trait::async_trait]
impl Extension for ErrorCodes {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        fill_codes(next.run(ctx).await)
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        next.run(ctx, stream).map(fill_codes).boxed()
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables).await.map_err(|mut error| {
            ensure_code(&mut error, ErrorCode::GraphqlParseFailed);
            error
        })
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|mut errors| {
            for error in &mut errors {
                ensure_code(error, ErrorCode::GraphqlValidationFailed);
            }
            errors
        })
    }
}
