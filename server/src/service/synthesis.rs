//! Synthetic answers: when a guide has no scored answers yet, the language model writes
//! answers at chosen score levels (full, partial, wrong) for the teacher to confirm and score.
//!
//! A `synthesis` job makes one structured call per item and level. Its answers are stored
//! under one `submissions` row (source `synthetic`) with no teacher score, so they stay out
//! of training; the level and the model's suggested score live in `answer_suggestions`,
//! clearly apart from the teacher's score. Confirming an answer sets its teacher score (the
//! teacher's own, or the suggestion the teacher accepts) and from then on it counts like
//! any scored answer.

use std::collections::HashSet;

use chrono::Utc;
use entity::enums::{JobKind, Split};
use entity::{answer_suggestions, answers, guide_items, jobs, submissions};
use schemars::JsonSchema;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::instrument;

use crate::llm::{CallContext, Message, OutputSchema};
use crate::service::jobs::{self as job_service, HandlerFuture, JobContext, JobHandler, Outcome};
use crate::service::scripts::{answer_sha, guide_items_of, owned_guide, score_answer, ScriptError};
use crate::state::AppState;

/// Submission source of synthetic answers.
pub const SOURCE: &str = "synthetic";
/// Most answers per item and level in one job.
pub const MAX_PER_LEVEL: u32 = 10;
/// Most calls (items × levels) one job may make.
pub const MAX_CALLS: usize = 150;
/// Longest synthetic answer, in characters.
const MAX_SYNTHETIC_CHARS: usize = 1_200;

/// A score level to write answers at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Deserves full marks.
    Full,
    /// Deserves some of the marks.
    Partial,
    /// Deserves no marks.
    Wrong,
}

impl Level {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Partial => "partial",
            Self::Wrong => "wrong",
        }
    }

    /// The stored name back.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "full" => Some(Self::Full),
            "partial" => Some(Self::Partial),
            "wrong" => Some(Self::Wrong),
            _ => None,
        }
    }

    /// The share of the maximum a suggestion at this level may take.
    fn band(self) -> (f64, f64) {
        match self {
            Self::Full => (0.75, 1.0),
            Self::Partial => (0.25, 0.75),
            Self::Wrong => (0.0, 0.25),
        }
    }

    fn describe(self, max: f64) -> String {
        let max = fmt_marks(max);
        match self {
            Self::Full => format!("a complete, correct answer that deserves full marks ({max} of {max})"),
            Self::Partial => format!(
                "a partly correct answer that deserves about half of the {max} marks: some marking points right, others missing or wrong"
            ),
            Self::Wrong => "a wrong answer that deserves 0 marks: a plausible misconception or an irrelevant answer, written seriously".to_owned(),
        }
    }
}

