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
//! resolves; without it the read path of issue 10's `graphql_load` went from 1,539 to about
//! 1,800 requests/s.
//!
//! Since it parses every query before the schema sees it, it also keeps the parsed
//! documents of recent queries ([`ParsedQueries`]): clients send the same few documents
//! again and again (the web app's, a dashboard's refresh), and parsing one of them (pest)
//! cost ~9 % of the dashboard's read once its data came from the guide cache, where cloning
//! the parsed document costs a fraction of that.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Data, Executor, Request, Response, ServerError};
use futures::stream::{self, BoxStream, StreamExt};
use lru::LruCache;

use super::AppSchema;
use crate::error::ErrorCode;

/// The schema as served: the same executor, with a code on every error.
#[derive(Clone)]
pub struct CodedSchema {
    schema: AppSchema,
    parsed: Arc<ParsedQueries>,
}

impl CodedSchema {
    /// Serves `schema`.
    pub fn new(schema: AppSchema) -> Self {
        Self {
            schema,
            parsed: Arc::new(ParsedQueries::new(PARSED_QUERIES)),
        }
    }
}

/// How many parsed queries are kept.
const PARSED_QUERIES: NonZeroUsize = NonZeroUsize::new(256).expect("not zero");
/// Longer queries are parsed every time (and never kept), so a client cannot fill the
/// cache with large documents: at most 256 × 16 KiB of query text.
const LONGEST_KEPT_QUERY: usize = 16 * 1024;

/// The parsed documents of the queries used most recently, by their text. A document is a
/// pure function of its text, so a kept one is never stale; a query that does not parse is
/// not kept.
struct ParsedQueries {
    documents: Mutex<LruCache<String, ExecutableDocument>>,
}

impl ParsedQueries {
    fn new(entries: NonZeroUsize) -> Self {
        Self {
            documents: Mutex::new(LruCache::new(entries)),
        }
    }

    fn documents(&self) -> std::sync::MutexGuard<'_, LruCache<String, ExecutableDocument>> {
        // Entries are whole documents: a panicking holder leaves the cache consistent.
        self.documents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Gives `request` its parsed document, from the cache when its query was seen
    /// recently; a query that does not parse is answered as `GRAPHQL_PARSE_FAILED`.
    fn prepare(&self, request: &mut Request) -> Option<Response> {
        let keep = request.query.len() <= LONGEST_KEPT_QUERY;
        if keep {
            let kept = self.documents().get(&request.query).cloned();
            if let Some(document) = kept {
                request.set_parsed_query(document);
                return None;
            }
        }
        if let Some(response) = parse_failure(request) {
            return Some(response);
        }
        if keep {
            if let Ok(document) = request.parsed_query() {
                let document = document.clone();
                self.documents().put(request.query.clone(), document);
            }
        }
        None
    }
}

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
        if let Some(response) = self.parsed.prepare(&mut request) {
            return response;
        }
        fill_codes(self.schema.execute(request).await)
    }

    fn execute_stream(
        &self,
        mut request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        if let Some(response) = self.parsed.prepare(&mut request) {
            return stream::once(async move { response }).boxed();
        }
        Executor::execute_stream(&self.schema, request, session_data)
            .map(fill_codes)
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{PathSegment, Value};

    use super::*;

    fn code(error: &ServerError) -> Option<String> {
        match error.extensions.as_ref()?.get("code")? {
            Value::String(code) => Some(code.clone()),
            _ => None,
        }
    }

    #[test]
    fn errors_without_a_code_get_one_by_where_they_arose() {
        let mut resolver = ServerError::new("database is gone", None);
        resolver.path = vec![PathSegment::Field("guides".into())];
        let mut coded = ServerError::new("no such guide", None);
        coded.path = vec![PathSegment::Field("guide".into())];
        ensure_code(&mut coded, ErrorCode::NotFound);
        let response = fill_codes(Response::from_errors(vec![
            ServerError::new(r#"Unknown operation named "Missing""#, None),
            ServerError::new(r#"Invalid value for argument "first""#, None),
            resolver,
            coded,
        ]));
        let codes: Vec<_> = response.errors.iter().map(code).collect();
        assert_eq!(
            codes,
            [
                Some("GRAPHQL_VALIDATION_FAILED".to_owned()),
                Some("BAD_USER_INPUT".to_owned()),
                Some("INTERNAL".to_owned()),
                Some("NOT_FOUND".to_owned()),
            ]
        );
    }

    #[test]
    fn recent_queries_are_parsed_once_and_broken_or_huge_ones_never_kept() {
        let parsed = ParsedQueries::new(NonZeroUsize::new(2).expect("not zero"));
        let kept = |parsed: &ParsedQueries| parsed.documents().len();
        for _ in 0..3 {
            let mut request = Request::new("{ me { id } }");
            assert!(parsed.prepare(&mut request).is_none());
            assert!(request.parsed_query().is_ok());
        }
        assert_eq!(kept(&parsed), 1, "one document for one text");
        let mut broken = Request::new("{ guides { ");
        let response = parsed.prepare(&mut broken).expect("a parse failure");
        assert_eq!(
            code(&response.errors[0]).as_deref(),
            Some("GRAPHQL_PARSE_FAILED")
        );
        let huge = format!("{{ me {{ id }} }} {}", "#".repeat(LONGEST_KEPT_QUERY));
        assert!(parsed.prepare(&mut Request::new(huge)).is_none());
        assert_eq!(kept(&parsed), 1, "neither is kept");
        for query in ["{ a }", "{ b }", "{ c }"] {
            assert!(parsed.prepare(&mut Request::new(query)).is_none());
        }
        assert_eq!(kept(&parsed), 2, "at most as many as it was made for");
    }

    #[test]
    fn a_query_that_does_not_parse_is_answered_before_execution() {
        let mut broken = Request::new("{ guides { ");
        let response = parse_failure(&mut broken).expect("a parse failure");
        assert_eq!(
            code(&response.errors[0]).as_deref(),
            Some("GRAPHQL_PARSE_FAILED")
        );
        assert!(parse_failure(&mut Request::new("{ me { id } }")).is_none());
    }
}
