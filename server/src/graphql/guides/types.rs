//! GraphQL types for guides and their items.

use std::sync::Arc;

use async_graphql::dataloader::DataLoader;
use async_graphql::{ComplexObject, Context, Enum, InputObject, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use entity::enums::GuideStatus as DbStatus;
use entity::{guide_items, guides};

use crate::error::{AppError, GqlResultExt};
use crate::graphql::jobs::types::Job;
use crate::graphql::loaders::{
    GuideItemsLoader, ItemsKey, LatestJobKey, LatestJobLoader, PagePrefetch,
};
use crate::graphql::state;
use crate::ingest::{Criterion, ExtractedItem};
use crate::service::guides::{
    self as service, ExtractionMethod as ServiceMethod, ItemDetail, ItemPatch,
};

/// Where a guide is in item extraction.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "DbStatus")]
pub enum GuideStatus {
    /// Uploaded; extraction has not started.
    Pending,
    /// An extraction job is working on it.
    Extracting,
    /// Items extracted; the guide can be used.
    Ready,
    /// Extraction failed; `error` says why.
    Failed,
}

/// How a guide's items are extracted.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExtractionMethod {
    /// The language model when one is configured, falling back to the built-in parser when
    /// the model fails.
    #[default]
    Auto,
    /// The language model only: the job fails when the model does.
    Llm,
    /// The built-in parser only (for well-formatted guides: “Question 1 … [5 marks]”).
    Parser,
}

impl From<ExtractionMethod> for ServiceMethod {
    fn from(method: ExtractionMethod) -> Self {
        match method {
            ExtractionMethod::Auto => Self::Auto,
            ExtractionMethod::Llm => Self::Llm,
            ExtractionMethod::Parser => Self::Parser,
        }
    }
}

/// A teacher's marking guide.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Guide {
    /// Stable identifier.
    pub id: ID,
    /// Title shown in the app.
    pub title: String,
    /// Name of the uploaded file; null for pasted text.
    pub filename: Option<String>,
    /// MIME type the file was read as; null for pasted text.
    pub mime: Option<String>,
    /// Lowercase hex SHA-256 of the normalised text (what duplicate detection compares).
    pub content_sha256: String,
    /// The text when it was read with the row (see [`Guide::listed`]).
    #[graphql(skip)]
    pub text: Option<String>,
    /// Where item extraction is.
    pub status: GuideStatus,
    /// Why the last extraction failed.
    pub error: Option<String>,
    /// When it was uploaded.
    pub created_at: DateTime<Utc>,
    /// When it or one of its items last changed.
    pub updated_at: DateTime<Utc>,
    #[graphql(skip)]
    pub db_id: i32,
    #[graphql(skip)]
    pub user_id: i32,
    /// What its page loaded for it and the other guides of the page.
    #[graphql(skip)]
    pub prefetched: Option<Arc<PagePrefetch>>,
}

impl From<guides::Model> for Guide {
    fn from(guide: guides::Model) -> Self {
        Self {
            id: guide.id.into(),
            db_id: guide.id,
            user_id: guide.user_id,
            title: guide.title,
            filename: guide.filename,
            mime: guide.mime,
            content_sha256: guide.content_sha256,
            text: Some(guide.text),
            status: guide.status.into(),
            error: guide.error,
            created_at: guide.created_at,
            updated_at: guide.updated_at,
            prefetched: None,
        }
    }
}

impl Guide {
    /// A guide from a list row, whose text was not read (`text` reads it when asked for),
    /// with what its page loaded.
    pub fn listed(guide: guides::Model, prefetched: Arc<PagePrefetch>) -> Self {
        Self {
            text: None,
            prefetched: Some(prefetched),
            ..Self::from(guide)
        }
    }
}

#[ComplexObject]
impl Guide {
    /// The guide's text as extracted and normalised.
    async fn text(&self, ctx: &Context<'_>) -> Result<String> {
        match &self.text {
            Some(text) => Ok(text.clone()),
            None => service::text(&state(ctx)?.db, self.user_id, self.db_id)
                .await
                .gql(),
        }
    }

