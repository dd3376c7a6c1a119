//! `gradelab eval`: train and test a grader on a dataset directory without a browser, and print the metrics (a table, or JSON for scripts and CI).
//!
//! It runs the server's own code end to end on a throw-away SQLite database in a temporary
//! directory: an account, the dataset imported as a guide with its answers
//! ([`answers::import_dataset`]), a training job ([`training::start`]) and a test run
//! ([`test_runs::start`]), both executed by the ordinary job workers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use entity::enums::{Engine, JobStatus};
use entity::{gradings, llm_cache};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, Schema, Set,
};
use serde::Serialize;
use serde_json::Value;

use crate::config::Settings;
use crate::grading::calibration::CalibrationMethod;
use crate::service::accounts::{self, NewAccount};
use crate::service::answers::{self, ImportOptions, ImportSource};
use crate::service::jobs;
use crate::service::test_runs::{self, TestRunMetrics, TestRunParams};
use crate::service::training::{self, EpochRecord, TrainingParams};
use crate::startup::Application;
use crate::state::AppState;

/// Grading engine of `gradelab eval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineArg {
    /// Local sentence embeddings and a fitted regression (offline, fast).
    Similarity,
    /// The configured language model (`llm.*` settings).
    Llm,
    /// Both, weighted by validation agreement.
    Ensemble,
}

impl From<EngineArg> for Engine {
    fn from(engine: EngineArg) -> Self {
        match engine {
            EngineArg::Similarity => Self::Similarity,
            EngineArg::Llm => Self::Llm,
            EngineArg::Ensemble => Self::Ensemble,
        }
    }
}

/// Calibration the LLM engines fit first (`--calibration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CalibrationArg {
    /// No calibration.
    None,
    /// One shift for the whole guide.
    Shift,
    /// A shift per item, shrunk towards the guide's.
    ItemShift,
    /// A least-squares line.
    Linear,
    /// A monotone map.
    Isotonic,
}

impl From<CalibrationArg> for CalibrationMethod {
    fn from(arg: CalibrationArg) -> Self {
        match arg {
            CalibrationArg::None => Self::None,
            CalibrationArg::Shift => Self::Shift,
            CalibrationArg::ItemShift => Self::ItemShift,
            CalibrationArg::Linear => Self::Linear,
            CalibrationArg::Isotonic => Self::Isotonic,
        }
    }
}

/// Options of `gradelab eval`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// Dataset directory holding `items.jsonl` and `answers.jsonl` (rows with `item_id`,
    /// `answer`, `score` and `split`), e.g. /work/shared/datasets/saf.
    pub dataset: PathBuf,
    /// Grading engines, comma-separated: each is trained and tested in turn on the same
    /// import, so LLM calls an earlier engine paid for are answered from the cache.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [EngineArg::Similarity])]
    pub engine: Vec<EngineArg>,
    /// Split to test: `test` (every split whose name starts with "test") or one split's
    /// exact name in the file, e.g. `test_unseen_answers`.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Grade at most this many test answers (taken in turn from each item).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Only these items (comma-separated ids as in `items.jsonl`).
    #[arg(long, value_delimiter = ',')]
    pub items: Vec<String>,
    /// Use at most this many train answers per item (default: all).
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Share of the train answers moved to validation when the dataset has no validation split.
    #[arg(long, default_value_t = 0.2)]
    pub train_split: f64,
    /// Training epochs after epoch 0.
    #[arg(long, default_value_t = 3)]
    pub epochs: u32,
    /// Calibration the LLM engine fits first (default: the training jobs' default).
    #[arg(long, value_enum)]
    pub calibration: Option<CalibrationArg>,
    /// Train answers the LLM engine grades to fit its calibration.
    #[arg(long, default_value_t = TrainingParams::default().calibration_sample)]
    pub calibration_sample: usize,
    /// Gradings per test answer (more than one measures variance).
    #[arg(long, default_value_t = 1)]
    pub repeats: u32,
    /// Seed of the split and of training.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Model name for the LLM engines (default: the configured `llm.model`).
    #[arg(long)]
    pub model: Option<String>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Keep the model's replies in this SQLite file between runs: a request it holds is
    /// answered from it instead of the model (the same request gets the same reply, so a
    /// rerun is reproducible), and new replies are added after each engine.
    #[arg(long, value_name = "FILE")]
    pub llm_cache: Option<PathBuf>,
    /// Write every graded test answer to this JSON Lines file (engine, item, student,
    /// maximum, the teacher's mark, the engine's and its rationale), so runs on different slices can be
    /// pooled or compared answer by answer.
    #[arg(long, value_name = "FILE")]
    pub predictions: Option<PathBuf>,
}

