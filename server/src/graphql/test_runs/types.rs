//! GraphQL types for test runs, their metrics, per-answer rows, review queue and exports.

use async_graphql::{ComplexObject, Context, Enum, InputObject, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use entity::test_runs as runs;

use crate::error::GqlResultExt;
use crate::graphql::answers::types::AnswerSplit;
use crate::graphql::jobs::types::Job;
use crate::graphql::training::types::GraderVersion;
use crate::graphql::{parse_id, state};
use crate::metrics::{AgreementReport, ResponseQuality, VarianceReport};
use crate::service::exports::{self, Export as ServiceExport, GradingsFormat};
use crate::service::jobs;
use crate::service::test_runs::{
    self as service, AnswerResult, ItemMetrics, ReviewEntry, TestRunMetrics as ServiceMetrics,
    TestRunParams, UngradedAnswer as ServiceUngraded,
};

/// What to test and how.
#[derive(InputObject)]
pub struct TestRunInput {
    /// The grader version to test.
    pub grader_version_id: ID,
    /// The split graded (ignored with `uploadId`).
    #[graphql(default_with = "AnswerSplit::Test")]
    pub split: AnswerSplit,
    /// Grade the answers of this upload (e.g. a fresh import) instead of a split.
    pub upload_id: Option<ID>,
    /// Gradings per answer, 1 to 5: more than one measures the grader's variance.
    #[graphql(default = 1)]
    pub repeats: i32,
    /// Sampling temperature of an LLM grader's repeats (the first grading uses the
    /// version's own).
    #[graphql(default = 0.7)]
    pub repeat_temperature: f64,
    /// Grade at most this many answers, taken in turn from each item.
    #[graphql(validator(minimum = 1))]
    pub limit: Option<i32>,
}

impl TestRunInput {
    /// The run's parameters.
    pub fn into_params(self) -> Result<TestRunParams> {
        Ok(TestRunParams {
            grader_version_id: parse_id(&self.grader_version_id, "grader version")?,
            split: self.split.into(),
            upload_id: self
                .upload_id
                .map(|id| parse_id(&id, "upload"))
                .transpose()?,
            // Out-of-range values are refused by the service with a clear message.
            repeats: u32::try_from(self.repeats).unwrap_or(0),
            repeat_temperature: self.repeat_temperature,
            limit: self.limit.and_then(|l| usize::try_from(l).ok()),
        })
    }
}

/// Format of a gradings export.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One row per graded answer, with a header row.
    Csv,
    /// The run's metrics and its per-answer rows.
    Json,
}

impl From<ExportFormat> for GradingsFormat {
    fn from(format: ExportFormat) -> Self {
        match format {
            ExportFormat::Csv => Self::Csv,
            ExportFormat::Json => Self::Json,
        }
    }
}

/// A file to download.
#[derive(SimpleObject)]
pub struct Export {
    /// Suggested file name.
    pub filename: String,
    /// MIME type.
    pub content_type: String,
    /// The file's text.
    pub content: String,
    /// Records in it (CSV rows after the header, JSON gradings, JSONL lines).
    pub records: i32,
}

impl From<ServiceExport> for Export {
    fn from(e: ServiceExport) -> Self {
        Self {
            filename: e.filename,
            content_type: e.content_type,
            content: e.content,
            records: i32::try_from(e.records).unwrap_or(i32::MAX),
        }
    }
}

/// A grader version graded against a guide's test split (or an upload) as a job.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct TestRun {
    /// Stable identifier.
    pub id: ID,
    /// The guide.
    pub guide_id: ID,
    /// The version tested.
    pub grader_version_id: ID,
    /// The job id (follow it with `jobEvents`).
    pub job_id: ID,
    /// When it was started.
    pub created_at: DateTime<Utc>,
    /// Agreement with the teacher; null until the run has finished.
    pub metrics: Option<TestRunMetrics>,
    #[graphql(skip)]
    pub db_id: i32,
    #[graphql(skip)]
    pub db_job_id: i32,
    #[graphql(skip)]
    pub db_version_id: i32,
}

impl From<runs::Model> for TestRun {
    fn from(r: runs::Model) -> Self {
        let metrics = service::parse_metrics(&r).map(Into::into);
        Self {
            id: r.id.into(),
            guide_id: r.guide_id.into(),
            grader_version_id: r.grader_version_id.into(),
            job_id: r.job_id.into(),
            created_at: r.created_at,
            metrics,
            db_id: r.id,
            db_job_id: r.job_id,
            db_version_id: r.grader_version_id,
        }
    }
}