fn fmt_marks(marks: f64) -> String {
    let s = format!("{marks:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// What to synthesise.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SynthesisRequest {
    /// Score levels, each at most once.
    pub levels: Vec<Level>,
    /// Answers per item and level.
    pub per_level: u32,
    /// Items to write for; `None` for every item of the guide.
    pub item_ids: Option<Vec<i32>>,
    /// The split the answers go to once confirmed (they are unscored until then).
    pub split: Split,
}

/// Queues a synthesis job for one of the caller's guides.
#[instrument(skip(state))]
pub async fn start(
    state: &AppState,
    user_id: i32,
    guide_id: i32,
    request: SynthesisRequest,
) -> Result<jobs::Model, ScriptError> {
    let guide = owned_guide(&state.db, user_id, guide_id).await?;
    if request.levels.is_empty() {
        return Err(ScriptError::Invalid(
            "Choose at least one score level (FULL, PARTIAL or WRONG).".into(),
        ));
    }
    let mut levels = Vec::new();
    for level in &request.levels {
        if !levels.contains(level) {
            levels.push(*level);
        }
    }
    if !(1..=MAX_PER_LEVEL).contains(&request.per_level) {
        return Err(ScriptError::Invalid(format!(
            "perLevel must be between 1 and {MAX_PER_LEVEL}."
        )));
    }
    let items = guide_items_of(&state.db, guide.id).await?;
    let chosen: Vec<i32> = match &request.item_ids {
        Some(ids) => {
            let known: HashSet<i32> = items.iter().map(|i| i.id).collect();
            if let Some(bad) = ids.iter().find(|id| !known.contains(id)) {
                return Err(ScriptError::Invalid(format!(
                    "Item {bad} is not an item of this guide."
                )));
            }
            items
                .iter()
                .filter(|i| ids.contains(&i.id))
                .map(|i| i.id)
                .collect()
        }
        None => items.iter().map(|i| i.id).collect(),
    };
    if chosen.is_empty() {
        return Err(ScriptError::Invalid(
            "This guide has no items to write answers for.".into(),
        ));
    }
    if chosen.len() * levels.len() > MAX_CALLS {
        return Err(ScriptError::Invalid(format!(
            "That is {} model calls; one job makes at most {MAX_CALLS}: choose fewer items.",
            chosen.len() * levels.len()
        )));
    }
    let params = json!({
        "levels": levels,
        "per_level": request.per_level,
        "item_ids": chosen,
        "split": request.split,
    });
    Ok(job_service::create(state, user_id, Some(guide.id), JobKind::Synthesis, params).await?)
}

/// A synthetic answer with its suggestion.
#[derive(Debug, Clone)]
pub struct SyntheticAnswer {
    /// The answer (teacher score empty until confirmed).
    pub answer: answers::Model,
    /// The level and suggested score.
    pub suggestion: answer_suggestions::Model,
}

/// The caller's synthetic answers of a guide in id order, optionally only the (un)confirmed.
pub async fn list(
    db: &DatabaseConnection,
    user_id: i32,
    guide_id: i32,
    confirmed: Option<bool>,
) -> Result<Vec<SyntheticAnswer>, ScriptError> {
    owned_guide(db, user_id, guide_id).await?;
    let mut query = answer_suggestions::Entity::find()
        .filter(answer_suggestions::Column::UserId.eq(user_id))
        .find_also_related(answers::Entity)
        .filter(answers::Column::GuideId.eq(guide_id))
        .filter(answers::Column::UserId.eq(user_id));
    match confirmed {
        Some(true) => {
            query = query.filter(answer_suggestions::Column::ConfirmedAt.is_not_null());
        }
        Some(false) => query = query.filter(answer_suggestions::Column::ConfirmedAt.is_null()),
        None => {}
    }
    Ok(query
        .order_by_asc(answer_suggestions::Column::AnswerId)
        .all(db)
        .await?
        .into_iter()
        .filter_map(|(suggestion, answer)| {
            answer.map(|answer| SyntheticAnswer { answer, suggestion })
        })
        .collect())
}

/// Confirms a synthetic answer: its teacher score becomes `score`, or — when the teacher
/// accepts the suggestion — the suggested score. Returns the answer with its suggestion.
#[instrument(skip(db))]
pub async fn confirm(
    db: &DatabaseConnection,
    user_id: i32,
    answer_id: i32,
    score: Option<f64>,
    split: Option<Split>,
) -> Result<SyntheticAnswer, ScriptError> {
    let suggestion = answer_suggestions::Entity::find()
        .filter(answer_suggestions::Column::AnswerId.eq(answer_id))
        .filter(answer_suggestions::Column::UserId.eq(user_id))
        .one(db)
        .await?
        .ok_or(ScriptError::AnswerNotFound(answer_id))?;
    let score = score.unwrap_or(suggestion.suggested_score);
    let answer = score_answer(db, user_id, answer_id, score, split).await?;
    let suggestion = answer_suggestions::Entity::find_by_id(suggestion.id)
        .one(db)
        .await?
        .unwrap_or(suggestion);
    Ok(SyntheticAnswer { answer, suggestion })
}

// ---------------------------------------------------------------------------------------
// The job
// ---------------------------------------------------------------------------------------

/// The reply to one synthesis call.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "synthetic_answers")]
pub struct LlmSynthetic {
    /// The answers written.
    #[schemars(length(min = 1, max = 10))]
    pub answers: Vec<LlmSyntheticAnswer>,
}

/// One written answer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LlmSyntheticAnswer {
    /// The answer, in a student's words.
    #[schemars(length(max = 1000))]
    pub answer: String,
    /// The marks it deserves.
    #[schemars(range(min = 0, max = 1000))]
    pub score: f64,
}

/// The system prompt of a synthesis call.
pub const SYSTEM_PROMPT: &str = "You write realistic student answers to an exam question so a teacher can check a marking scheme, and reply with JSON only.\n\
Write each answer in a student's own words, one to four sentences, as a student would write it in an exam, not as a model answer. \
Different answers must differ in wording and content. For each answer give the score in marks that the marking scheme awards it.";

/// The user message of one call.
pub fn user_prompt(item: &guide_items::Model, level: Level, count: u32) -> String {
    let criteria: Vec<crate::ingest::Criterion> =
        serde_json::from_value(item.rubric.clone()).unwrap_or_default();
    let mut prompt = format!(
        "Question ({} marks):\n{}\n",
        fmt_marks(item.max_marks),
        item.question.trim()
    );
    if !item.model_answer.trim().is_empty() {
        prompt.push_str(&format!("\nModel answer:\n{}\n", item.model_answer.trim()));
    }
    if !criteria.is_empty() {
        prompt.push_str("\nMarking scheme:\n");
        for c in &criteria {
            prompt.push_str(&format!(
                "- {} ({} marks)\n",
                c.description,
                fmt_marks(c.marks)
            ));
        }
    }
    prompt.push_str(&format!(
        "\nWrite {count} different {} student answer{}: each {}.",
        level.as_str(),
        if count == 1 { "" } else { "s" },
        level.describe(item.max_marks)
    ));
    prompt
}

