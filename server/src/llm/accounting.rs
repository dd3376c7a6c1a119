//! Token and cost accounting: one `llm_calls` row per logical call, job totals, per-user
//! usage, and estimates before a job starts.
//!
//! A logical call is what a caller asked for: its retries and its repair request are HTTP
//! attempts of the same call (`attempts`), not calls of their own. Tokens are those the
//! provider billed, summed over the responses that came back (a repair request's included);
//! a cache hit bills nothing, so its row has zero tokens and zero cost.
//!
//! Rows are written by a [`Recorder`]: concurrent calls hand their records to one writer
//! task that commits whatever has queued up in one transaction (group commit), so a busy
//! server writes one multi-row insert per batch instead of one transaction per call. A call
//! still returns only after its own row is committed: usage, job totals and budgets read
//! right after a call see it, and nothing is lost or counted twice when the server stops.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use chrono::Utc;
use entity::{jobs, llm_calls};
use sea_orm::sea_query::{Alias, Expr, Func, SimpleExpr};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};
use tokio::sync::{mpsc, oneshot};

use super::provider::Provider;

/// What is recorded about one logical call.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// User charged.
    pub user_id: Option<i32>,
    /// Job charged.
    pub job_id: Option<i32>,
    /// Provider preset name.
    pub provider: String,
    /// Model name.
    pub model: String,
    /// Purpose.
    pub task: String,
    /// Cache key of the request.
    pub request_sha256: String,
    /// Tokens billed.
    pub prompt_tokens: i64,
    /// Tokens billed.
    pub completion_tokens: i64,
    /// Wall-clock time, retries included.
    pub latency_ms: i64,
    /// Cost in US dollars.
    pub cost_usd: f64,
    /// Answered from the cache.
    pub cache_hit: bool,
    /// HTTP attempts.
    pub attempts: u32,
    /// The error, when the call failed.
    pub error: Option<String>,
}

/// Most records committed in one transaction (14 bind parameters each: 3,584 per insert,
/// well within SQLite's and PostgreSQL's limits).
const MAX_BATCH: usize = 256;

/// One record waiting for the writer, and where to say it is committed.
struct Pending {
    record: CallRecord,
    done: oneshot::Sender<Result<(), DbErr>>,
}

/// Group-commits accounting records through one writer task per client.
pub(crate) struct Recorder {
    db: DatabaseConnection,
    /// Started on first use, inside the runtime that makes the calls.
    queue: OnceLock<mpsc::UnboundedSender<Pending>>,
}

impl Recorder {
    /// A recorder writing to `db`; the writer task starts with the first record.
    pub(crate) fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            queue: OnceLock::new(),
        }
    }

    /// Records `call` and returns once its row (and its job's totals) are committed. If
    /// the caller stops waiting, the record is still written.
    pub(crate) async fn record(&self, call: CallRecord) -> Result<(), DbErr> {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(write_batches(self.db.clone(), rx));
            tx
        });
        let (done, committed) = oneshot::channel();
        if let Err(mpsc::error::SendError(pending)) = queue.send(Pending { record: call, done }) {
            // The writer is gone (its runtime shut down): write directly.
            return record(&self.db, pending.record).await;
        }
        match committed.await {
            Ok(result) => result,
            Err(_) => Err(DbErr::Custom(
                "the accounting writer stopped before committing the record".into(),
            )),
        }
    }
}

/// The writer task: takes whatever records have queued up (at most [`MAX_BATCH`]), commits
/// them in one transaction and answers each caller. If a batch fails, nothing of it was
/// committed; its records are then written one by one, so one bad record fails alone.
/// Ends when the client is dropped and the queue is empty.
async fn write_batches(db: DatabaseConnection, mut queue: mpsc::UnboundedReceiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let records: Vec<&CallRecord> = batch.iter().map(|p| &p.record).collect();
        let outcome = if records.len() == 1 {
            None
        } else {
            Some(record_batch(&db, &records).await)
        };
        drop(records);
        match outcome {
            Some(Ok(())) => {
                for pending in batch.drain(..) {
                    let _ = pending.done.send(Ok(()));
                }
            }
            failed => {
                if let Some(Err(err)) = failed {
                    tracing::warn!(error = %err, records = batch.len(), "batched accounting write failed; writing the records one by one");
                }
                for pending in batch.drain(..) {
                    let result = record(&db, pending.record).await;
                    let _ = pending.done.send(result);
                }
            }
        }
    }
}

