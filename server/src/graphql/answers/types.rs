//! GraphQL types for answers, imports and splits.

use async_graphql::{Enum, InputObject, SimpleObject, ID};
use chrono::{DateTime, Utc};
use entity::answers;
use entity::enums::Split as DbSplit;

use crate::graphql::guides::types::Guide;
use crate::service::answers::{
    FileFormat, ImportOptions, ImportReport, ItemSplitCounts as ServiceItemCounts,
    RowError as ServiceRowError, SplitFractions, SplitSummary as ServiceSummary,
};

/// Which part of the data an answer belongs to.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "DbSplit")]
pub enum AnswerSplit {
    /// Exemplars and calibration are chosen from it.
    Train,
    /// Decides whether a training epoch's change is kept.
    Validation,
    /// Held out for test runs.
    Test,
    /// Not in a split yet.
    Unassigned,
}

/// How an answers file is written.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum AnswerFileFormat {
    /// Comma-, semicolon- or tab-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl From<AnswerFileFormat> for FileFormat {
    fn from(format: AnswerFileFormat) -> Self {
        match format {
            AnswerFileFormat::Csv => Self::Csv,
            AnswerFileFormat::Jsonl => Self::Jsonl,
        }
    }
}

/// A student's answer to one guide item, with the teacher's score.
#[derive(SimpleObject)]
pub struct Answer {
    /// Stable identifier.
    pub id: ID,
    /// The guide.
    pub guide_id: ID,
    /// The item answered.
    pub item_id: ID,
    /// The submission (student's work) it belongs to.
    pub submission_id: Option<ID>,
    /// The teacher's reference for the student.
    pub student_ref: String,
    /// The answer text (data, never instructions).
    pub text: String,
    /// The teacher's marks; null when unscored.
    pub teacher_score: Option<f64>,
    /// Its split.
    pub split: AnswerSplit,
    /// Lowercase hex SHA-256 of the whitespace-normalised text.
    pub content_sha256: String,
    /// When it was imported.
    pub created_at: DateTime<Utc>,
}

impl From<answers::Model> for Answer {
    fn from(a: answers::Model) -> Self {
        Self {
            id: a.id.into(),
            guide_id: a.guide_id.into(),
            item_id: a.item_id.into(),
            submission_id: a.submission_id.map(Into::into),
            student_ref: a.student_ref,
            text: a.text,
            teacher_score: a.teacher_score,
            split: a.split.into(),
            content_sha256: a.content_sha256,
            created_at: a.created_at,
        }
    }
}

/// Proportions of train, validation and test; any non-negative numbers with a positive sum.
#[derive(InputObject, Clone, Copy)]
pub struct SplitFractionsInput {
    /// Share of train.
    pub train: f64,
    /// Share of validation.
    pub validation: f64,
    /// Share of test.
    pub test: f64,
}

impl From<SplitFractionsInput> for SplitFractions {
    fn from(f: SplitFractionsInput) -> Self {
        Self {
            train: f.train,
            validation: f.validation,
            test: f.test,
        }
    }
}

/// How an import reads the file and assigns splits.
#[derive(InputObject)]
pub struct ImportAnswersOptions {
    /// The file's format; by default from its name, else from its content.
    pub format: Option<AnswerFileFormat>,
    /// Import the good rows of a file with bad rows (the bad ones are reported). Without
    /// it, a file with any bad row imports nothing.
    #[graphql(default)]
    pub skip_bad_rows: bool,
    /// Proportions for rows without a split (default 0.6 / 0.2 / 0.2).
    pub fractions: Option<SplitFractionsInput>,
    /// Seed of the stratified split (by item and score); the same seed gives the same split.
    #[graphql(default = 42, validator(minimum = 0))]
    pub seed: i64,
    /// Ignore the file's splits and assign every row.
    #[graphql(default)]
    pub resplit: bool,
    /// Share of the train rows moved to validation (stratified), e.g. 0.2 for a dataset
    /// without a validation split.
    pub validation_from_train: Option<f64>,
}

impl Default for ImportAnswersOptions {
    fn default() -> Self {
        Self {
            format: None,
            skip_bad_rows: false,
            fractions: None,
            seed: 42,
            resplit: false,
            validation_from_train: None,
        }
    }
}

impl From<ImportAnswersOptions> for ImportOptions {
    fn from(o: ImportAnswersOptions) -> Self {
        Self {
            format: o.format.map(Into::into),
            skip_bad_rows: o.skip_bad_rows,
            fractions: o.fractions.map(Into::into).unwrap_or_default(),
            seed: o.seed.max(0) as u64,
            resplit: o.resplit,
            validation_from_train: o.validation_from_train,
        }
    }
}