/// The suggested score of an answer written at `level`: the model's score, kept inside the
/// level's band of the maximum and rounded to half marks.
pub fn suggested_score(level: Level, model_score: f64, max_marks: f64) -> f64 {
    let (lo, hi) = level.band();
    let raw = if model_score.is_finite() {
        model_score
    } else {
        max_marks * (lo + hi) / 2.0
    };
    let clamped = raw.clamp(lo * max_marks, hi * max_marks);
    let rounded = (clamped * 2.0).round() / 2.0;
    rounded.clamp(0.0, max_marks)
}

#[derive(Debug, Deserialize)]
struct Params {
    levels: Vec<Level>,
    per_level: u32,
    item_ids: Vec<i32>,
    split: Split,
}

/// The part of a synthesis job done so far.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Checkpoint {
    submission_id: Option<i32>,
    /// Calls (item × level, in order) finished.
    done: usize,
    stored: usize,
}

/// Runs `synthesis` jobs with the server's shared LLM client.
#[derive(Default)]
pub struct SynthesisHandler;

impl JobHandler for SynthesisHandler {
    fn run(&self, ctx: JobContext) -> HandlerFuture {
        Box::pin(async move { run(ctx).await })
    }
}

async fn run(ctx: JobContext) -> anyhow::Result<Outcome> {
    let params: Params = serde_json::from_value(ctx.job.params.clone())?;
    let Some(guide_id) = ctx.job.guide_id else {
        anyhow::bail!("the job has no guide");
    };
    let state = &ctx.state;
    let user_id = ctx.job.user_id;
    let items: Vec<guide_items::Model> = guide_items_of(&state.db, guide_id)
        .await?
        .into_iter()
        .filter(|i| params.item_ids.contains(&i.id))
        .collect();
    if items.is_empty() {
        anyhow::bail!("the chosen items were deleted");
    }
    let steps: Vec<(&guide_items::Model, Level)> = items
        .iter()
        .flat_map(|item| params.levels.iter().map(move |level| (item, *level)))
        .collect();
    let mut checkpoint: Checkpoint = ctx
        .job
        .checkpoint
        .clone()
        .and_then(|c| serde_json::from_value(c).ok())
        .unwrap_or_default();
    let submission = match checkpoint.submission_id {
        Some(id) => {
            submissions::Entity::find_by_id(id)
                .filter(submissions::Column::UserId.eq(user_id))
                .one(&state.db)
                .await?
        }
        None => None,
    };
    let submission = match submission {
        Some(s) => s,
        None => {
            let s = submissions::ActiveModel {
                user_id: Set(user_id),
                guide_id: Set(guide_id),
                student_ref: Set(format!("synthetic (job {})", ctx.job.id)),
                source: Set(SOURCE.to_owned()),
                upload_id: Set(None),
                created_at: Set(Utc::now()),
                ..Default::default()
            }
            .insert(&state.db)
            .await?;
            checkpoint = Checkpoint {
                submission_id: Some(s.id),
                done: 0,
                stored: 0,
            };
            ctx.checkpoint(None, serde_json::to_value(&checkpoint)?)
                .await?;
            s
        }
    };
    let llm = &state.llm;
    let base = llm.params_for_user(user_id).await?.temperature(0.8);
    let call = CallContext::task("synthesize_answers")
        .user(user_id)
        .job(ctx.job.id);
    let total = steps.len();
    ctx.progress(
        checkpoint.done as f64 / total as f64,
        &format!("writing answers with the model ({total} calls)"),
    )
    .await?;
    let mut failures = Vec::new();
    for (index, (item, level)) in steps.iter().enumerate().skip(checkpoint.done) {
        if ctx.cancel_requested().await? {
            return Ok(Outcome::Cancelled);
        }
        let count = params.per_level;
        let schema = OutputSchema::of::<LlmSynthetic>();
        let schema = set_list_size(schema, count);
        let call_params = base
            .clone()
            .seed(ctx.job.id as i64 * 1000 + index as i64)
            .max_tokens(120 + 260 * count);
        let messages = [
            Message::system(SYSTEM_PROMPT),
            Message::user(user_prompt(item, *level, count)),
        ];
        match llm
            .structured_with_schema::<LlmSynthetic>(&call, &call_params, &messages, &schema)
            .await
        {
            Ok(reply) => {
                let stored = store(
                    &state.db,
                    &submission,
                    item,
                    *level,
                    params.split,
                    reply.value.answers.into_iter().take(count as usize),
                )
                .await?;
                checkpoint.stored += stored;
                ctx.emit(
                    "answers",
                    json!({ "item": item.label, "level": level.as_str(), "stored": stored }),
                )
                .await?;
            }
            Err(err) => {
                let why = format!("item {} ({}): {err}", item.label, level.as_str());
                ctx.emit(
                    "warning",
                    json!({ "message": format!("The model failed for {why}.") }),
                )
                .await?;
                failures.push(why);
            }
        }
        checkpoint.done = index + 1;
        ctx.checkpoint(None, serde_json::to_value(&checkpoint)?)
            .await?;
        ctx.progress(
            (index + 1) as f64 / total as f64,
            &format!("{} of {total} calls done", index + 1),
        )
        .await?;
    }
    if checkpoint.stored == 0 {
        submissions::Entity::delete_by_id(submission.id)
            .exec(&state.db)
            .await?;
        anyhow::bail!(
            "the model wrote no usable answer ({})",
            if failures.is_empty() {
                "every reply was empty".to_owned()
            } else {
                failures.join("; ")
            }
        );
    }
    Ok(Outcome::Succeeded(json!({
        "submissionId": submission.id,
        "answers": checkpoint.stored,
        "calls": total,
        "failed": failures,
    })))
}