/// Inserts `records` with one multi-row insert and adds each job's billed tokens and cost
/// to its totals (jobs in id order, so concurrent writers never deadlock), in one
/// transaction.
async fn record_batch(db: &DatabaseConnection, records: &[&CallRecord]) -> Result<(), DbErr> {
    let mut per_job: BTreeMap<i32, (i64, i64, f64)> = BTreeMap::new();
    for call in records {
        if let Some(job_id) = call.job_id.filter(|_| billed(call)) {
            let totals = per_job.entry(job_id).or_default();
            totals.0 += call.prompt_tokens;
            totals.1 += call.completion_tokens;
            totals.2 += call.cost_usd;
        }
    }
    let txn = db.begin().await?;
    llm_calls::Entity::insert_many(records.iter().map(|call| row((*call).clone())))
        .exec_without_returning(&txn)
        .await?;
    for (job_id, (prompt, completion, cost)) in per_job {
        add_to_job(&txn, job_id, prompt, completion, cost).await?;
    }
    txn.commit().await
}

fn billed(call: &CallRecord) -> bool {
    call.prompt_tokens > 0 || call.completion_tokens > 0 || call.cost_usd > 0.0
}

async fn add_to_job(
    db: &impl ConnectionTrait,
    job_id: i32,
    prompt_tokens: i64,
    completion_tokens: i64,
    cost_usd: f64,
) -> Result<(), DbErr> {
    jobs::Entity::update_many()
        .col_expr(
            jobs::Column::PromptTokens,
            Expr::col(jobs::Column::PromptTokens).add(prompt_tokens),
        )
        .col_expr(
            jobs::Column::CompletionTokens,
            Expr::col(jobs::Column::CompletionTokens).add(completion_tokens),
        )
        .col_expr(
            jobs::Column::CostUsd,
            Expr::col(jobs::Column::CostUsd).add(cost_usd),
        )
        .filter(jobs::Column::Id.eq(job_id))
        .exec(db)
        .await
        .map(|_| ())
}

fn row(call: CallRecord) -> llm_calls::ActiveModel {
    llm_calls::ActiveModel {
        user_id: Set(call.user_id),
        job_id: Set(call.job_id),
        provider: Set(call.provider),
        model: Set(call.model),
        task: Set(call.task),
        request_sha256: Set(call.request_sha256),
        prompt_tokens: Set(call.prompt_tokens),
        completion_tokens: Set(call.completion_tokens),
        latency_ms: Set(call.latency_ms),
        cost_usd: Set(call.cost_usd),
        cache_hit: Set(call.cache_hit),
        status: Set(if call.error.is_some() { "error" } else { "ok" }.to_owned()),
        error: Set(call.error),
        attempts: Set(i32::try_from(call.attempts).unwrap_or(i32::MAX)),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
}

/// Writes one call's `llm_calls` row and, for a job, adds its tokens and cost to the job's
/// totals — in one transaction, so the two never disagree. [`Recorder`] batches this.
pub async fn record(db: &DatabaseConnection, call: CallRecord) -> Result<(), DbErr> {
    match call.job_id {
        Some(job_id) if billed(&call) => {
            let (prompt, completion, cost) =
                (call.prompt_tokens, call.completion_tokens, call.cost_usd);
            let txn = db.begin().await?;
            insert(&txn, row(call)).await?;
            add_to_job(&txn, job_id, prompt, completion, cost).await?;
            txn.commit().await
        }
        _ => insert(db, row(call)).await,
    }
}

async fn insert(db: &impl ConnectionTrait, row: llm_calls::ActiveModel) -> Result<(), DbErr> {
    llm_calls::Entity::insert(row)
        .exec_without_returning(db)
        .await
        .map(|_| ())
}

/// Totals over a set of calls.
#[derive(Debug, Clone, Default, PartialEq, FromQueryResult)]
pub struct UsageTotals {
    /// Purpose (empty for the grand total).
    pub task: String,
    /// Logical calls.
    pub calls: i64,
    /// Calls answered from the cache.
    pub cache_hits: i64,
    /// Calls that failed.
    pub failed: i64,
    /// Prompt tokens billed.
    pub prompt_tokens: i64,
    /// Completion tokens billed.
    pub completion_tokens: i64,
    /// Cost in US dollars.
    pub cost_usd: f64,
}

/// A user's usage: the total and one entry per task (largest cost first).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserUsage {
    /// All calls.
    pub total: UsageTotals,
    /// Per task.
    pub by_task: Vec<UsageTotals>,
}

