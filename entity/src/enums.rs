//! String-backed enums stored in `varchar(20)` columns; the database holds the snake_case value.

use std::fmt;

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// What a row of `sessions` is: a browser login or a named API token.
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(20))")]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// Cookie session created by logging in.
    #[sea_orm(string_value = "session")]
    Session,
    /// Long-lived bearer token created by the user for scripts.
    #[sea_orm(string_value = "api_token")]
    ApiToken,
}

/// Where a guide is in text and item extraction.
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(20))")]
#[serde(rename_all = "snake_case")]
pub enum GuideStatus {
    /// Uploaded, extraction not started.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// An extraction job is working on it.
    #[sea_orm(string_value = "extracting")]
    Extracting,
    /// Items extracted; the guide can be used.
    #[sea_orm(string_value = "ready")]
    Ready,
    /// Extraction failed; see `guides.error`.
    #[sea_orm(string_value = "failed")]
    Failed,
}

/// Which part of the data an answer belongs to.
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(20))")]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Used to pick exemplars and fit calibration.
    #[sea_orm(string_value = "train")]
    Train,
    /// Used to decide whether a training epoch is kept.
    #[sea_orm(string_value = "validation")]
    Validation,
    /// Held out; only graded by test runs.
    #[sea_orm(string_value = "test")]
    Test,
    /// Not yet assigned to a split.
    #[sea_orm(string_value = "unassigned")]
    Unassigned,
}

/// How a grader scores an answer.
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(20))")]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// Rubric prompt, few-shot exemplars and calibration on a language model.
    #[sea_orm(string_value = "llm")]
    Llm,
    /// Local sentence embeddings, lexical features and a fitted regression.
    #[sea_orm(string_value = "similarity")]
    Similarity,
    /// Both, weighted by validation agreement.
    #[sea_orm(string_value = "ensemble")]
    Ensemble,
}

/// What a background job does.
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(20))")]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Extract the items of a guide.
    #[sea_orm(string_value = "extraction")]
    Extraction,
    /// Calibrate a grader epoch by epoch.
    #[sea_orm(string_value = "training")]
    Training,
    /// Grade a test split with a grader version.
    #[sea_orm(string_value = "test_run")]
    TestRun,
    /// Build an HTML report.
    #[sea_orm(string_value = "report")]
    Report,
    /// Split a student's whole script into one answer per guide item with the LLM.
    #[sea_orm(string_value = "script_split")]
    ScriptSplit,
    /// Write synthetic answers at chosen score levels with the LLM.
    #[sea_orm(string_value = "synthesis")]
    Synthesis,
}

/// Life cycle of a background job.
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(20))")]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for a worker to claim it.
    #[sea_orm(string_value = "queued")]
    Queued,
    /// Claimed by the worker named in `jobs.lease_owner`.
    #[sea_orm(string_value = "running")]
    Running,
    /// Finished; `jobs.result` holds the outcome.
    #[sea_orm(string_value = "succeeded")]
    Succeeded,
    /// Gave up; `jobs.error` says why.
    #[sea_orm(string_value = "failed")]
    Failed,
    /// Stopped at the user's request.
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

impl JobStatus {
    /// True once the job will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// `as_str()` (the stored value) and `Display` for each enum.
macro_rules! impl_as_str {
    ($($ty:ident { $($variant:ident => $value:literal),+ $(,)? })+) => {$(
        impl $ty {
            /// The value stored in the database and used in JSON.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $value),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )+};
}

impl_as_str! {
    TokenKind { Session => "session", ApiToken => "api_token" }
    GuideStatus { Pending => "pending", Extracting => "extracting", Ready => "ready", Failed => "failed" }
    Split { Train => "train", Validation => "validation", Test => "test", Unassigned => "unassigned" }
    Engine { Llm => "llm", Similarity => "similarity", Ensemble => "ensemble" }
    JobKind {
        Extraction => "extraction",
        Training => "training",
        TestRun => "test_run",
        Report => "report",
        ScriptSplit => "script_split",
        Synthesis => "synthesis",
    }
    JobStatus {
        Queued => "queued",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{ActiveEnum, Iterable};

    /// `as_str`, the database value and the JSON value must never drift apart.
    fn check<E>()
    where
        E: ActiveEnum<Value = String> + Iterable + Serialize + Copy + fmt::Display,
    {
        for v in E::iter() {
            let db = v.to_value();
            assert_eq!(v.to_string(), db);
            assert!(db.len() <= 20, "{db} does not fit varchar(20)");
            assert_eq!(
                serde_json::to_value(v).ok(),
                Some(serde_json::Value::String(db))
            );
        }
    }

    #[test]
    fn stored_json_and_display_values_agree() {
        check::<TokenKind>();
        check::<GuideStatus>();
        check::<Split>();
        check::<Engine>();
        check::<JobKind>();
        check::<JobStatus>();
    }
}