#[ComplexObject]
impl TestRun {
    /// The job doing the grading: status, progress, tokens and cost.
    async fn job(&self, ctx: &Context<'_>) -> Result<Job> {
        let user = crate::graphql::require_user(ctx)?;
        Ok(jobs::get(&state(ctx)?.db, user.user_id, self.db_job_id)
            .await
            .gql()?
            .into())
    }

    /// The grader version tested.
    async fn grader_version(&self, ctx: &Context<'_>) -> Result<GraderVersion> {
        let user = crate::graphql::require_user(ctx)?;
        Ok(
            crate::service::training::version(&state(ctx)?.db, user.user_id, self.db_version_id)
                .await
                .gql()?
                .into(),
        )
    }

    /// Graded answers in id order, with every repeat's mark and the grader's rationale
    /// beside the teacher's score.
    async fn answers(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100, validator(minimum = 1, maximum = 5000))] first: i32,
    ) -> Result<Vec<TestRunAnswer>> {
        let user = crate::graphql::require_user(ctx)?;
        let rows = service::answer_results(&state(ctx)?.db, user.user_id, self.db_id)
            .await
            .gql()?;
        Ok(rows
            .into_iter()
            .take(first as usize)
            .map(Into::into)
            .collect())
    }

    /// Answers a person should look at, most urgent first: large disagreement with the
    /// teacher, repeats that disagree, or low confidence.
    async fn review_queue(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, validator(minimum = 1, maximum = 500))] first: i32,
    ) -> Result<Vec<ReviewItem>> {
        let user = crate::graphql::require_user(ctx)?;
        let rows = service::review_queue(&state(ctx)?.db, user.user_id, self.db_id, first as usize)
            .await
            .gql()?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// The run's gradings as a CSV or JSON file.
    async fn export_gradings(&self, ctx: &Context<'_>, format: ExportFormat) -> Result<Export> {
        let user = crate::graphql::require_user(ctx)?;
        Ok(
            exports::test_run_gradings(&state(ctx)?.db, user.user_id, self.db_id, format.into())
                .await
                .gql()?
                .into(),
        )
    }
}

/// Teacher × grader counts over normalised scores binned to quarters.
#[derive(SimpleObject, Clone)]
pub struct Confusion {
    /// Lower edge of each bin as a share of the maximum: 0, 0.25, 0.5, 0.75, 1.
    pub labels: Vec<f64>,
    /// `counts[teacher bin][grader bin]`.
    pub counts: Vec<Vec<i32>>,
}

/// Agreement with the teacher (normalised scores unless a field says marks).
#[derive(SimpleObject, Clone)]
pub struct Agreement {
    /// Scored answers compared.
    pub n: i32,
    /// Share of answers with exactly the teacher's mark.
    pub exact: Option<f64>,
    /// Share within one mark of the teacher.
    pub within_one: Option<f64>,
    /// Mean absolute error of normalised scores (0–1).
    pub mae: Option<f64>,
    /// Root mean squared error of normalised scores.
    pub rmse: Option<f64>,
    /// Mean absolute error in marks.
    pub mae_marks: Option<f64>,
    /// Root mean squared error in marks.
    pub rmse_marks: Option<f64>,
    /// Pearson correlation of normalised scores.
    pub pearson: Option<f64>,
    /// Spearman rank correlation.
    pub spearman: Option<f64>,
    /// Quadratic weighted kappa on normalised scores binned to quarters.
    pub qwk: Option<f64>,
    /// Quadratic weighted kappa on whole marks, when every mark is whole.
    pub qwk_marks: Option<f64>,
    /// Mean (grader − teacher) of normalised scores: positive is generous.
    pub bias: Option<f64>,
    /// Mean (grader − teacher) in marks.
    pub bias_marks: Option<f64>,
    /// Teacher × grader counts.
    pub confusion: Confusion,
}

impl From<&AgreementReport> for Agreement {
    fn from(a: &AgreementReport) -> Self {
        Self {
            n: i32::try_from(a.n).unwrap_or(i32::MAX),
            exact: a.exact_agreement,
            within_one: a.within_one_mark,
            mae: a.mae,
            rmse: a.rmse,
            mae_marks: a.mae_marks,
            rmse_marks: a.rmse_marks,
            pearson: a.pearson,
            spearman: a.spearman,
            qwk: a.qwk,
            qwk_marks: a.qwk_marks,
            bias: a.mean_bias,
            bias_marks: a.mean_bias_marks,
            confusion: Confusion {
                labels: a.confusion.labels.clone(),
                counts: a
                    .confusion
                    .counts
                    .iter()
                    .map(|row| {
                        row.iter()
                            .map(|c| i32::try_from(*c).unwrap_or(i32::MAX))
                            .collect()
                    })
                    .collect(),
            },
        }
    }
}