/// A row of a file that could not be imported.
#[derive(SimpleObject, Clone)]
pub struct RowError {
    /// 1-based line of the file where the row starts.
    pub line: i32,
    /// What is wrong with it.
    pub message: String,
}

impl From<ServiceRowError> for RowError {
    fn from(e: ServiceRowError) -> Self {
        Self {
            line: i32::try_from(e.line).unwrap_or(i32::MAX),
            message: e.message,
        }
    }
}

/// Answers in one split.
#[derive(SimpleObject)]
pub struct SplitCount {
    /// The split.
    pub split: AnswerSplit,
    /// Answers in it.
    pub count: i32,
}

/// One item's answers per split.
#[derive(SimpleObject)]
pub struct ItemSplitCounts {
    /// The item.
    pub item_id: ID,
    /// Its label.
    pub label: String,
    /// Its maximum marks.
    pub max_marks: f64,
    /// Answers in train.
    pub train: i32,
    /// Answers in validation.
    pub validation: i32,
    /// Answers in test.
    pub test: i32,
    /// Answers in no split.
    pub unassigned: i32,
    /// Answers with a teacher's score.
    pub scored: i32,
    /// Mean teacher score divided by the maximum, when any answer is scored.
    pub mean_normalised_score: Option<f64>,
}

impl From<ServiceItemCounts> for ItemSplitCounts {
    fn from(c: ServiceItemCounts) -> Self {
        let n = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
        Self {
            item_id: c.item_id.into(),
            label: c.label,
            max_marks: c.max_marks,
            train: n(c.train),
            validation: n(c.validation),
            test: n(c.test),
            unassigned: n(c.unassigned),
            scored: n(c.scored),
            mean_normalised_score: c.mean_normalised_score,
        }
    }
}

/// A guide's answers by split and by item.
#[derive(SimpleObject)]
pub struct SplitSummary {
    /// The guide.
    pub guide_id: ID,
    /// All answers.
    pub total: i32,
    /// Answers with a teacher's score.
    pub scored: i32,
    /// Answers per split (every split listed).
    pub by_split: Vec<SplitCount>,
    /// Per item, in guide order.
    pub items: Vec<ItemSplitCounts>,
}

impl From<ServiceSummary> for SplitSummary {
    fn from(s: ServiceSummary) -> Self {
        let n = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
        Self {
            guide_id: s.guide_id.into(),
            total: n(s.total),
            scored: n(s.scored),
            by_split: s
                .by_split
                .into_iter()
                .map(|(split, count)| SplitCount {
                    split: split.into(),
                    count: n(count),
                })
                .collect(),
            items: s.items.into_iter().map(Into::into).collect(),
        }
    }
}

/// What an import did.
#[derive(SimpleObject)]
pub struct ImportAnswersPayload {
    /// The stored file.
    pub upload_id: ID,
    /// Its name (pasted text gets `pasted.csv` or `pasted.jsonl`).
    pub filename: String,
    /// Lowercase hex SHA-256 of its bytes (what duplicate detection compares).
    pub sha256: String,
    /// The guide the answers went to.
    pub guide_id: ID,
    /// Answers imported.
    pub imported: i32,
    /// Bad rows left out (with `skipBadRows`).
    pub skipped_count: i32,
    /// The bad rows left out, with line numbers (the first 200).
    pub skipped: Vec<RowError>,
    /// Imported answers per split.
    pub by_split: Vec<SplitCount>,
    /// The guide's answers after the import, per split and item.
    pub summary: SplitSummary,
}

impl ImportAnswersPayload {
    /// The payload of an import and the guide's summary after it.
    pub fn new(report: ImportReport, summary: ServiceSummary) -> Self {
        let n = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
        let by_split = [
            DbSplit::Train,
            DbSplit::Validation,
            DbSplit::Test,
            DbSplit::Unassigned,
        ]
        .into_iter()
        .filter_map(|split| {
            report.by_split.get(split.as_str()).map(|count| SplitCount {
                split: split.into(),
                count: n(*count),
            })
        })
        .collect();
        Self {
            upload_id: report.upload.id.into(),
            filename: report.upload.filename,
            sha256: report.upload.sha256,
            guide_id: report.guide_id.into(),
            imported: n(report.imported),
            skipped_count: n(report.skipped_count),
            skipped: report.skipped.into_iter().map(Into::into).collect(),
            by_split,
            summary: summary.into(),
        }
    }
}

/// A guide made from an items file, with its imported answers.
#[derive(SimpleObject)]
pub struct ImportDatasetPayload {
    /// The new guide (ready: its items come from the file).
    pub guide: Guide,
    /// The answers import.
    pub answers: ImportAnswersPayload,
}
