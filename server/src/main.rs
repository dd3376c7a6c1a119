//! The `gradelab` command: serve the app, export the GraphQL schema, run migrations, evaluate a grader on a dataset.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use gradelab::config::Settings;
use gradelab::startup::Application;

/// mimalloc rather than the system allocator (see server/Cargo.toml).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// GradeLab: turn a marking guide into an AI grader you can trust.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (optional; `GRADELAB_*` environment variables override it).
    #[arg(long, env = "GRADELAB_CONFIG", default_value = "gradelab.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API and the web app (the default).
    Serve,
    /// Print the GraphQL schema (SDL) to standard output.
    ExportSchema,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Train and test a grader on a dataset directory (items.jsonl + answers.jsonl) on a
    /// temporary database, and print the metrics: no server, no browser.
    Eval(Box<gradelab::eval::EvalArgs>),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::ExportSchema) = cli.command {
        print!("{}", gradelab::graphql::sdl());
        return Ok(());
    }
    let (settings, unknown) = Settings::load(&cli.config)
        .with_context(|| format!("reading configuration ({})", cli.config.display()))?;
    if let Some(Command::Eval(args)) = cli.command {
        // Standard output carries the table or JSON; logs go to standard error.
        init_eval_logs();
        for key in unknown {
            tracing::warn!(key, "unknown configuration key ignored");
        }
        return gradelab::eval::run(settings, *args).await;
    }
    gradelab::telemetry::init(settings.telemetry.json);
    for key in unknown {
        tracing::warn!(key, "unknown configuration key ignored");
    }
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            let db = gradelab::startup::connect(&settings).await?;
            <migration::Migrator as migration::MigratorTrait>::up(&db, None).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::ExportSchema | Command::Eval(_) => Ok(()),
    }
}

/// Warnings (and `RUST_LOG`) on standard error, for `gradelab eval` (start-up notes about
/// serving the web app do not apply to it).
fn init_eval_logs() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,gradelab::startup=error"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false),
        )
        .try_init();
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    let addr = app.local_addr()?;
    tracing::info!(%addr, "listening");
    println!("GradeLab is running at http://{addr}/");
    app.run_until(shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