/// One item's agreement in a run.
#[derive(SimpleObject, Clone)]
pub struct ItemAgreement {
    /// The guide item.
    pub item_id: ID,
    /// Its label.
    pub label: String,
    /// Its maximum mark.
    pub max_marks: f64,
    /// Agreement on its scored answers.
    pub agreement: Agreement,
}

impl From<ItemMetrics> for ItemAgreement {
    fn from(m: ItemMetrics) -> Self {
        Self {
            item_id: m.item_id.into(),
            label: m.label,
            max_marks: m.max_marks,
            agreement: (&m.agreement).into(),
        }
    }
}

/// How much repeated gradings of the same answers disagree.
#[derive(SimpleObject, Clone)]
pub struct Variance {
    /// Gradings per answer.
    pub repeats: i32,
    /// Answers graded more than once.
    pub n: i32,
    /// Share of answers whose gradings are not all the same mark.
    pub flip_rate: Option<f64>,
    /// Mean (max − min) / max marks over the repeats.
    pub mean_spread: Option<f64>,
    /// Largest such spread.
    pub max_spread: Option<f64>,
    /// Mean standard deviation of normalised marks.
    pub mean_sd: Option<f64>,
}

impl From<VarianceReport> for Variance {
    fn from(v: VarianceReport) -> Self {
        Self {
            repeats: i32::try_from(v.repeats).unwrap_or(i32::MAX),
            n: i32::try_from(v.n).unwrap_or(i32::MAX),
            flip_rate: v.flip_rate,
            mean_spread: v.mean_spread,
            max_spread: v.max_spread,
            mean_sd: v.mean_sd,
        }
    }
}

/// The response-quality heuristic, each part 0–1.
#[derive(SimpleObject, Clone, Copy)]
pub struct Quality {
    /// Long enough (20 words or more is 1).
    pub length: f64,
    /// Sentences (3 or more is 1).
    pub structure: f64,
    /// Distinct words over words.
    pub vocabulary: f64,
    /// Share of sentences of 3 to 40 words.
    pub coherence: f64,
    /// Mean of the four.
    pub overall: f64,
}

impl From<ResponseQuality> for Quality {
    fn from(q: ResponseQuality) -> Self {
        Self {
            length: q.length,
            structure: q.structure,
            vocabulary: q.vocabulary,
            coherence: q.coherence,
            overall: q.overall,
        }
    }
}

/// Everything a finished test run measured.
#[derive(SimpleObject, Clone)]
pub struct TestRunMetrics {
    /// Scored answers compared (first grading of each).
    pub n: i32,
    /// Answers graded, scored or not.
    pub answers: i32,
    /// Gradings per answer.
    pub repeats: i32,
    /// The grader's engine.
    pub engine: String,
    /// Share of answers with exactly the teacher's mark.
    pub exact: Option<f64>,
    /// Share within one mark of the teacher.
    pub within_one: Option<f64>,
    /// Mean absolute error of normalised scores (0–1).
    pub mae: Option<f64>,
    /// Root mean squared error of normalised scores.
    pub rmse: Option<f64>,
    /// Pearson correlation of normalised scores.
    pub pearson: Option<f64>,
    /// Spearman rank correlation.
    pub spearman: Option<f64>,
    /// Quadratic weighted kappa on normalised scores binned to quarters.
    pub qwk: Option<f64>,
    /// Mean (grader − teacher) of normalised scores: positive is generous.
    pub bias: Option<f64>,
    /// All agreement figures, marks included.
    pub agreement: Agreement,
    /// Teacher × grader counts.
    pub confusion: Confusion,
    /// Per guide item.
    pub per_item: Vec<ItemAgreement>,
    /// Flip rate and spread, when answers were graded more than once.
    pub variance: Option<Variance>,
    /// Mean consistency heuristic: word Jaccard and length ratio against the model answer.
    pub consistency: Option<f64>,
    /// Mean response-quality heuristic.
    pub quality: Option<f64>,
    /// Means of the response-quality parts.
    pub quality_parts: Quality,
    /// Answers in the review queue.
    pub review_count: i32,
    /// Answers left out because the model failed on them (each one's error says why); the
    /// figures above are over the others.
    pub ungraded: Vec<UngradedAnswer>,
}