/// Caps the answers list at `count` (the model otherwise writes until its token limit).
fn set_list_size(mut schema: OutputSchema, count: u32) -> OutputSchema {
    if let Some(list) = schema.schema.pointer_mut("/properties/answers") {
        if let Some(obj) = list.as_object_mut() {
            obj.insert("maxItems".into(), json!(count));
            obj.insert("minItems".into(), json!(1));
        }
    }
    schema
}

async fn store(
    db: &DatabaseConnection,
    submission: &submissions::Model,
    item: &guide_items::Model,
    level: Level,
    split: Split,
    written: impl Iterator<Item = LlmSyntheticAnswer>,
) -> Result<usize, sea_orm::DbErr> {
    let existing: HashSet<String> = answers::Entity::find()
        .filter(answers::Column::SubmissionId.eq(submission.id))
        .all(db)
        .await?
        .into_iter()
        .map(|a| a.content_sha256)
        .collect();
    let mut seen = existing;
    let txn = db.begin().await?;
    let mut stored = 0;
    let now = Utc::now();
    for (n, answer) in written.enumerate() {
        let text: String = answer
            .answer
            .trim()
            .chars()
            .take(MAX_SYNTHETIC_CHARS)
            .collect();
        if text.trim().is_empty() {
            continue;
        }
        let sha = answer_sha(&text);
        if !seen.insert(sha.clone()) {
            continue;
        }
        let row = answers::ActiveModel {
            user_id: Set(submission.user_id),
            guide_id: Set(submission.guide_id),
            item_id: Set(item.id),
            submission_id: Set(Some(submission.id)),
            student_ref: Set(format!("synthetic {} {}", level.as_str(), n + 1)),
            text: Set(text),
            // Never the suggestion: the teacher confirms first.
            teacher_score: Set(None),
            split: Set(split),
            content_sha256: Set(sha),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        answer_suggestions::ActiveModel {
            user_id: Set(submission.user_id),
            answer_id: Set(row.id),
            level: Set(level.as_str().to_owned()),
            suggested_score: Set(suggested_score(level, answer.score, item.max_marks)),
            confirmed_at: Set(None),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        stored += 1;
    }
    txn.commit().await?;
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_stay_in_their_level() {
        assert_eq!(suggested_score(Level::Full, 4.0, 4.0), 4.0);
        assert_eq!(suggested_score(Level::Full, 1.0, 4.0), 3.0);
        assert_eq!(suggested_score(Level::Partial, 4.0, 4.0), 3.0);
        assert_eq!(suggested_score(Level::Partial, 1.8, 4.0), 2.0);
        assert_eq!(suggested_score(Level::Wrong, 3.0, 4.0), 1.0);
        assert_eq!(suggested_score(Level::Wrong, f64::NAN, 4.0), 0.5);
    }

    #[test]
    fn the_schema_caps_the_list() {
        let schema = set_list_size(OutputSchema::of::<LlmSynthetic>(), 2);
        assert_eq!(schema.schema["properties"]["answers"]["maxItems"], 2);
        assert!(
            schema.schema["properties"]["answers"]["items"]["properties"]["answer"]["maxLength"]
                .is_u64()
        );
    }
}
