//! The GraphQL API: schema assembly, request context and the HTTP/WebSocket handlers.
//!
//! Resolvers are thin: they authenticate, parse ids and call a service. Each domain has
//! its own `query`, `mutation`, `subscription` and `types` modules, merged here.

pub mod account;
pub mod answers;
mod error_codes;

pub use error_codes::CodedSchema;
pub mod guides;
pub mod jobs;
pub mod llm;
pub mod loaders;
pub mod multipart;
pub mod reports;
pub mod scripts;
pub mod system;
pub mod test_runs;
pub mod training;

use async_graphql::http::{GraphiQLSource, ALL_WEBSOCKET_PROTOCOLS};
use async_graphql::{
    Context, Data, ErrorExtensions, Executor, MergedObject, MergedSubscription, Schema,
    SchemaBuilder, ID,
};
use async_graphql_axum::{GraphQLProtocol, GraphQLResponse, GraphQLWebSocket};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use crate::error::{AppError, ErrorCode, GqlResultExt};
use crate::service::accounts::{self, AuthUser};
use crate::state::AppState;

/// All queries.
#[derive(MergedObject, Default)]
pub struct Query(
    account::query::AccountQuery,
    answers::query::AnswerQuery,
    guides::query::GuideQuery,
    jobs::query::JobQuery,
    llm::query::LlmQuery,
    reports::query::ReportQuery,
    scripts::query::ScriptQuery,
    system::query::SystemQuery,
    test_runs::query::TestRunQuery,
    training::query::TrainingQuery,
);

/// All mutations.
#[derive(MergedObject, Default)]
pub struct Mutation(
    account::mutation::AccountMutation,
    answers::mutation::AnswerMutation,
    guides::mutation::GuideMutation,
    jobs::mutation::JobMutation,
    llm::mutation::LlmMutation,
    reports::mutation::ReportMutation,
    scripts::mutation::ScriptMutation,
    test_runs::mutation::TestRunMutation,
    training::mutation::TrainingMutation,
);

/// All subscriptions.
#[derive(MergedSubscription, Default)]
pub struct Subscription(
    account::subscription::AccountSubscription,
    jobs::subscription::JobSubscription,
);

/// The executable schema.
pub type AppSchema = Schema<Query, Mutation, Subscription>;

/// The caller of a request: `None` when no valid token came with it.
#[derive(Debug, Clone, Copy)]
pub struct Viewer(pub Option<AuthUser>);

/// The schema without runtime data, for SDL export.
pub fn schema_builder() -> SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
}

/// The schema as served, with limits from the settings and a code on every error.
pub fn build_schema(state: AppState) -> CodedSchema {
    let limits = state.settings.graphql.clone();
    CodedSchema::new(
        schema_builder()
            .limit_depth(limits.max_depth)
            .limit_complexity(limits.max_complexity)
            .data(loaders::guide_page_loader(&state.db))
            .data(loaders::items_loader(&state.db))
            .data(loaders::latest_job_loader(&state.db))
            .data(loaders::GuideCache::default())
            .data(state)
            .finish(),
    )
}

/// The SDL of the schema, as committed in `schema.graphql`.
pub fn sdl() -> String {
    schema_builder().finish().sdl()
}

/// The application state from a resolver's context.
pub(crate) fn state<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a AppState> {
    ctx.data::<AppState>()
}

/// The authenticated caller, or an `UNAUTHENTICATED` error.
pub(crate) fn require_user(ctx: &Context<'_>) -> async_graphql::Result<AuthUser> {
    match ctx.data_opt::<Viewer>() {
        Some(Viewer(Some(user))) => Ok(*user),
        _ => Err(AppError::unauthenticated().extend()),
    }
}

/// Parses a numeric object id; a malformed id reads as not found, like another user's.
pub(crate) fn parse_id(id: &ID, what: &str) -> async_graphql::Result<i32> {
    id.parse::<i32>()
        .map_err(|_| AppError::not_found(what, id.as_str()))
        .gql()
}