/// An answer a test run could not grade.
#[derive(SimpleObject, Clone)]
pub struct UngradedAnswer {
    /// The answer.
    pub answer_id: ID,
    /// Its guide item's label.
    pub item_label: String,
    /// The teacher's identifier for the student.
    pub student_ref: String,
    /// The grading that failed: 0 for the first, 1, 2, … for repeats.
    pub repeat: i32,
    /// What went wrong.
    pub error: String,
}

impl From<ServiceUngraded> for UngradedAnswer {
    fn from(u: ServiceUngraded) -> Self {
        Self {
            answer_id: ID(u.answer_id.to_string()),
            item_label: u.item_label,
            student_ref: u.student_ref,
            repeat: i32::try_from(u.repeat).unwrap_or(i32::MAX),
            error: u.error,
        }
    }
}

impl From<ServiceMetrics> for TestRunMetrics {
    fn from(m: ServiceMetrics) -> Self {
        let agreement = Agreement::from(&m.agreement);
        Self {
            n: agreement.n,
            answers: i32::try_from(m.answers).unwrap_or(i32::MAX),
            repeats: i32::try_from(m.repeats).unwrap_or(i32::MAX),
            engine: m.engine,
            exact: agreement.exact,
            within_one: agreement.within_one,
            mae: agreement.mae,
            rmse: agreement.rmse,
            pearson: agreement.pearson,
            spearman: agreement.spearman,
            qwk: agreement.qwk,
            bias: agreement.bias,
            confusion: agreement.confusion.clone(),
            agreement,
            per_item: m.per_item.into_iter().map(Into::into).collect(),
            variance: m.variance.map(Into::into),
            consistency: m.consistency,
            quality: m.quality,
            quality_parts: m.quality_parts.into(),
            review_count: i32::try_from(m.review_count).unwrap_or(i32::MAX),
            ungraded: m.ungraded.into_iter().map(Into::into).collect(),
        }
    }
}

/// One graded answer of a run.
#[derive(SimpleObject, Clone)]
pub struct TestRunAnswer {
    /// The answer.
    pub answer_id: ID,
    /// Its guide item.
    pub item_id: ID,
    /// The item's label.
    pub item_label: String,
    /// The teacher's identifier for the student.
    pub student_ref: String,
    /// The student's answer (data: escape it when displaying).
    pub text: String,
    /// The teacher's mark, if scored.
    pub teacher_score: Option<f64>,
    /// The item's maximum mark.
    pub max_marks: f64,
    /// The grader's mark (first grading).
    pub score: f64,
    /// Marks of every grading, by repeat.
    pub scores: Vec<f64>,
    /// (max − min) / max marks over the repeats.
    pub spread: f64,
    /// Grader − teacher in marks, if scored.
    pub error: Option<f64>,
    /// Feedback to the student.
    pub feedback: String,
    /// The grader's reasoning, for the teacher.
    pub rationale: String,
    /// The engine's confidence, if it reports one.
    pub confidence: Option<f64>,
    /// Consistency heuristic against the model answer.
    pub consistency: Option<f64>,
    /// Response-quality heuristic.
    pub quality: Quality,
}

impl From<AnswerResult> for TestRunAnswer {
    fn from(r: AnswerResult) -> Self {
        Self {
            answer_id: r.answer_id.into(),
            item_id: r.item_id.into(),
            item_label: r.item_label,
            student_ref: r.student_ref,
            text: r.text,
            teacher_score: r.teacher_score,
            max_marks: r.max_marks,
            score: r.score,
            scores: r.scores,
            spread: r.spread,
            error: r.error,
            feedback: r.feedback,
            rationale: r.rationale,
            confidence: r.confidence,
            consistency: r.consistency,
            quality: r.quality.into(),
        }
    }
}

/// An answer in the review queue.
#[derive(SimpleObject, Clone)]
pub struct ReviewItem {
    /// The answer with its grading and the teacher's score.
    pub answer: TestRunAnswer,
    /// Why: `disagreement`, `variance`, `low_confidence`.
    pub reasons: Vec<String>,
    /// Higher is more urgent.
    pub priority: f64,
}

impl From<ReviewEntry> for ReviewItem {
    fn from(e: ReviewEntry) -> Self {
        Self {
            answer: e.answer.into(),
            reasons: e.reasons,
            priority: e.priority,
        }
    }
}