/// One line of the `--predictions` file.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    /// The engine that graded it.
    pub engine: EngineArg,
    /// The item's label.
    pub item: String,
    /// The teacher's identifier for the student.
    pub student_ref: String,
    /// The item's maximum mark.
    pub max_marks: f64,
    /// The teacher's mark.
    pub teacher: Option<f64>,
    /// The engine's mark (first grading).
    pub score: f64,
    /// Marks of every grading (`--repeats`).
    pub scores: Vec<f64>,
    /// The engine's mark before calibration (first grading).
    pub raw_score: f64,
    /// The engine's verdict on each rubric criterion (first grading; the LLM engine's
    /// `criterion`, `evidence`, `met` and `counted`).
    pub criteria: Value,
    /// The grader's reasoning (first grading).
    pub rationale: String,
}

/// What `gradelab eval` measured.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// The dataset directory.
    pub dataset: String,
    /// The engine.
    pub engine: EngineArg,
    /// The split tested.
    pub split: String,
    /// Answers imported per split.
    pub imported: HashMap<String, usize>,
    /// The training job's epochs (its learning curve).
    pub epochs: Vec<EpochRecord>,
    /// The test run's metrics.
    pub metrics: TestRunMetrics,
    /// Seconds spent training.
    pub training_seconds: f64,
    /// Seconds spent testing.
    pub test_seconds: f64,
    /// LLM tokens spent (prompt + completion) by both jobs.
    pub tokens: i64,
    /// Every graded test answer.
    #[serde(skip)]
    pub predictions: Vec<Prediction>,
}

/// Runs `gradelab eval` and prints the result; the error says what failed.
pub async fn run(settings: Settings, args: EvalArgs) -> anyhow::Result<()> {
    let reports = evaluate(settings, &args).await?;
    if let Some(path) = &args.predictions {
        write_predictions(path, &reports)?;
    }
    if args.json {
        match reports.as_slice() {
            [one] => println!("{}", serde_json::to_string_pretty(one)?),
            many => println!("{}", serde_json::to_string_pretty(many)?),
        }
    } else {
        let tables: Vec<String> = reports.iter().map(table).collect();
        print!("{}", tables.join("\n"));
    }
    Ok(())
}

