//! The ceiling of the GraphQL read path: an async-graphql schema of the same shape as the
//! dashboard's query, answered from memory on the same stack (axum, async-graphql-axum,
//! mimalloc, tokio with one worker per core), with no database, authentication or
//! middleware. What it serves per second is the most the real server could reach on this
//! machine with this framework, whatever its database work cost.

use std::net::SocketAddr;
use std::sync::Arc;

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, EmptySubscription, Enum, Object, Schema, SimpleObject, ID};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::routing::post;
use axum::{Extension, Router};

/// A job's kind, as in the real schema.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
enum JobKind {
    Extraction,
}

/// A job's status, as in the real schema.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
enum JobStatus {
    Succeeded,
}

#[derive(SimpleObject, Clone)]
struct Job {
    id: ID,
    kind: JobKind,
    status: JobStatus,
    progress: f64,
}

#[derive(SimpleObject, Clone)]
struct Item {
    id: ID,
    label: String,
    max_marks: f64,
}

struct Guide {
    id: i32,
    title: String,
    items: Arc<Vec<Item>>,
    job: Job,
}

#[Object]
impl Guide {
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }
    async fn title(&self) -> &str {
        &self.title
    }
    async fn item_count(&self) -> i32 {
        self.items.len() as i32
    }
    async fn total_marks(&self) -> f64 {
        self.items.iter().map(|i| i.max_marks).sum()
    }
    async fn items(&self) -> Vec<Item> {
        self.items.as_ref().clone()
    }
    async fn latest_job(&self) -> Option<Job> {
        Some(self.job.clone())
    }
}

struct Query;

#[Object]
impl Query {
    async fn guides(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
    ) -> async_graphql::Result<Connection<String, Guide, EmptyFields, EmptyFields>> {
        let data = ctx.data::<Arc<Vec<Guide>>>()?;
        let mut connection = Connection::new(false, data.len() > first as usize);
        connection
            .edges
            .extend(data.iter().take(first as usize).map(|g| {
                Edge::new(
                    g.id.to_string(),
                    Guide {
                        id: g.id,
                        title: g.title.clone(),
                        items: g.items.clone(),
                        job: g.job.clone(),
                    },
                )
            }));
        Ok(connection)
    }
}

type StaticSchema = Schema<Query, async_graphql::EmptyMutation, EmptySubscription>;

/// `guides` guides of five 2-mark items, each with a finished extraction job, newest first.
fn data(guides: usize) -> Vec<Guide> {
    (1..=guides as i32)
        .rev()
        .map(|g| Guide {
            id: g,
            title: format!("Guide {}", g - 1),
            items: Arc::new(
                (1..=5)
                    .map(|q| Item {
                        id: ID(((g - 1) * 5 + q).to_string()),
                        label: q.to_string(),
                        max_marks: 2.0,
                    })
                    .collect(),
            ),
            job: Job {
                id: ID(g.to_string()),
                kind: JobKind::Extraction,
                status: JobStatus::Succeeded,
                progress: 1.0,
            },
        })
        .collect()
}

async fn graphql(
    Extension(schema): Extension<StaticSchema>,
    request: GraphQLRequest,
) -> GraphQLResponse {
    schema.execute(request.into_inner()).await.into()
}

/// Starts the in-memory server on 127.0.0.1:0 on `runtime` and returns its address.
pub fn start(runtime: &tokio::runtime::Runtime, guides: usize) -> anyhow::Result<SocketAddr> {
    let schema = Schema::build(Query, async_graphql::EmptyMutation, EmptySubscription)
        .data(Arc::new(data(guides)))
        .finish();
    let app = Router::new()
        .route("/graphql", post(graphql))
        .layer(Extension(schema));
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    runtime.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}