    /// The guide's items in order.
    async fn items(&self, ctx: &Context<'_>) -> Result<Vec<GuideItem>> {
        let wanted = ctx.look_ahead();
        let detail = if ["question", "modelAnswer", "rubric"]
            .iter()
            .any(|field| wanted.field(field).exists())
        {
            ItemDetail::Full
        } else {
            ItemDetail::Summary
        };
        Ok(GuideItem::all(&self.item_rows(ctx, detail).await?))
    }

    /// Number of items.
    async fn item_count(&self, ctx: &Context<'_>) -> Result<i32> {
        Ok(self.item_rows(ctx, ItemDetail::Summary).await?.len() as i32)
    }

    /// Sum of the items' maximum marks.
    async fn total_marks(&self, ctx: &Context<'_>) -> Result<f64> {
        Ok(self
            .item_rows(ctx, ItemDetail::Summary)
            .await?
            .iter()
            .map(|i| i.max_marks)
            .sum())
    }

    /// The most recent extraction job, if any.
    async fn extraction_job(&self, ctx: &Context<'_>) -> Result<Option<Job>> {
        self.latest_job_of(ctx, Some(entity::enums::JobKind::Extraction))
            .await
    }

    /// The most recent job of any kind (extraction, training, test run, …), if any.
    async fn latest_job(&self, ctx: &Context<'_>) -> Result<Option<Job>> {
        self.latest_job_of(ctx, None).await
    }
}

impl Guide {
    /// The guide's items, loaded in one batch with the other guides of the response.
    async fn item_rows(
        &self,
        ctx: &Context<'_>,
        detail: ItemDetail,
    ) -> Result<Arc<Vec<guide_items::Model>>> {
        let key = ItemsKey {
            guide_id: self.db_id,
            detail,
        };
        if let Some(rows) = self.prefetched.as_ref().and_then(|page| page.items(key)) {
            return Ok(rows);
        }
        let loader = ctx.data::<DataLoader<GuideItemsLoader>>()?;
        let rows = loader
            .load_one(key)
            .await
            .map_err(|err| AppError::internal(anyhow::anyhow!("loading items: {err}")))
            .gql()?;
        Ok(rows.unwrap_or_default())
    }

    /// The guide's latest job (of `kind`), loaded in one batch with the other guides'.
    async fn latest_job_of(
        &self,
        ctx: &Context<'_>,
        kind: Option<entity::enums::JobKind>,
    ) -> Result<Option<Job>> {
        let key = LatestJobKey {
            guide_id: self.db_id,
            kind,
        };
        if let Some(row) = self
            .prefetched
            .as_ref()
            .and_then(|page| page.latest_job(key))
        {
            return Ok(row
                .filter(|job| job.user_id == self.user_id)
                .map(|job| Arc::clone(job).into()));
        }
        let loader = ctx.data::<DataLoader<LatestJobLoader>>()?;
        let row = loader
            .load_one(key)
            .await
            .map_err(|err| AppError::internal(anyhow::anyhow!("loading jobs: {err}")))
            .gql()?;
        Ok(row
            .filter(|job| job.user_id == self.user_id)
            .map(Into::into))
    }
}

/// One rubric criterion: what earns marks.
#[derive(SimpleObject, InputObject, Clone)]
#[graphql(input_name = "RubricCriterionInput")]
pub struct RubricCriterion {
    /// What the answer must contain or do.
    pub description: String,
    /// Marks it earns.
    pub marks: f64,
}

impl From<Criterion> for RubricCriterion {
    fn from(c: Criterion) -> Self {
        Self {
            description: c.description,
            marks: c.marks,
        }
    }
}

impl From<RubricCriterion> for Criterion {
    fn from(c: RubricCriterion) -> Self {
        Self {
            description: c.description,
            marks: c.marks,
        }
    }
}

/// One question of a guide: a row of its guide's items, shared with the list it came in
/// (a page of guides hands out the item summaries it keeps across requests without copying
/// them).
pub struct GuideItem {
    rows: Arc<Vec<guide_items::Model>>,
    index: usize,
}

