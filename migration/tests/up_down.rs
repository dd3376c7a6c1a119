//! Runs the migrations up, down and up again, and checks the schema against the entities,
//! on in-memory SQLite and (when `GRADELAB_TEST_PG_URL` is set) on a throw-away PostgreSQL database.

use std::collections::BTreeSet;
use std::error::Error;
use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::Utc;
use entity::enums::{Engine, GuideStatus, JobKind, JobStatus, Split, TokenKind};
use entity::{
    answers, grader_versions, graders, gradings, guide_items, guides, job_events, jobs, llm_cache,
    llm_calls, reports, sessions, submissions, test_runs, uploads, users,
};
use migration::{Migrator, MigratorTrait, TABLES};
use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, Database, DatabaseConnection, DbBackend, EntityTrait,
    PaginatorTrait, Set, SqlErr, SqlxPostgresConnector, Statement,
};
use serde_json::json;

type TestResult = Result<(), Box<dyn Error + Send + Sync>>;

const SHA_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const SHA_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

#[tokio::test]
async fn sqlite_up_down_up() -> TestResult {
    up_down_up(Database::connect("sqlite::memory:").await?).await
}

#[tokio::test]
async fn sqlite_entities_match_schema() -> TestResult {
    let db = Database::connect("sqlite::memory:").await?;
    Migrator::up(&db, None).await?;
    entities_match_schema(db).await
}

#[tokio::test]
async fn postgres_up_down_up() -> TestResult {
    with_postgres("up_down", up_down_up).await
}

#[tokio::test]
async fn postgres_entities_match_schema() -> TestResult {
    with_postgres("entities", |db| async move {
        Migrator::up(&db, None).await?;
        entities_match_schema(db).await
    })
    .await
}

/// All tables exist after `up`, none after `down`, all again after a second `up`;
/// every foreign-key column leads some index.
async fn up_down_up(db: DatabaseConnection) -> TestResult {
    let expected: BTreeSet<String> = TABLES.iter().map(|t| (*t).to_owned()).collect();

    Migrator::up(&db, None).await?;
    assert_eq!(tables(&db).await?, expected);
    assert_eq!(Migrator::get_pending_migrations(&db).await?.len(), 0);

    Migrator::down(&db, None).await?;
    assert_eq!(tables(&db).await?, BTreeSet::new());

    Migrator::up(&db, None).await?;
    assert_eq!(tables(&db).await?, expected);

    let foreign_keys = foreign_key_columns(&db).await?;
    assert!(foreign_keys.contains("answers.item_id"), "{foreign_keys:?}");
    let unindexed: Vec<_> = foreign_keys
        .difference(&index_leading_columns(&db).await?)
        .cloned()
        .collect();
    assert!(
        unindexed.is_empty(),
        "foreign keys without an index: {unindexed:?}"
    );
    Ok(())
}

