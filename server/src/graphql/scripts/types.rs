//! GraphQL types for scripts, submissions and synthetic answers.

use async_graphql::{Enum, InputObject, SimpleObject, Upload, ID};
use chrono::{DateTime, Utc};
use entity::{answers, submissions};

use crate::graphql::answers::types::Answer;
use crate::graphql::jobs::types::Job;
use crate::service::synthesis::{Level, SyntheticAnswer as ServiceSynthetic};

/// One student's script to upload.
#[derive(InputObject)]
pub struct ScriptInput {
    /// The file: PDF, DOCX or TXT (multipart request).
    pub file: Upload,
    /// The teacher's reference for the student; default: the file name without extension.
    pub student_ref: Option<String>,
    /// Scores already given on paper, by item label; the other answers stay unscored.
    pub scores: Option<Vec<ItemScoreInput>>,
}

/// A teacher's score for one item.
#[derive(InputObject)]
pub struct ItemScoreInput {
    /// The item's label, e.g. "1(a)".
    pub item_label: String,
    /// Marks, between 0 and the item's maximum.
    pub score: f64,
}

/// What happened to one uploaded script.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum ScriptStatus {
    /// Split at its item labels; the answers are stored.
    Split,
    /// Labels missing or ambiguous: a job is splitting it with the language model.
    Queued,
    /// Refused; see `error` and `errorCode`.
    Failed,
}

/// The outcome for one uploaded script.
#[derive(SimpleObject)]
pub struct ScriptResult {
    /// The file name as sent.
    pub filename: String,
    /// What happened.
    pub status: ScriptStatus,
    /// The student's submission (with the answers found so far).
    pub submission: Option<Submission>,
    /// The split job, when the model splits the script.
    pub job: Option<Job>,
    /// Why the file was refused.
    pub error: Option<String>,
    /// The error's code: `DUPLICATE`, `BAD_USER_INPUT`, …
    pub error_code: Option<String>,
}

/// The outcome of a scripts upload, one result per file in request order.
#[derive(SimpleObject)]
pub struct UploadScriptsPayload {
    /// Per file.
    pub results: Vec<ScriptResult>,
    /// Files split at their labels.
    pub split: i32,
    /// Files queued for the model.
    pub queued: i32,
    /// Files refused.
    pub failed: i32,
}

/// One student's work for a guide: a whole script, imported rows or synthetic answers.
#[derive(SimpleObject)]
pub struct Submission {
    /// Stable identifier.
    pub id: ID,
    /// The guide.
    pub guide_id: ID,
    /// The teacher's reference for the student.
    pub student_ref: String,
    /// `script`, `import` or `synthetic`.
    pub source: String,
    /// The uploaded file, if any.
    pub upload_id: Option<ID>,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
    /// Its answers, one per item found.
    pub answers: Vec<Answer>,
}

impl Submission {
    /// A submission with its answers, in guide-item order as stored.
    pub fn new(submission: submissions::Model, mut rows: Vec<answers::Model>) -> Self {
        rows.sort_by_key(|a| a.id);
        Self {
            id: submission.id.into(),
            guide_id: submission.guide_id.into(),
            student_ref: submission.student_ref,
            source: submission.source,
            upload_id: submission.upload_id.map(Into::into),
            created_at: submission.created_at,
            answers: rows.into_iter().map(Into::into).collect(),
        }
    }
}

/// A score level for synthetic answers.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum ScoreLevel {
    /// Deserves full marks.
    Full,
    /// Deserves part of the marks.
    Partial,
    /// Deserves no marks.
    Wrong,
}

impl From<ScoreLevel> for Level {
    fn from(level: ScoreLevel) -> Self {
        match level {
            ScoreLevel::Full => Self::Full,
            ScoreLevel::Partial => Self::Partial,
            ScoreLevel::Wrong => Self::Wrong,
        }
    }
}

impl From<Level> for ScoreLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::Full => Self::Full,
            Level::Partial => Self::Partial,
            Level::Wrong => Self::Wrong,
        }
    }
}

/// An answer written by the language model, waiting for (or given) the teacher's score.
#[derive(SimpleObject)]
pub struct SyntheticAnswer {
    /// The answer; its `teacherScore` stays null, and it stays out of training, until confirmed.
    pub answer: Answer,
    /// The level it was written for.
    pub level: ScoreLevel,
    /// The model's suggested score: a suggestion only, never the teacher's score.
    pub suggested_score: f64,
    /// Whether the teacher confirmed it (set its score).
    pub confirmed: bool,
    /// When the teacher confirmed it.
    pub confirmed_at: Option<DateTime<Utc>>,
}

impl From<ServiceSynthetic> for SyntheticAnswer {
    fn from(s: ServiceSynthetic) -> Self {
        Self {
            answer: s.answer.into(),
            level: Level::parse(&s.suggestion.level)
                .unwrap_or(Level::Partial)
                .into(),
            suggested_score: s.suggestion.suggested_score,
            confirmed: s.suggestion.confirmed_at.is_some(),
            confirmed_at: s.suggestion.confirmed_at,
        }
    }
}