/// `POST /graphql`: queries and mutations.
pub async fn graphql_post(
    State(app): State<AppState>,
    State(schema): State<CodedSchema>,
    headers: HeaderMap,
    multipart::GraphqlBody(request): multipart::GraphqlBody,
) -> Response {
    let viewer = match bearer_token(&headers) {
        Some(token) => match accounts::authenticate(&app, token).await {
            Ok(Some(user)) => Viewer(Some(user)),
            Ok(None) => return unauthenticated_response(),
            Err(err) => {
                let err = AppError::from(err).extend();
                return GraphQLResponse::from(async_graphql::Response::from_errors(vec![
                    err.into_server_error(Default::default())
                ]))
                .into_response();
            }
        },
        None => Viewer(None),
    };
    GraphQLResponse::from(schema.execute(request.data(viewer)).await).into_response()
}

/// Read and write buffer of one WebSocket connection.
const WS_BUFFER_BYTES: usize = 8 * 1024;

/// `GET /graphql`: a WebSocket upgrade (graphql-transport-ws) for subscriptions, otherwise
/// the GraphiQL explorer.
pub async fn graphql_get(
    State(app): State<AppState>,
    State(schema): State<CodedSchema>,
    headers: HeaderMap,
    protocol: Result<GraphQLProtocol, StatusCode>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let (Ok(upgrade), Ok(protocol)) = (upgrade, protocol) else {
        return Html(
            GraphiQLSource::build()
                .endpoint("/graphql")
                .subscription_endpoint("/graphql")
                .title("GradeLab GraphQL")
                .finish(),
        )
        .into_response();
    };
    let header_token = bearer_token(&headers).map(str::to_owned);
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        // Subscriptions are many, messages small: 8 KiB buffers instead of 128 KiB each
        // (memory per open subscription), and no client message larger than a request.
        .read_buffer_size(WS_BUFFER_BYTES)
        .write_buffer_size(WS_BUFFER_BYTES)
        .max_message_size(app.settings.server.max_body_bytes)
        .on_upgrade(move |socket| {
            GraphQLWebSocket::new(socket, schema, protocol)
                .on_connection_init(move |payload| connection_init(app, header_token, payload))
                .serve()
        })
}

/// Authenticates a WebSocket from its `connection_init` payload (`{"token": …}`) or the
/// upgrade request's `Authorization` header. A bad token closes the connection.
async fn connection_init(
    app: AppState,
    header_token: Option<String>,
    payload: serde_json::Value,
) -> async_graphql::Result<Data> {
    #[derive(Deserialize)]
    struct InitPayload {
        token: Option<String>,
        #[serde(alias = "Authorization")]
        authorization: Option<String>,
    }
    let init: Option<InitPayload> = serde_json::from_value(payload).ok();
    let token = init
        .and_then(|init| {
            init.token.or(init
                .authorization
                .map(|value| value.trim_start_matches("Bearer ").to_owned()))
        })
        .or(header_token);
    let viewer = match token {
        Some(token) => match accounts::authenticate(&app, &token).await {
            Ok(Some(user)) => Viewer(Some(user)),
            Ok(None) => return Err(AppError::unauthenticated().extend()),
            Err(err) => return Err(AppError::from(err).extend()),
        },
        None => Viewer(None),
    };
    let mut data = Data::default();
    data.insert(viewer);
    Ok(data)
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim())
}

/// A request with an invalid or expired token is answered as a GraphQL error (HTTP 200,
/// per the GraphQL-over-HTTP convention for `application/json`), so clients handle it like
/// any other error.
fn unauthenticated_response() -> Response {
    let err = AppError::new(
        ErrorCode::Unauthenticated,
        "Your session has expired or was revoked; sign in again.",
    )
    .extend();
    GraphQLResponse::from(async_graphql::Response::from_errors(vec![
        err.into_server_error(Default::default())
    ]))
    .into_response()
}