impl GuideItem {
    /// Every item of `rows`, in order.
    pub fn all(rows: &Arc<Vec<guide_items::Model>>) -> Vec<Self> {
        (0..rows.len())
            .map(|index| Self {
                rows: Arc::clone(rows),
                index,
            })
            .collect()
    }

    fn row(&self) -> &guide_items::Model {
        &self.rows[self.index]
    }
}

impl From<guide_items::Model> for GuideItem {
    fn from(item: guide_items::Model) -> Self {
        Self {
            rows: Arc::new(vec![item]),
            index: 0,
        }
    }
}

/// One question of a guide.
#[Object]
impl GuideItem {
    /// Stable identifier.
    async fn id(&self) -> ID {
        self.row().id.into()
    }

    /// The guide it belongs to.
    async fn guide_id(&self) -> ID {
        self.row().guide_id.into()
    }

    /// Place in the guide, from 0.
    async fn position(&self) -> i32 {
        self.row().position
    }

    /// Label as printed in the guide, e.g. `1(b)`; answers are matched to items by it.
    async fn label(&self) -> &str {
        &self.row().label
    }

    /// The question as students see it.
    async fn question(&self) -> &str {
        &self.row().question
    }

    /// The model answer (may be empty).
    async fn model_answer(&self) -> &str {
        &self.row().model_answer
    }

    /// Marks available.
    async fn max_marks(&self) -> f64 {
        self.row().max_marks
    }

    /// Whether the teacher edited or added it (re-extraction keeps such items).
    async fn edited(&self) -> bool {
        self.row().edited
    }

    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.row().created_at
    }

    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.row().updated_at
    }

    /// Rubric criteria.
    async fn rubric(&self) -> Vec<RubricCriterion> {
        service::rubric_of(&self.row().rubric)
            .into_iter()
            .map(Into::into)
            .collect()
    }
}

/// A new item.
#[derive(InputObject)]
pub struct GuideItemInput {
    /// Label, unique within the guide, e.g. `4` or `2(c)`.
    pub label: String,
    /// The question.
    pub question: String,
    /// The model answer.
    #[graphql(default)]
    pub model_answer: String,
    /// Marks available (0–1000).
    pub max_marks: f64,
    /// Rubric criteria.
    #[graphql(default)]
    pub rubric: Vec<RubricCriterion>,
}

impl From<GuideItemInput> for ExtractedItem {
    fn from(input: GuideItemInput) -> Self {
        Self {
            label: input.label,
            question: input.question,
            model_answer: input.model_answer,
            max_marks: input.max_marks,
            criteria: input.rubric.into_iter().map(Into::into).collect(),
        }
    }
}

/// Changes to an item; fields left out stay as they are.
#[derive(InputObject)]
pub struct GuideItemPatch {
    /// New label (unique within the guide).
    pub label: Option<String>,
    /// New question.
    pub question: Option<String>,
    /// New model answer.
    pub model_answer: Option<String>,
    /// New maximum marks.
    pub max_marks: Option<f64>,
    /// New rubric; replaces the old one.
    pub rubric: Option<Vec<RubricCriterion>>,
}

impl From<GuideItemPatch> for ItemPatch {
    fn from(patch: GuideItemPatch) -> Self {
        Self {
            label: patch.label,
            question: patch.question,
            model_answer: patch.model_answer,
            max_marks: patch.max_marks,
            criteria: patch
                .rubric
                .map(|r| r.into_iter().map(Into::into).collect()),
        }
    }
}

/// A new guide and the job extracting its items (follow it with `jobEvents`).
#[derive(SimpleObject)]
pub struct CreateGuidePayload {
    /// The guide, with status `PENDING` until the job starts.
    pub guide: Guide,
    /// The extraction job.
    pub job: Job,
}

impl From<service::Created> for CreateGuidePayload {
    fn from(created: service::Created) -> Self {
        Self {
            guide: created.guide.into(),
            job: created.job.into(),
        }
    }
}