/// Inserts a row in every table through the entities, then checks defaults, enum storage,
/// unique constraints and the ON DELETE rules.
async fn entities_match_schema(db: DatabaseConnection) -> TestResult {
    let before = Utc::now() - chrono::Duration::minutes(1);
    let db = &db;

    let user = users::ActiveModel {
        email: Set("ada@example.org".into()),
        display_name: Set("Ada".into()),
        password_hash: Set("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        settings: Set(Some(json!({"provider": "ollama"}))),
        ..Default::default()
    }
    .insert(db)
    .await?;
    assert!(user.created_at > before && user.updated_at == user.created_at);
    let other_user = users::ActiveModel {
        email: Set("bob@example.org".into()),
        display_name: Set("Bob".into()),
        password_hash: Set("x".into()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    let duplicate_email = users::ActiveModel {
        email: Set("ada@example.org".into()),
        display_name: Set("Ada again".into()),
        password_hash: Set("x".into()),
        ..Default::default()
    }
    .insert(db)
    .await;
    assert_unique_violation(duplicate_email);

    let session = sessions::ActiveModel {
        user_id: Set(user.id),
        token_hash: Set(SHA_A.into()),
        kind: Set(TokenKind::ApiToken),
        name: Set(Some("ci".into())),
        ..Default::default()
    }
    .insert(db)
    .await?;
    assert_eq!(session.kind, TokenKind::ApiToken);
    assert_eq!(
        scalar_string(db, "SELECT kind AS v FROM sessions").await?,
        "api_token"
    );
    let duplicate_token = sessions::ActiveModel {
        user_id: Set(other_user.id),
        token_hash: Set(SHA_A.into()),
        kind: Set(TokenKind::Session),
        ..Default::default()
    }
    .insert(db)
    .await;
    assert_unique_violation(duplicate_token);

    // Status left unset: the database default applies.
    let guide = guides::ActiveModel {
        user_id: Set(user.id),
        title: Set("Photosynthesis quiz".into()),
        content_sha256: Set(SHA_A.into()),
        text: Set("1. What is photosynthesis? (2 marks)".into()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    assert_eq!(guide.status, GuideStatus::Pending);
    let duplicate_guide = guides::ActiveModel {
        user_id: Set(user.id),
        title: Set("Same text".into()),
        content_sha256: Set(SHA_A.into()),
        text: Set(String::new()),
        status: Set(GuideStatus::Ready),
        ..Default::default()
    }
    .insert(db)
    .await;
    assert_unique_violation(duplicate_guide);
    // The same text is fine for another user.
    guides::ActiveModel {
        user_id: Set(other_user.id),
        title: Set("Bob's copy".into()),
        content_sha256: Set(SHA_A.into()),
        text: Set(String::new()),
        ..Default::default()
    }
    .insert(db)
    .await?;

    let item = guide_items::ActiveModel {
        guide_id: Set(guide.id),
        position: Set(0),
        label: Set("1".into()),
        question: Set("What is photosynthesis?".into()),
        model_answer: Set("Plants turn light, water and CO2 into glucose and oxygen.".into()),
        max_marks: Set(2.0),
        rubric: Set(json!([{"description": "mentions light", "marks": 1.0}])),
        ..Default::default()
    }
    .insert(db)
    .await?;
    assert!(!item.edited);

    let upload = uploads::ActiveModel {
        user_id: Set(user.id),
        guide_id: Set(Some(guide.id)),
        kind: Set("script".into()),
        sha256: Set(SHA_B.into()),
        filename: Set("ada.pdf".into()),
        size_bytes: Set(5_000_000_000),
        blob_key: Set(format!("bb/{SHA_B}")),
        ..Default::default()
    }
    .insert(db)
    .await?;
    assert_eq!(upload.size_bytes, 5_000_000_000);
    let duplicate_upload = uploads::ActiveModel {
        user_id: Set(user.id),
        kind: Set("script".into()),
        sha256: Set(SHA_B.into()),
        filename: Set("copy.pdf".into()),
        size_bytes: Set(1),
        blob_key: Set("x".into()),
        ..Default::default()
    }
    .insert(db)
    .await;
    assert_unique_violation(duplicate_upload);

    let submission = submissions::ActiveModel {
        user_id: Set(user.id),
        guide_id: Set(guide.id),
        student_ref: Set("s-001".into()),
        source: Set("script".into()),
        upload_id: Set(Some(upload.id)),
        ..Default::default()
    }
    .insert(db)
    .await?;

    let answer = answers::ActiveModel {
        user_id: Set(user.id),
        guide_id: Set(guide.id),
        item_id: Set(item.id),
        submission_id: Set(Some(submission.id)),
        student_ref: Set("s-001".into()),
        text: Set("Light makes food.".into()),
        teacher_score: Set(Some(1.5)),
        content_sha256: Set(SHA_B.into()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    assert_eq!(answer.split, Split::Unassigned);
    let mut moved: answers::ActiveModel = answer.clone().into();
    moved.split = Set(Split::Validation);
    let moved = moved.update(db).await?;
    assert_eq!(moved.split, Split::Validation);
    assert!(moved.updated_at >= answer.updated_at);
    assert_eq!(moved.created_at, answer.created_at);

    // Everything but the required columns left to the database defaults.
    let job = jobs::ActiveModel {
        user_id: Set(user.id),
        guide_id: Set(Some(guide.id)),
        kind: Set(JobKind::Training),
        params: Set(json!({"patience": 2})),
        ..Default::default()
    }
    .insert(db)
    .await?;
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.progress, 0.0);
    assert_eq!(job.cost_usd, 0.0);
    assert_eq!(
        (job.attempts, job.prompt_tokens, job.completion_tokens),
        (0, 0, 0)
    );
    assert!(!job.cancel_requested);

    // A bulk-style insert skips `before_save`: `created_at` comes from the database default
    // and must read back as a recent UTC time.
    job_events::Entity::insert(job_events::ActiveModel {
        job_id: Set(job.id),
        seq: Set(1),
        kind: Set("started".into()),
        payload: Set(json!({})),
        ..Default::default()
    })
    .exec(db)
    .await?;
    let event = job_events::Entity::find()
        .one(db)
        .await?
        .ok_or("job event not stored")?;
    assert!(
        event.created_at > before && event.created_at < Utc::now() + chrono::Duration::minutes(1)
    );
    let duplicate_seq = job_events::ActiveModel {
        job_id: Set(job.id),
        seq: Set(1),
        kind: Set("progress".into()),
        payload: Set(json!({})),
        ..Default::default()
    }
    .insert(db)
    .await;
    assert_unique_violation(duplicate_seq);

    let grader = graders::ActiveModel {
        user_id: Set(user.id),
        guide_id: Set(guide.id),
        name: Set("default".into()),
        engine: Set(Engine::Similarity),
        ..Default::default()
    }
    .insert(db)
    .await?;
    let version = grader_versions::ActiveModel {
        grader_id: Set(grader.id),
        version: Set(1),
        config: Set(json!({"engine": "similarity", "seed": 7})),
        job_id: Set(Some(job.id)),
        ..Default::default()
    }
    .insert(db)
    .await?;

    let test_job = jobs::ActiveModel {
        user_id: Set(user.id),
        guide_id: Set(Some(guide.id)),
        kind: Set(JobKind::TestRun),
        status: Set(JobStatus::Running),
        params: Set(json!({})),
        ..Default::default()
    }
    .insert(db)
    .await?;
    let test_run = test_runs::ActiveModel {
        user_id: Set(user.id),
        job_id: Set(test_job.id),
        guide_id: Set(guide.id),
        grader_version_id: Set(version.id),
        metrics: Set(Some(json!({"mae": 0.5}))),
        ..Default::default()
    }
    .insert(db)
    .await?;
    let grading = gradings::ActiveModel {
        user_id: Set(user.id),
        answer_id: Set(answer.id),
        grader_version_id: Set(version.id),
        job_id: Set(Some(test_job.id)),
        score: Set(1.0),
        raw_score: Set(1.2),
        criteria: Set(json!([])),
        feedback: Set("Mention light.".into()),
        rationale: Set("Half the criteria.".into()),
        confidence: Set(Some(0.8)),
        ..Default::default()
    }
    .insert(db)
    .await?;
    assert_eq!(grading.repeat_index, 0);
    reports::ActiveModel {
        user_id: Set(user.id),
        test_run_id: Set(Some(test_run.id)),
        title: Set("Test run".into()),
        html: Set("<html></html>".into()),
        narrative_source: Set("computed".into()),
        ..Default::default()
    }
    .insert(db)
    .await?;

    let call = llm_calls::ActiveModel {
        user_id: Set(Some(user.id)),
        job_id: Set(Some(job.id)),
        provider: Set("ollama".into()),
        model: Set("qwen2.5:0.5b".into()),
        task: Set("grade".into()),
        request_sha256: Set(SHA_A.into()),
        prompt_tokens: Set(100),
        completion_tokens: Set(20),
        latency_ms: Set(350),
        cost_usd: Set(0.0),
        cache_hit: Set(false),
        status: Set("ok".into()),
        attempts: Set(1),
        ..Default::default()
    }
    .insert(db)
    .await?;
    let cached = llm_cache::ActiveModel {
        request_sha256: Set(SHA_A.into()),
        provider: Set("ollama".into()),
        model: Set("qwen2.5:0.5b".into()),
        response: Set("{}".into()),
        prompt_tokens: Set(100),
        completion_tokens: Set(20),
        ..Default::default()
    }
    .insert(db)
    .await?;
    assert_eq!(cached.hits, 0);

    // Deleting the guide removes everything that only makes sense with it…
    guides::Entity::delete_by_id(guide.id).exec(db).await?;
    assert_eq!(guide_items::Entity::find().count(db).await?, 0);
    assert_eq!(submissions::Entity::find().count(db).await?, 0);
    assert_eq!(answers::Entity::find().count(db).await?, 0);
    assert_eq!(jobs::Entity::find().count(db).await?, 0);
    assert_eq!(job_events::Entity::find().count(db).await?, 0);
    assert_eq!(graders::Entity::find().count(db).await?, 0);
    assert_eq!(grader_versions::Entity::find().count(db).await?, 0);
    assert_eq!(test_runs::Entity::find().count(db).await?, 0);
    assert_eq!(gradings::Entity::find().count(db).await?, 0);
    assert_eq!(reports::Entity::find().count(db).await?, 0);
    // …and keeps the raw upload and the accounting, detached.
    let upload = uploads::Entity::find_by_id(upload.id)
        .one(db)
        .await?
        .ok_or("upload deleted with its guide")?;
    assert_eq!(upload.guide_id, None);
    let call = llm_calls::Entity::find_by_id(call.id)
        .one(db)
        .await?
        .ok_or("llm call deleted with its job")?;
    assert_eq!((call.user_id, call.job_id), (Some(user.id), None));

    // Deleting the user removes what they own but keeps the (anonymised) accounting.
    users::Entity::delete_by_id(user.id).exec(db).await?;
    assert_eq!(sessions::Entity::find().count(db).await?, 0);
    assert_eq!(uploads::Entity::find().count(db).await?, 0);
    assert_eq!(
        guides::Entity::find().count(db).await?,
        1,
        "only Bob's guide is left"
    );
    let call = llm_calls::Entity::find_by_id(call.id)
        .one(db)
        .await?
        .ok_or("llm call deleted with its user")?;
    assert_eq!(call.user_id, None);
    assert_eq!(llm_cache::Entity::find().count(db).await?, 1);
    Ok(())
}

fn assert_unique_violation<T: std::fmt::Debug>(result: Result<T, sea_orm::DbErr>) {
    match result {
        Err(err) => assert!(
            matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))),
            "expected a unique violation, got {err}"
        ),
        Ok(row) => panic!("expected a unique violation, but inserted {row:?}"),
    }
}

/// Names of the tables the migrations own (excludes `seaql_migrations` and SQLite internals).
async fn tables(db: &DatabaseConnection) -> Result<BTreeSet<String>, sea_orm::DbErr> {
    let sql = match db.get_database_backend() {
        DbBackend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
        _ => {
            "SELECT table_name::text AS name FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        }
    };
    let names = strings(db, sql, "name").await?;
    Ok(names
        .into_iter()
        .filter(|n| n != "seaql_migrations" && !n.starts_with("sqlite_"))
        .collect())
}

/// `table.column` of the first column of every foreign key.
async fn foreign_key_columns(db: &DatabaseConnection) -> Result<BTreeSet<String>, sea_orm::DbErr> {
    let sql = match db.get_database_backend() {
        DbBackend::Sqlite => {
            "SELECT m.name || '.' || f.\"from\" AS c \
             FROM sqlite_master m, pragma_foreign_key_list(m.name) f \
             WHERE m.type = 'table' AND f.seq = 0"
        }
        _ => {
            "SELECT c.conrelid::regclass::text || '.' || a.attname::text AS c \
             FROM pg_constraint c \
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] \
             WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace"
        }
    };
    Ok(strings(db, sql, "c").await?.into_iter().collect())
}

/// `table.column` of the first column of every index.
async fn index_leading_columns(
    db: &DatabaseConnection,
) -> Result<BTreeSet<String>, sea_orm::DbErr> {
    let sql = match db.get_database_backend() {
        DbBackend::Sqlite => {
            "SELECT m.name || '.' || ii.name AS c \
             FROM sqlite_master m, pragma_index_list(m.name) il, pragma_index_info(il.name) ii \
             WHERE m.type = 'table' AND ii.seqno = 0"
        }
        _ => {
            "SELECT i.indrelid::regclass::text || '.' || a.attname::text AS c \
             FROM pg_index i \
             JOIN pg_class t ON t.oid = i.indrelid \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
             WHERE t.relnamespace = current_schema()::regnamespace"
        }
    };
    Ok(strings(db, sql, "c").await?.into_iter().collect())
}

async fn strings(
    db: &DatabaseConnection,
    sql: &str,
    column: &str,
) -> Result<Vec<String>, sea_orm::DbErr> {
    let rows = db
        .query_all(Statement::from_string(db.get_database_backend(), sql))
        .await?;
    rows.iter()
        .map(|row| row.try_get::<String>("", column))
        .collect()
}

async fn scalar_string(db: &DatabaseConnection, sql: &str) -> Result<String, sea_orm::DbErr> {
    strings(db, sql, "v")
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| sea_orm::DbErr::RecordNotFound(sql.to_owned()))
}

/// Runs `body` on a fresh PostgreSQL database created from the admin URL in
/// `GRADELAB_TEST_PG_URL`, and drops the database afterwards, even if `body` panics.
/// Does nothing when the variable is unset.
async fn with_postgres<F, Fut>(label: &str, body: F) -> TestResult
where
    F: FnOnce(DatabaseConnection) -> Fut,
    Fut: Future<Output = TestResult> + Send + 'static,
{
    let Ok(admin_url) = std::env::var("GRADELAB_TEST_PG_URL") else {
        eprintln!("GRADELAB_TEST_PG_URL is not set: skipping the PostgreSQL part");
        return Ok(());
    };
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.subsec_nanos();
    let name = format!("gradelab_migration_{label}_{}_{nanos}", std::process::id());

    let admin = Database::connect(admin_url.as_str()).await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await?;

    let options: PgConnectOptions = admin_url.parse()?;
    let outcome = match PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.database(&name))
        .await
    {
        Ok(pool) => {
            let db = SqlxPostgresConnector::from_sqlx_postgres_pool(pool);
            // A spawned task turns a panic into a JoinError, so the database is dropped anyway.
            let outcome = tokio::spawn(body(db.clone())).await;
            db.close().await?;
            outcome
        }
        Err(err) => Ok(Err(err.into())),
    };

    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await?;
    admin.close().await?;

    match outcome {
        Ok(result) => result,
        Err(join_error) if join_error.is_panic() => {
            std::panic::resume_unwind(join_error.into_panic())
        }
        Err(join_error) => Err(join_error.into()),
    }
}
