//! Start-up: open the database, run migrations, build the router and bind the listener.

use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::http::{header, HeaderValue};
use axum::routing::get;
use axum::Router;
use migration::MigratorTrait;
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::config::Settings;
use crate::graphql::{self, CodedSchema};
use crate::state::AppState;

/// State the HTTP handlers extract from.
#[derive(Clone, FromRef)]
pub struct HttpState {
    /// Shared application state.
    pub app: AppState,
    /// The GraphQL schema.
    pub schema: CodedSchema,
}

/// A bound, ready-to-serve server.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
}

impl Application {
    /// Opens the database (creating the SQLite file and data directory if needed), applies
    /// pending migrations and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        tokio::fs::create_dir_all(&settings.data_dir)
            .await
            .with_context(|| format!("creating data directory {}", settings.data_dir.display()))?;
        // Temp files of uploads interrupted by a crash or kill are never referenced: remove them.
        match crate::blobs::BlobStore::new(settings.blob_dir()).sweep_tmp() {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "removed temp files of interrupted uploads"),
            Err(err) => tracing::warn!(error = %err, "could not sweep the upload temp directory"),
        }
        let db = connect(&settings).await?;
        migration::Migrator::up(&db, None)
            .await
            .context("running database migrations")?;
        let listener = TcpListener::bind(settings.server.bind)
            .await
            .with_context(|| format!("binding {}", settings.server.bind))?;
        let workers = settings.jobs.workers;
        let secrets = crate::llm::SecretBox::load_or_create(&settings)
            .context("loading the secret key for stored API keys")?;
        let state = AppState::new(db, settings, secrets);
        match crate::llm::user_settings::seal_plaintext_keys(&state.llm).await {
            Ok(0) => {}
            Ok(sealed) => tracing::info!(sealed, "encrypted API keys stored in plain text"),
            Err(err) => tracing::warn!(error = %err, "could not encrypt plain-text API keys"),
        }
        crate::service::jobs::start_workers(state.clone(), crate::service::job_handlers(), workers);
        let router = router(state.clone());
        Ok(Self {
            listener,
            router,
            state,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The shared state, for tests and background tasks.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then shuts down gracefully: `/readyz` answers 503,
    /// the listener stops accepting, open requests get a few seconds (WebSockets are not
    /// waited for), and the job workers finish or hand back their jobs
    /// ([`crate::service::jobs::drain`]).
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let signalled = {
            let state = state.clone();
            async move {
                shutdown.await;
                state.jobs.begin_shutdown();
            }
        };
        let mut stopping = state.jobs.shutdown_signal();
        let serve = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(signalled)
            .into_future();
        let http_grace = async {
            while !*stopping.borrow_and_update() {
                if stopping.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        };
        let served = tokio::select! {
            served = serve => served.context("serving HTTP"),
            () = http_grace => Ok(()),
        };
        let grace = Duration::from_secs(state.settings.jobs.shutdown_grace_secs);
        crate::service::jobs::drain(&state, grace + Duration::from_secs(10)).await;
        served
    }
}

/// Connects to the configured database.
pub async fn connect(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    let url = settings.database_url();
    let mut options = ConnectOptions::new(url.clone());
    options
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30));
    if let Some(max) = settings.database.max_connections {
        options.max_connections(max);
    } else if url.starts_with("sqlite:") {
        options.max_connections(8);
    }
    if url.starts_with("sqlite:") {
        // A pooled SQLite connection is a file handle on a local thread that cannot drop:
        // pinging it before every query only adds a round trip to that thread.
        options.test_before_acquire(false);
    }
    let db = Database::connect(options)
        .await
        .context("connecting to the database")?;
    if url.starts_with("sqlite:") {
        use sea_orm::ConnectionTrait;
        // WAL lets readers proceed while a job writes; busy_timeout waits out short locks.
        for pragma in ["PRAGMA journal_mode=WAL", "PRAGMA busy_timeout=5000"] {
            db.execute_unprepared(pragma)
                .await
                .with_context(|| format!("setting {pragma}"))?;
        }
    }
    Ok(db)
}

/// The HTTP routes: `/graphql` for the API, everything else is the web app.
pub fn router(state: AppState) -> Router {
    let schema = graphql::build_schema(state.clone());
    let max_body = state.settings.server.max_body_bytes;
    let web = web_app(&state.settings.web.dist_dir);
    let http_state = HttpState { app: state, schema };
    Router::new()
        .route(
            "/graphql",
            get(graphql::graphql_get).post(graphql::graphql_post),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(crate::observability::readyz))
        .merge(crate::reports::routes())
        .route("/metrics", get(crate::observability::metrics_handler))
        .with_state(http_state)
        .fallback_service(web)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(RequestBodyLimitLayer::new(max_body))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(TraceLayer::new_for_http())
}

/// Serves the compiled web app with a fallback to `index.html` for client-side routes;
/// the `.gz` copies `frontend/build.sh` writes go to browsers that accept gzip.
fn web_app(dist: &Path) -> ServeDir<ServeFile> {
    if !dist.join("index.html").exists() {
        tracing::warn!(
            dist = %dist.display(),
            "the web app is not built (run frontend/build.sh); only /graphql is served"
        );
    }
    ServeDir::new(dist)
        .precompressed_gzip()
        .fallback(ServeFile::new(dist.join("index.html")).precompressed_gzip())
}