/// Writes every report's predictions to `path` as JSON Lines.
fn write_predictions(path: &Path, reports: &[EvalReport]) -> anyhow::Result<()> {
    let mut out = String::new();
    for prediction in reports.iter().flat_map(|r| &r.predictions) {
        out.push_str(&serde_json::to_string(prediction)?);
        out.push('\n');
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// The dataset's files, narrowed to `--items`, `--train-limit` and `--split`.
fn read_dataset(args: &EvalArgs) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let read = |name: &str| {
        let path = args.dataset.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let items_text = read("items.jsonl")?;
    let answers_text = read("answers.jsonl")?;
    let wanted = |id: &Value| {
        args.items.is_empty()
            || id
                .as_str()
                .map(str::to_owned)
                .or_else(|| id.as_i64().map(|n| n.to_string()))
                .is_some_and(|id| args.items.contains(&id))
    };
    let mut items = String::new();
    for line in items_text.lines().filter(|l| !l.trim().is_empty()) {
        let row: Value = serde_json::from_str(line).context("items.jsonl: a line is not JSON")?;
        if wanted(&row["id"]) {
            items.push_str(line);
            items.push('\n');
        }
    }
    if items.is_empty() {
        bail!("no items left in items.jsonl (check --items)");
    }
    let split = args.split.trim().to_lowercase();
    let mut train_seen: HashMap<String, usize> = HashMap::new();
    let mut answers = String::new();
    for line in answers_text.lines().filter(|l| !l.trim().is_empty()) {
        let row: Value = serde_json::from_str(line).context("answers.jsonl: a line is not JSON")?;
        if !wanted(&row["item_id"]) {
            continue;
        }
        let row_split = row["split"].as_str().unwrap_or_default().to_lowercase();
        if row_split.starts_with("test") && split != "test" && row_split != split {
            continue;
        }
        if row_split == "train" {
            if let Some(limit) = args.train_limit {
                let seen = train_seen.entry(row["item_id"].to_string()).or_default();
                *seen += 1;
                if *seen > limit {
                    continue;
                }
            }
        }
        answers.push_str(line);
        answers.push('\n');
    }
    Ok((items.into_bytes(), answers.into_bytes()))
}

/// Waits for a job to finish; returns it (failed and cancelled jobs are errors).
async fn wait(
    state: &AppState,
    user_id: i32,
    job_id: i32,
    what: &str,
) -> anyhow::Result<entity::jobs::Model> {
    let mut last_progress = -1.0;
    loop {
        let job = jobs::get(&state.db, user_id, job_id).await?;
        if job.progress - last_progress >= 0.1 || jobs::is_finished(job.status) {
            tracing::info!(job = job_id, progress = job.progress, "{what}");
            last_progress = job.progress;
        }
        match job.status {
            JobStatus::Succeeded => return Ok(job),
            JobStatus::Failed => bail!(
                "the {what} job failed: {}",
                job.error.as_deref().unwrap_or("no reason given")
            ),
            JobStatus::Cancelled => bail!("the {what} job was cancelled"),
            JobStatus::Queued | JobStatus::Running => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Imports, then trains and tests each engine in turn; returns what was measured, one
/// report per engine.
pub async fn evaluate(mut settings: Settings, args: &EvalArgs) -> anyhow::Result<Vec<EvalReport>> {
    if args.engine.is_empty() {
        bail!("--engine needs at least one engine");
    }
    if !(1..=test_runs::MAX_REPEATS).contains(&args.repeats) {
        bail!("--repeats must be between 1 and {}", test_runs::MAX_REPEATS);
    }
    let (items, answers_file) = read_dataset(args)?;
    let data = tempfile::tempdir().context("creating a temporary data directory")?;
    settings.data_dir = data.path().to_path_buf();
    settings.database.url = None;
    settings.server.bind = ([127, 0, 0, 1], 0).into();
    let app = Application::build(settings).await?;
    let state = app.state().clone();

    let (_, user) = accounts::sign_up(
        &state,
        NewAccount {
            email: "eval@gradelab.invalid".into(),
            password: format!("eval-{:016x}", rand::random::<u64>()),
            display_name: "gradelab eval".into(),
        },
    )
    .await
    .context("creating the evaluation account")?;
    let name = args
        .dataset
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".into());
    let (guide, import) = answers::import_dataset(
        &state,
        user.id,
        &format!("{name} (gradelab eval)"),
        ImportSource {
            filename: Some("items.jsonl".into()),
            bytes: items,
        },
        ImportSource {
            filename: Some("answers.jsonl".into()),
            bytes: answers_file,
        },
        ImportOptions {
            seed: args.seed,
            validation_from_train: (args.train_split > 0.0).then_some(args.train_split),
            ..ImportOptions::default()
        },
    )
    .await
    .map_err(|err| anyhow::anyhow!("importing the dataset: {err}"))?;
    let imported: HashMap<String, usize> = import
        .by_split
        .iter()
        .map(|(k, v)| ((*k).to_owned(), *v))
        .collect();
    let kept = match &args.llm_cache {
        Some(path) => {
            let file = open_cache_file(path).await?;
            let copied = copy_cache(&file, &state.db).await?;
            tracing::info!(replies = copied, file = %path.display(), "model replies read from --llm-cache");
            Some(file)
        }
        None => None,
    };
    let mut reports = Vec::with_capacity(args.engine.len());
    for &engine in &args.engine {
        let report = evaluate_engine(&state, user.id, guide.id, &imported, args, engine).await;
        // Replies paid for are kept even when the engine failed, so a rerun resumes there.
        if let Some(file) = &kept {
            let added = copy_cache(&state.db, file).await?;
            tracing::info!(replies = added, "model replies added to --llm-cache");
        }
        reports.push(report?);
    }
    Ok(reports)
}

/// The `--llm-cache` file: an SQLite database with one table, `llm_cache`, as the server's.
async fn open_cache_file(path: &Path) -> anyhow::Result<DatabaseConnection> {
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let db = sea_orm::Database::connect(url)
        .await
        .with_context(|| format!("opening the --llm-cache file {}", path.display()))?;
    let backend = db.get_database_backend();
    let mut create = Schema::new(backend).create_table_from_entity(llm_cache::Entity);
    create.if_not_exists();
    db.execute(backend.build(&create))
        .await
        .with_context(|| format!("{} is not a GradeLab reply cache", path.display()))?;
    Ok(db)
}

/// Copies the cached replies of `from` that `to` lacks (by request hash); returns how many.
async fn copy_cache(from: &DatabaseConnection, to: &DatabaseConnection) -> anyhow::Result<u64> {
    let rows = llm_cache::Entity::find()
        .all(from)
        .await
        .context("reading cached replies")?;
    let mut copied = 0;
    // 100 rows of 9 values each stay far below SQLite's limit on bound parameters.
    for chunk in rows.chunks(100) {
        let entries = chunk.iter().cloned().map(|row| llm_cache::ActiveModel {
            request_sha256: Set(row.request_sha256),
            provider: Set(row.provider),
            model: Set(row.model),
            response: Set(row.response),
            prompt_tokens: Set(row.prompt_tokens),
            completion_tokens: Set(row.completion_tokens),
            hits: Set(row.hits),
            created_at: Set(row.created_at),
            last_hit_at: Set(row.last_hit_at),
            ..Default::default()
        });
        copied += llm_cache::Entity::insert_many(entries)
            .on_conflict(
                OnConflict::column(llm_cache::Column::RequestSha256)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(to)
            .await
            .context("writing cached replies")?;
    }
    Ok(copied)
}

/// Trains one engine on the imported guide and tests the grader version it made.
async fn evaluate_engine(
    state: &AppState,
    user_id: i32,
    guide_id: i32,
    imported: &HashMap<String, usize>,
    args: &EvalArgs,
    engine: EngineArg,
) -> anyhow::Result<EvalReport> {
    let began = Instant::now();
    let job = training::start(
        state,
        user_id,
        guide_id,
        TrainingParams {
            engine: engine.into(),
            epochs: args.epochs,
            patience: args.epochs.max(1),
            seed: args.seed,
            model: args.model.clone(),
            calibration_sample: args.calibration_sample,
            calibration: args
                .calibration
                .map_or(TrainingParams::default().calibration, Into::into),
            ..TrainingParams::default()
        },
    )
    .await
    .map_err(|err| anyhow::anyhow!("starting training: {err}"))?;
    let trained = wait(state, user_id, job.id, "training").await?;
    let training_seconds = began.elapsed().as_secs_f64();
    let version_id = trained
        .result
        .as_ref()
        .and_then(|r| r["grader_version_id"].as_i64())
        .and_then(|id| i32::try_from(id).ok())
        .context("the training job made no grader version")?;
    let epochs = training::epochs(&state.db, user_id, job.id)
        .await
        .map_err(|err| anyhow::anyhow!("reading the learning curve: {err}"))?;

    let began = Instant::now();
    let run = test_runs::start(
        state,
        user_id,
        TestRunParams {
            grader_version_id: version_id,
            limit: args.limit,
            repeats: args.repeats,
            ..TestRunParams::default()
        },
    )
    .await
    .map_err(|err| anyhow::anyhow!("starting the test run: {err}"))?;
    let tested = wait(state, user_id, run.job_id, "test run").await?;
    let test_seconds = began.elapsed().as_secs_f64();
    let metrics = test_runs::metrics(&state.db, user_id, run.id)
        .await
        .map_err(|err| anyhow::anyhow!("reading the metrics: {err}"))?
        .context("the test run stored no metrics")?;
    let results = test_runs::answer_results(&state.db, user_id, run.id)
        .await
        .map_err(|err| anyhow::anyhow!("reading the graded answers: {err}"))?;
    let mut first_gradings: HashMap<i32, gradings::Model> = HashMap::new();
    for chunk in results.chunks(500) {
        let ids = chunk.iter().map(|r| r.grading_id);
        for row in gradings::Entity::find()
            .filter(gradings::Column::Id.is_in(ids))
            .all(&state.db)
            .await
            .context("reading the gradings")?
        {
            first_gradings.insert(row.id, row);
        }
    }
    let predictions = results
        .into_iter()
        .map(|r| {
            let grading = first_gradings.remove(&r.grading_id);
            Prediction {
                engine,
                item: r.item_label,
                student_ref: r.student_ref,
                max_marks: r.max_marks,
                teacher: r.teacher_score,
                score: r.score,
                scores: r.scores,
                raw_score: grading.as_ref().map_or(r.score, |g| g.raw_score),
                criteria: grading.map_or(Value::Null, |g| g.criteria),
                rationale: r.rationale,
            }
        })
        .collect();
    Ok(EvalReport {
        dataset: args.dataset.display().to_string(),
        engine,
        split: args.split.clone(),
        imported: imported.clone(),
        epochs,
        metrics,
        training_seconds,
        test_seconds,
        tokens: trained.prompt_tokens
            + trained.completion_tokens
            + tested.prompt_tokens
            + tested.completion_tokens,
        predictions,
    })
}

fn fmt(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.3}"))
}

/// The report as a plain-text table.
pub fn table(r: &EvalReport) -> String {
    let m = &r.metrics;
    let a = &m.agreement;
    let count = |s: &str| r.imported.get(s).copied().unwrap_or(0);
    let mut out = format!(
        "GradeLab eval: {} · engine {} · split {}\n",
        r.dataset, m.engine, r.split
    );
    out.push_str(&format!(
        "imported train {} · validation {} · test {}; trained {} epochs in {:.1} s; graded {} answers × {} in {:.1} s; {} LLM tokens\n\n",
        count("train"),
        count("validation"),
        count("test"),
        r.epochs.len().saturating_sub(1),
        r.training_seconds,
        m.answers,
        m.repeats.max(1),
        r.test_seconds,
        r.tokens
    ));
    out.push_str(
        "learning curve (validation; a change is kept if QWK rises by more than its noise ±, \
         or moves less and MAE falls by more than its own, or both move less and QWK rises)\n",
    );
    out.push_str(&format!(
        "{:>5} {:<12} {:>5} {:>4} {:>7} {:>6} {:>7} {:>6} {:>7} {:>6} {:>8}\n",
        "epoch", "change", "kept", "n", "QWK", "±", "MAE", "±", "r", "calls", "seconds"
    ));
    for e in &r.epochs {
        out.push_str(&format!(
            "{:>5} {:<12} {:>5} {:>4} {:>7} {:>6} {:>7} {:>6} {:>7} {:>6} {:>8.1}\n",
            e.epoch,
            e.change.kind.chars().take(12).collect::<String>(),
            if e.kept { "yes" } else { "no" },
            e.metrics.n,
            fmt(e.metrics.qwk),
            fmt(e.qwk_noise),
            fmt(e.metrics.mae),
            fmt(e.mae_noise),
            fmt(e.metrics.pearson),
            e.calls,
            e.seconds,
        ));
    }
    out.push('\n');
    out.push_str(&format!("{:<26} {:>8}\n", "metric", "value"));
    let rows: Vec<(&str, String)> = vec![
        ("answers compared (n)", a.n.to_string()),
        ("exact agreement", fmt(a.exact_agreement)),
        ("within ±1 mark", fmt(a.within_one_mark)),
        ("MAE (share of max)", fmt(a.mae)),
        ("RMSE (share of max)", fmt(a.rmse)),
        ("MAE (marks)", fmt(a.mae_marks)),
        ("Pearson r", fmt(a.pearson)),
        ("Spearman rho", fmt(a.spearman)),
        ("QWK (quarters)", fmt(a.qwk)),
        ("mean bias (share of max)", fmt(a.mean_bias)),
        ("consistency (heuristic)", fmt(m.consistency)),
        ("quality (heuristic)", fmt(m.quality)),
        (
            "flip rate",
            fmt(m.variance.as_ref().and_then(|v| v.flip_rate)),
        ),
        (
            "mean spread",
            fmt(m.variance.as_ref().and_then(|v| v.mean_spread)),
        ),
        ("answers to review", m.review_count.to_string()),
    ];
    for (name, value) in rows {
        out.push_str(&format!("{name:<26} {value:>8}\n"));
    }
    out.push_str(&format!(
        "\n{:<24} {:>5} {:>7} {:>7} {:>7} {:>7}\n",
        "item", "n", "exact", "MAE", "QWK", "r"
    ));
    for item in &m.per_item {
        let label: String = item.label.chars().take(24).collect();
        out.push_str(&format!(
            "{label:<24} {:>5} {:>7} {:>7} {:>7} {:>7}\n",
            item.agreement.n,
            fmt(item.agreement.exact_agreement),
            fmt(item.agreement.mae),
            fmt(item.agreement.qwk),
            fmt(item.agreement.pearson),
        ));
    }
    out.push_str("\nconfusion (rows: teacher, columns: grader; share of max 0 ¼ ½ ¾ 1)\n");
    for (label, row) in ["0", "¼", "½", "¾", "1"].iter().zip(&a.confusion.counts) {
        let cells: Vec<String> = row.iter().map(|c| format!("{c:>5}")).collect();
        out.push_str(&format!("{label:>3} {}\n", cells.join(" ")));
    }
    out
}