/// Sums a user's calls per task. Aggregates are cast so SQLite and PostgreSQL return the
/// same types (PostgreSQL's `SUM(bigint)` is `numeric`).
pub async fn user_usage(db: &DatabaseConnection, user_id: i32) -> Result<UserUsage, DbErr> {
    let sum_int = |expr: SimpleExpr| {
        SimpleExpr::from(Func::coalesce([
            Func::sum(expr).into(),
            Expr::val(0i64).into(),
        ]))
        .cast_as(Alias::new("BIGINT"))
    };
    let by_task = llm_calls::Entity::find()
        .select_only()
        .column(llm_calls::Column::Task)
        .column_as(
            Expr::col(llm_calls::Column::Id)
                .count()
                .cast_as(Alias::new("BIGINT")),
            "calls",
        )
        .column_as(
            sum_int(
                Expr::case(Expr::col(llm_calls::Column::CacheHit).eq(true), 1i64)
                    .finally(0i64)
                    .into(),
            ),
            "cache_hits",
        )
        .column_as(
            sum_int(
                Expr::case(Expr::col(llm_calls::Column::Status).ne("ok"), 1i64)
                    .finally(0i64)
                    .into(),
            ),
            "failed",
        )
        .column_as(
            sum_int(Expr::col(llm_calls::Column::PromptTokens).into()),
            "prompt_tokens",
        )
        .column_as(
            sum_int(Expr::col(llm_calls::Column::CompletionTokens).into()),
            "completion_tokens",
        )
        .column_as(
            SimpleExpr::from(Func::coalesce([
                Func::sum(Expr::col(llm_calls::Column::CostUsd)).into(),
                Expr::val(0.0f64).into(),
            ]))
            .cast_as(Alias::new("DOUBLE PRECISION")),
            "cost_usd",
        )
        .filter(llm_calls::Column::UserId.eq(user_id))
        .group_by(llm_calls::Column::Task)
        .order_by_asc(llm_calls::Column::Task)
        .into_model::<UsageTotals>()
        .all(db)
        .await?;
    let mut total = UsageTotals::default();
    for task in &by_task {
        total.calls += task.calls;
        total.cache_hits += task.cache_hits;
        total.failed += task.failed;
        total.prompt_tokens += task.prompt_tokens;
        total.completion_tokens += task.completion_tokens;
        total.cost_usd += task.cost_usd;
    }
    let mut by_task = by_task;
    by_task.sort_by(|a, b| {
        b.cost_usd
            .total_cmp(&a.cost_usd)
            .then(b.calls.cmp(&a.calls))
    });
    Ok(UserUsage { total, by_task })
}

/// Rough tokens in `chars` characters of English text: one token per four characters,
/// rounded up. Good to ±30 % for prose with OpenAI-style BPE tokenisers; use it for
/// budgets, never for billing.
pub fn rough_tokens(chars: u64) -> u64 {
    chars.div_ceil(4)
}

/// Tokens and cost of a planned batch of calls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Calls planned.
    pub calls: u64,
    /// Prompt tokens (chars / 4 per call).
    pub prompt_tokens: u64,
    /// Completion tokens, at the per-call upper bound given.
    pub completion_tokens: u64,
    /// Cost in US dollars from the price table; `None` when the model has no price.
    pub cost_usd: Option<f64>,
}

/// Estimates `calls` calls of about `prompt_chars` characters each, each answered with at
/// most `completion_tokens` tokens, on `model` at `provider`. An upper bound when
/// `completion_tokens` is the calls' `max_tokens`; cache hits would make it cheaper.
pub fn estimate(
    provider: Provider,
    model: &str,
    calls: u64,
    prompt_chars: u64,
    completion_tokens: u64,
) -> Estimate {
    let prompt_tokens = calls.saturating_mul(rough_tokens(prompt_chars));
    let completion_tokens = calls.saturating_mul(completion_tokens);
    let cost_usd = provider.price(model).map(|price| {
        price.cost(
            i64::try_from(prompt_tokens).unwrap_or(i64::MAX),
            i64::try_from(completion_tokens).unwrap_or(i64::MAX),
        )
    });
    Estimate {
        calls,
        prompt_tokens,
        completion_tokens,
        cost_usd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_use_four_characters_per_token_and_the_price_table() {
        assert_eq!(rough_tokens(0), 0);
        assert_eq!(rough_tokens(9), 3);
        let e = estimate(Provider::OpenAi, "gpt-4o-mini", 1_000, 4_000, 100);
        assert_eq!(e.prompt_tokens, 1_000_000);
        assert_eq!(e.completion_tokens, 100_000);
        let cost = e.cost_usd.unwrap_or_default();
        assert!((cost - (0.15 + 0.06)).abs() < 1e-9, "{cost}");
        assert_eq!(
            estimate(Provider::LlamaCpp, "local", 10, 400, 50).cost_usd,
            Some(0.0)
        );
        assert_eq!(
            estimate(Provider::OpenAi, "unknown", 10, 400, 50).cost_usd,
            None
        );
    }
}
