//! Marking guides: creation from a file or pasted text, duplicate detection, the item
//! extraction job, and the teacher's edits to items.
//!
//! Creating a guide reads the file ([`crate::ingest`]), hashes the normalised text with
//! SHA-256 and refuses a second copy from the same user, naming the first. The raw file is
//! kept in the content-addressed [`BlobStore`]. Nothing is left behind by a failure: a
//! refused upload writes no row and no file, and when the first extraction of a new guide
//! finds no items (the model failed and the parser found nothing), the guide, its upload
//! row and its file are removed again — the failed job stays, with the reason.
//!
//! Re-extraction keeps every item the teacher edited or added (`guide_items.edited`): an
//! extracted item with the same label as an edited one is dropped in its favour, and the
//! job's result lists which labels were kept.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use entity::enums::{GuideStatus, JobKind};
use entity::{guide_items, guides, jobs, uploads};
use sea_orm::sea_query::{Alias, Asterisk, Expr, Query, UnionType};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    FromQueryResult, Iterable, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    Set, SqlErr, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use tracing::instrument;

use crate::blobs::BlobStore;
use crate::error::{AppError, ErrorCode};
use crate::ingest::items::{label_key, tidy, MAX_FIELD_CHARS, MAX_LABEL_CHARS, MAX_MARKS};
use crate::ingest::{self, Criterion, ExtractedItem, IngestError, Limits};
use crate::llm::{CallContext, LlmClient, Message};
use crate::service::jobs::{
    self as job_service, HandlerFuture, JobContext, JobError, JobHandler, Outcome,
};
use crate::state::AppState;

/// Longest guide title.
pub const MAX_TITLE_CHARS: usize = 200;
/// Most criteria on one item.
pub const MAX_CRITERIA: usize = 50;
/// Most items in one guide.
pub const MAX_ITEMS: usize = 500;

/// What went wrong with a guide request.
#[derive(Debug, thiserror::Error)]
pub enum GuideError {
    /// No such guide for this user.
    #[error("guide {0} not found")]
    NotFound(i32),
    /// No such item for this user.
    #[error("guide item {0} not found")]
    ItemNotFound(i32),
    /// The same text was already uploaded by this user.
    #[error("This guide was already uploaded as “{title}” on {date} (guide {id}).")]
    Duplicate {
        /// The existing guide's id.
        id: i32,
        /// Its title.
        title: String,
        /// When it was created, `YYYY-MM-DD`.
        date: String,
    },
    /// The file could not be read.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// Invalid input; the message says how to fix it.
    #[error("{0}")]
    Invalid(String),
    /// An extraction is already queued or running.
    #[error("Items are already being extracted from this guide; wait for that job to finish or cancel it.")]
    Busy,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
    /// The file store failed.
    #[error("file store: {0}")]
    Io(#[from] std::io::Error),
    /// Creating the job failed.
    #[error(transparent)]
    Job(#[from] JobError),
}

impl From<GuideError> for AppError {
    fn from(err: GuideError) -> Self {
        match err {
            GuideError::NotFound(id) => AppError::not_found("guide", id),
            GuideError::ItemNotFound(id) => AppError::not_found("guide item", id),
            GuideError::Duplicate { .. } => AppError::new(ErrorCode::Duplicate, err.to_string()),
            GuideError::Ingest(IngestError::Busy) => {
                AppError::new(ErrorCode::RateLimited, err.to_string())
            }
            GuideError::Ingest(_) | GuideError::Invalid(_) | GuideError::Busy => {
                AppError::bad_input(err.to_string())
            }
            GuideError::Db(err) => AppError::internal(err),
            GuideError::Io(err) if is_disk_full(&err) => {
                tracing::error!(error = %err, "the data directory is full");
                AppError::new(
                    ErrorCode::Internal,
                    "The server has no disk space left to store this file, so nothing was saved. \
                     Try again later or ask the administrator to free space in the data directory.",
                )
            }
            GuideError::Io(err) => AppError::internal(err),
            GuideError::Job(err) => err.into(),
        }
    }
}

/// Whether an I/O error means the file system is full (or over quota).
pub fn is_disk_full(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// How items are extracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtractionMethod {
    /// The language model when one is configured, with the parser as fallback.
    #[default]
    Auto,
    /// The language model only; the job fails when the model does.
    Llm,
    /// The deterministic parser only.
    Parser,
}

/// A file to create a guide from.
#[derive(Debug)]
pub struct NewUpload {
    /// File name as sent by the browser (display only).
    pub filename: String,
    /// The file's content, spooled to disk by the multipart parser; it is streamed into the
    /// blob store, never read into memory whole.
    pub file: std::fs::File,
    /// Title; defaults to the guide's first line or the file name.
    pub title: Option<String>,
}

/// A created guide and its extraction job.
#[derive(Debug)]
pub struct Created {
    /// The guide.
    pub guide: guides::Model,
    /// The extraction job.
    pub job: jobs::Model,
}

/// The reading limits from the settings.
pub fn limits(state: &AppState) -> Limits {
    let s = &state.settings.guides;
    Limits {
        max_file_bytes: s.max_upload_bytes,
        max_text_chars: s.max_text_chars,
        max_line_chars: s.max_line_chars,
        timeout: std::time::Duration::from_secs(s.read_timeout_secs.max(1)),
        ..Limits::default()
    }
}

/// The blob store under the data directory.
pub fn blob_store(state: &AppState) -> BlobStore {
    BlobStore::new(state.settings.blob_dir())
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn check_title(title: &str) -> Result<String, GuideError> {
    let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
    if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
        return Err(GuideError::Invalid(format!(
            "A guide title must be between 1 and {MAX_TITLE_CHARS} characters long."
        )));
    }
    Ok(title)
}

/// A title for a guide that was given none: its first short line, else the file name.
fn default_title(text: &str, filename: Option<&str>) -> String {
    let first = text
        .lines()
        .map(|l| l.trim().trim_start_matches('#').trim())
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    if (3..=120).contains(&first.chars().count()) {
        return first.to_owned();
    }
    let stem = filename
        .and_then(|f| f.rsplit(['/', '\\']).next())
        .map(|f| f.rsplit_once('.').map_or(f, |(stem, _)| stem))
        .unwrap_or_default();
    if stem.trim().is_empty() {
        "Untitled guide".to_owned()
    } else {
        stem.chars().take(MAX_TITLE_CHARS).collect()
    }
}

async fn find_duplicate(
    db: &DatabaseConnection,
    user_id: i32,
    sha: &str,
) -> Result<Option<guides::Model>, DbErr> {
    guides::Entity::find()
        .filter(guides::Column::UserId.eq(user_id))
        .filter(guides::Column::ContentSha256.eq(sha))
        .one(db)
        .await
}

fn duplicate(existing: &guides::Model) -> GuideError {
    GuideError::Duplicate {
        id: existing.id,
        title: existing.title.clone(),
        date: existing.created_at.format("%Y-%m-%d").to_string(),
    }
}

/// Creates a guide from an uploaded file and queues its extraction.
#[instrument(skip(state, upload), fields(filename = %upload.filename))]
pub async fn create_from_upload(
    state: &AppState,
    user_id: i32,
    upload: NewUpload,
    method: ExtractionMethod,
) -> Result<Created, GuideError> {
    let title = upload.title.as_deref().map(check_title).transpose()?;
    // Copy the upload into the blob store (hashing it on the way), then read it from there.
    let store = blob_store(state);
    let (stored, size) = {
        let (store, file) = (store.clone(), upload.file);
        tokio::task::spawn_blocking(move || store.put_reader(file))
            .await
            .map_err(std::io::Error::other)??
    };
    let path = store
        .path(&stored.key)
        .ok_or_else(|| std::io::Error::other("invalid blob key"))?;
    let extracted =
        match ingest::extract_file_guarded(path, upload.filename.clone(), limits(state)).await {
            Ok(extracted) => extracted,
            Err(err) => {
                if stored.created {
                    remove_blob_if_unused(state, &stored.key).await;
                }
                return Err(err.into());
            }
        };
    let title = title.unwrap_or_else(|| default_title(&extracted.text, Some(&upload.filename)));
    let file = FileSource {
        filename: display_filename(&upload.filename),
        mime: extracted.format.mime(),
        size,
        stored,
    };
    create(state, user_id, title, extracted.text, Some(file), method).await
}

/// Creates a guide from pasted text and queues its extraction.
#[instrument(skip(state, text), fields(chars = text.len()))]
pub async fn create_from_text(
    state: &AppState,
    user_id: i32,
    title: &str,
    text: &str,
    method: ExtractionMethod,
) -> Result<Created, GuideError> {
    let title = check_title(title)?;
    let text = ingest::check_text(text, &limits(state))?;
    create(state, user_id, title, text, None, method).await
}

/// A file name safe to show: the last path component, printable, at most 255 chars.
fn display_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let clean: String = base.chars().filter(|c| !c.is_control()).take(255).collect();
    if clean.trim().is_empty() {
        "upload".to_owned()
    } else {
        clean
    }
}

struct FileSource {
    filename: String,
    mime: &'static str,
    size: u64,
    /// The file, already in the blob store.
    stored: crate::blobs::Put,
}

async fn create(
    state: &AppState,
    user_id: i32,
    title: String,
    text: String,
    file: Option<FileSource>,
    method: ExtractionMethod,
) -> Result<Created, GuideError> {
    let sha = sha256_hex(&text);
    let result = match find_duplicate(&state.db, user_id, &sha).await {
        Err(err) => Err(err.into()),
        Ok(Some(existing)) => Err(duplicate(&existing)),
        Ok(None) => insert_guide(state, user_id, &title, &text, &sha, file.as_ref(), method).await,
    };
    match result {
        Ok(created) => Ok(created),
        Err(err) => {
            if let Some(put) = file.map(|f| f.stored).filter(|p| p.created) {
                remove_blob_if_unused(state, &put.key).await;
            }
            if let GuideError::Db(db_err) = &err {
                if matches!(db_err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
                    // Lost a race with an identical upload.
                    if let Ok(Some(existing)) = find_duplicate(&state.db, user_id, &sha).await {
                        return Err(duplicate(&existing));
                    }
                }
            }
            Err(err)
        }
    }
}

async fn insert_guide(
    state: &AppState,
    user_id: i32,
    title: &str,
    text: &str,
    sha: &str,
    file: Option<&FileSource>,
    method: ExtractionMethod,
) -> Result<Created, GuideError> {
    let blob_key = file.map(|f| f.stored.key.as_str());
    let now = Utc::now();
    let txn = state.db.begin().await?;
    let guide = guides::ActiveModel {
        user_id: Set(user_id),
        title: Set(title.to_owned()),
        filename: Set(file.map(|f| f.filename.clone())),
        mime: Set(file.map(|f| f.mime.to_owned())),
        content_sha256: Set(sha.to_owned()),
        blob_key: Set(blob_key.map(str::to_owned)),
        text: Set(text.to_owned()),
        status: Set(GuideStatus::Pending),
        error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    if let (Some(file), Some(key)) = (file, blob_key) {
        uploads::ActiveModel {
            user_id: Set(user_id),
            guide_id: Set(Some(guide.id)),
            kind: Set("guide".to_owned()),
            sha256: Set(key.to_owned()),
            filename: Set(file.filename.clone()),
            size_bytes: Set(i64::try_from(file.size).unwrap_or(i64::MAX)),
            blob_key: Set(key.to_owned()),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
    }
    txn.commit().await?;
    let params = json!({ "method": method, "initial": true });
    match job_service::create(state, user_id, Some(guide.id), JobKind::Extraction, params).await {
        Ok(job) => Ok(Created { guide, job }),
        Err(err) => {
            // No job, no guide: remove the rows again (the caller removes the file).
            let _ = guides::Entity::delete_by_id(guide.id).exec(&state.db).await;
            let _ = uploads::Entity::delete_many()
                .filter(uploads::Column::GuideId.eq(guide.id))
                .exec(&state.db)
                .await;
            Err(err.into())
        }
    }
}

/// Removes a blob when no guide or upload row refers to it any more.
async fn remove_blob_if_unused(state: &AppState, key: &str) {
    let in_uploads = uploads::Entity::find()
        .filter(uploads::Column::BlobKey.eq(key))
        .count(&state.db)
        .await;
    let in_guides = guides::Entity::find()
        .filter(guides::Column::BlobKey.eq(key))
        .count(&state.db)
        .await;
    match (in_uploads, in_guides) {
        (Ok(0), Ok(0)) => {
            let store = blob_store(state);
            let key = key.to_owned();
            let removed = tokio::task::spawn_blocking(move || store.delete(&key)).await;
            if !matches!(removed, Ok(Ok(()))) {
                tracing::warn!(?removed, "removing an unused blob failed");
            }
        }
        (Ok(_), Ok(_)) => {}
        (uploads, guides) => {
            tracing::warn!(
                ?uploads,
                ?guides,
                "could not check whether a blob is still used"
            );
        }
    }
}

/// One of the caller's guides.
pub async fn get(
    db: &DatabaseConnection,
    user_id: i32,
    id: i32,
) -> Result<guides::Model, GuideError> {
    guides::Entity::find_by_id(id)
        .filter(guides::Column::UserId.eq(user_id))
        .one(db)
        .await?
        .ok_or(GuideError::NotFound(id))
}

/// One page of a user's guides: newest first, after the guide with id `before` (a cursor),
/// at most `limit` rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GuidePage {
    /// Whose guides.
    pub user_id: i32,
    /// Only guides with a smaller id (the cursor of the previous page's last guide).
    pub before: Option<i32>,
    /// Rows to fetch.
    pub limit: u64,
}

/// Pages of guides in at most this many per statement (SQLite allows 500 terms in a
/// compound select).
const PAGES_PER_STATEMENT: usize = 100;

/// The column that tells which page of a batch a row belongs to.
const PAGE_TAG: &str = "page_tag";

/// Several pages of guides (of one user or many) in one statement: a `UNION ALL` of one
/// select per page, each reading one user's rows (through the index that leads with
/// `user_id`) under its own limit, so a batch of page loads costs one round trip however
/// many users it spans. The rows' `text`
/// is left empty: a guide's text can run to hundreds of kilobytes and a list rarely shows
/// it (read it with [`text`] when it does).
pub async fn pages_without_text(
    db: &DatabaseConnection,
    pages: &[GuidePage],
) -> Result<HashMap<GuidePage, Vec<guides::Model>>, GuideError> {
    let backend = db.get_database_backend();
    let mut found: HashMap<GuidePage, Vec<guides::Model>> = HashMap::new();
    for batch in pages.chunks(PAGES_PER_STATEMENT) {
        let mut selects = batch.iter().zip(0i32..).map(|(page, tag)| {
            let mut one = guides::Entity::find()
                .select_only()
                .columns(guides::Column::iter().filter(|c| !matches!(c, guides::Column::Text)))
                .column_as(Expr::val(""), "text")
                .column_as(Expr::val(tag), PAGE_TAG)
                .filter(guides::Column::UserId.eq(page.user_id));
            if let Some(before) = page.before {
                one = one.filter(guides::Column::Id.lt(before));
            }
            let one = one
                .order_by_desc(guides::Column::Id)
                .limit(page.limit)
                .into_query();
            // Wrapped, because SQLite takes ORDER BY and LIMIT only at the end of a compound.
            Query::select()
                .column(Asterisk)
                .from_subquery(one, Alias::new(format!("page{tag}")))
                .to_owned()
        });
        let Some(mut statement) = selects.next() else {
            continue;
        };
        for select in selects {
            statement.union(UnionType::All, select);
        }
        for row in db.query_all(backend.build(&statement)).await? {
            let tag: i32 = row.try_get("", PAGE_TAG)?;
            let page = usize::try_from(tag)
                .ok()
                .and_then(|tag| batch.get(tag))
                .ok_or_else(|| DbErr::Custom(format!("unexpected page tag {tag}")))?;
            found
                .entry(*page)
                .or_default()
                .push(guides::Model::from_query_result(&row, "")?);
        }
    }
    for rows in found.values_mut() {
        rows.sort_unstable_by_key(|row| std::cmp::Reverse(row.id));
    }
    Ok(found)
}

/// The text of one of the caller's guides.
pub async fn text(db: &DatabaseConnection, user_id: i32, id: i32) -> Result<String, GuideError> {
    let text: Option<String> = guides::Entity::find_by_id(id)
        .select_only()
        .column(guides::Column::Text)
        .filter(guides::Column::UserId.eq(user_id))
        .into_tuple()
        .one(db)
        .await?;
    text.ok_or(GuideError::NotFound(id))
}

/// How many guides the caller has.
pub async fn count(db: &DatabaseConnection, user_id: i32) -> Result<u64, GuideError> {
    Ok(guides::Entity::find()
        .filter(guides::Column::UserId.eq(user_id))
        .count(db)
        .await?)
}

/// A guide's items in order.
pub async fn items(
    db: &DatabaseConnection,
    guide_id: i32,
) -> Result<Vec<guide_items::Model>, GuideError> {
    Ok(guide_items::Entity::find()
        .filter(guide_items::Column::GuideId.eq(guide_id))
        .order_by_asc(guide_items::Column::Position)
        .order_by_asc(guide_items::Column::Id)
        .all(db)
        .await?)
}

/// How much of each item a list view reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemDetail {
    /// Everything but the texts: `question` and `model_answer` are left empty and `rubric`
    /// is an empty array (what counts, totals and labels need).
    Summary,
    /// Whole rows.
    Full,
}

/// Items of several guides at once (for list views), keyed by guide id, in order.
pub async fn items_of(
    db: &DatabaseConnection,
    guide_ids: &[i32],
    detail: ItemDetail,
) -> Result<HashMap<i32, Vec<guide_items::Model>>, GuideError> {
    let query = guide_items::Entity::find()
        .filter(guide_items::Column::GuideId.is_in(guide_ids.iter().copied()))
        .order_by_asc(guide_items::Column::Position)
        .order_by_asc(guide_items::Column::Id);
    let rows = match detail {
        ItemDetail::Full => query.all(db).await?,
        ItemDetail::Summary => {
            use guide_items::Column as C;
            type Row = (
                i32,
                i32,
                i32,
                String,
                f64,
                bool,
                DateTime<Utc>,
                DateTime<Utc>,
            );
            let rows: Vec<Row> = query
                .select_only()
                .columns([
                    C::Id,
                    C::GuideId,
                    C::Position,
                    C::Label,
                    C::MaxMarks,
                    C::Edited,
                ])
                .columns([C::CreatedAt, C::UpdatedAt])
                .into_tuple()
                .all(db)
                .await?;
            rows.into_iter()
                .map(
                    |(id, guide_id, position, label, max_marks, edited, created_at, updated_at)| {
                        guide_items::Model {
                            id,
                            guide_id,
                            position,
                            label,
                            question: String::new(),
                            model_answer: String::new(),
                            max_marks,
                            rubric: json!([]),
                            edited,
                            created_at,
                            updated_at,
                        }
                    },
                )
                .collect()
        }
    };
    let mut map: HashMap<i32, Vec<guide_items::Model>> = HashMap::new();
    for row in rows {
        map.entry(row.guide_id).or_default().push(row);
    }
    Ok(map)
}

/// Renames a guide.
#[instrument(skip(db))]
pub async fn rename(
    db: &DatabaseConnection,
    user_id: i32,
    id: i32,
    title: &str,
) -> Result<guides::Model, GuideError> {
    let title = check_title(title)?;
    let guide = get(db, user_id, id).await?;
    let mut active: guides::ActiveModel = guide.into();
    active.title = Set(title);
    active.updated_at = Set(Utc::now());
    Ok(active.update(db).await?)
}

/// Deletes a guide with its items, jobs and stored file.
#[instrument(skip(state))]
pub async fn delete(state: &AppState, user_id: i32, id: i32) -> Result<(), GuideError> {
    let guide = get(&state.db, user_id, id).await?;
    remove_guide(state, &guide).await?;
    Ok(())
}

/// Removes a guide, its upload rows and (when unused) its file.
async fn remove_guide(state: &AppState, guide: &guides::Model) -> Result<(), DbErr> {
    let keys: Vec<String> = uploads::Entity::find()
        .filter(uploads::Column::GuideId.eq(guide.id))
        .all(&state.db)
        .await?
        .into_iter()
        .map(|u| u.blob_key)
        .chain(guide.blob_key.clone())
        .collect();
    let txn = state.db.begin().await?;
    // Every file imported into the guide (the guide itself, answer files, scripts): their
    // contents go with the guide, so importing one again later is not a duplicate.
    uploads::Entity::delete_many()
        .filter(uploads::Column::GuideId.eq(guide.id))
        .exec(&txn)
        .await?;
    guides::Entity::delete_by_id(guide.id).exec(&txn).await?;
    txn.commit().await?;
    for key in keys {
        remove_blob_if_unused(state, &key).await;
    }
    Ok(())
}

/// Queues a new extraction of a guide's items. Edited items are kept.
#[instrument(skip(state))]
pub async fn reextract(
    state: &AppState,
    user_id: i32,
    id: i32,
    method: ExtractionMethod,
) -> Result<jobs::Model, GuideError> {
    let guide = get(&state.db, user_id, id).await?;
    let active = job_service::list(
        &state.db,
        user_id,
        Some(JobKind::Extraction),
        Some(guide.id),
        5,
    )
    .await?;
    if active.iter().any(|j| !job_service::is_finished(j.status)) {
        return Err(GuideError::Busy);
    }
    let params = json!({ "method": method, "initial": false });
    Ok(job_service::create(state, user_id, Some(guide.id), JobKind::Extraction, params).await?)
}

/// The teacher's version of an item's fields.
#[derive(Debug, Clone, Default)]
pub struct ItemPatch {
    /// New label.
    pub label: Option<String>,
    /// New question.
    pub question: Option<String>,
    /// New model answer.
    pub model_answer: Option<String>,
    /// New maximum.
    pub max_marks: Option<f64>,
    /// New rubric (replaces the old one).
    pub criteria: Option<Vec<Criterion>>,
}

fn check_text_field(name: &str, value: &str, required: bool) -> Result<String, GuideError> {
    let value = value.trim();
    if required && value.is_empty() {
        return Err(GuideError::Invalid(format!(
            "The {name} must not be empty."
        )));
    }
    if value.chars().count() > MAX_FIELD_CHARS {
        return Err(GuideError::Invalid(format!(
            "The {name} is longer than {MAX_FIELD_CHARS} characters."
        )));
    }
    Ok(value.to_owned())
}

fn check_marks(name: &str, marks: f64) -> Result<f64, GuideError> {
    if !marks.is_finite() || !(0.0..=MAX_MARKS).contains(&marks) {
        return Err(GuideError::Invalid(format!(
            "The {name} must be between 0 and {MAX_MARKS}."
        )));
    }
    Ok(marks)
}

fn check_label(label: &str) -> Result<String, GuideError> {
    let label = label.trim();
    if label.is_empty() || label.chars().count() > MAX_LABEL_CHARS {
        return Err(GuideError::Invalid(format!(
            "An item label must be between 1 and {MAX_LABEL_CHARS} characters long."
        )));
    }
    Ok(label.to_owned())
}

fn check_criteria(criteria: Vec<Criterion>) -> Result<serde_json::Value, GuideError> {
    if criteria.len() > MAX_CRITERIA {
        return Err(GuideError::Invalid(format!(
            "An item can have at most {MAX_CRITERIA} rubric criteria."
        )));
    }
    let mut out = Vec::with_capacity(criteria.len());
    for c in criteria {
        out.push(Criterion {
            description: check_text_field("criterion description", &c.description, true)?,
            marks: check_marks("criterion marks", c.marks)?,
        });
    }
    Ok(serde_json::to_value(out).unwrap_or_default())
}

/// The rubric stored on an item.
pub fn rubric(item: &guide_items::Model) -> Vec<Criterion> {
    rubric_of(&item.rubric)
}

/// The criteria in a stored rubric (none when it is unreadable).
pub fn rubric_of(rubric: &serde_json::Value) -> Vec<Criterion> {
    Vec::<Criterion>::deserialize(rubric).unwrap_or_default()
}

async fn owned_item(
    db: &impl sea_orm::ConnectionTrait,
    user_id: i32,
    item_id: i32,
) -> Result<(guide_items::Model, guides::Model), GuideError> {
    let found = guide_items::Entity::find_by_id(item_id)
        .find_also_related(guides::Entity)
        .one(db)
        .await?;
    match found {
        Some((item, Some(guide))) if guide.user_id == user_id => Ok((item, guide)),
        _ => Err(GuideError::ItemNotFound(item_id)),
    }
}

async fn ensure_label_free(
    db: &impl sea_orm::ConnectionTrait,
    guide_id: i32,
    label: &str,
    except: Option<i32>,
) -> Result<(), GuideError> {
    let key = label_key(label);
    let taken = guide_items::Entity::find()
        .filter(guide_items::Column::GuideId.eq(guide_id))
        .all(db)
        .await?
        .into_iter()
        .any(|i| Some(i.id) != except && label_key(&i.label) == key);
    if taken {
        return Err(GuideError::Invalid(format!(
            "Another item of this guide is already labelled “{label}”; labels must be unique so answers can be matched to items."
        )));
    }
    Ok(())
}

/// Adds an item to a guide, at `position` (0-based; default: at the end).
#[instrument(skip(db, item))]
pub async fn add_item(
    db: &DatabaseConnection,
    user_id: i32,
    guide_id: i32,
    item: ExtractedItem,
    position: Option<i32>,
) -> Result<guide_items::Model, GuideError> {
    let label = check_label(&item.label)?;
    let question = check_text_field("question", &item.question, true)?;
    let model_answer = check_text_field("model answer", &item.model_answer, false)?;
    let max_marks = check_marks("maximum marks", item.max_marks)?;
    let rubric = check_criteria(item.criteria)?;
    let txn = db.begin().await?;
    let guide = guides::Entity::find_by_id(guide_id)
        .filter(guides::Column::UserId.eq(user_id))
        .one(&txn)
        .await?
        .ok_or(GuideError::NotFound(guide_id))?;
    ensure_label_free(&txn, guide.id, &label, None).await?;
    let existing = guide_items::Entity::find()
        .filter(guide_items::Column::GuideId.eq(guide.id))
        .order_by_asc(guide_items::Column::Position)
        .order_by_asc(guide_items::Column::Id)
        .all(&txn)
        .await?;
    if existing.len() >= MAX_ITEMS {
        return Err(GuideError::Invalid(format!(
            "A guide can have at most {MAX_ITEMS} items."
        )));
    }
    let at = position
        .map(|p| p.clamp(0, existing.len() as i32) as usize)
        .unwrap_or(existing.len());
    // Shift the items after the insertion point.
    for (index, row) in existing.iter().enumerate().skip(at) {
        set_position(&txn, row.id, index as i32 + 1).await?;
    }
    let now = Utc::now();
    let row = guide_items::ActiveModel {
        guide_id: Set(guide.id),
        position: Set(at as i32),
        label: Set(label),
        question: Set(question),
        model_answer: Set(model_answer),
        max_marks: Set(max_marks),
        rubric: Set(rubric),
        edited: Set(true),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    touch_guide(&txn, guide.id).await?;
    txn.commit().await?;
    Ok(row)
}

async fn set_position(
    db: &impl sea_orm::ConnectionTrait,
    id: i32,
    position: i32,
) -> Result<(), DbErr> {
    guide_items::Entity::update_many()
        .col_expr(guide_items::Column::Position, Expr::value(position))
        .filter(guide_items::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

async fn touch_guide(db: &impl sea_orm::ConnectionTrait, guide_id: i32) -> Result<(), DbErr> {
    guides::Entity::update_many()
        .col_expr(guides::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(guides::Column::Id.eq(guide_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Changes an item; it is marked as edited, so re-extraction keeps it.
#[instrument(skip(db, patch))]
pub async fn update_item(
    db: &DatabaseConnection,
    user_id: i32,
    item_id: i32,
    patch: ItemPatch,
) -> Result<guide_items::Model, GuideError> {
    let txn = db.begin().await?;
    let (item, guide) = owned_item(&txn, user_id, item_id).await?;
    let mut active: guide_items::ActiveModel = item.into();
    if let Some(label) = patch.label {
        let label = check_label(&label)?;
        ensure_label_free(&txn, guide.id, &label, Some(item_id)).await?;
        active.label = Set(label);
    }
    if let Some(question) = patch.question {
        active.question = Set(check_text_field("question", &question, true)?);
    }
    if let Some(answer) = patch.model_answer {
        active.model_answer = Set(check_text_field("model answer", &answer, false)?);
    }
    if let Some(marks) = patch.max_marks {
        active.max_marks = Set(check_marks("maximum marks", marks)?);
    }
    if let Some(criteria) = patch.criteria {
        active.rubric = Set(check_criteria(criteria)?);
    }
    active.edited = Set(true);
    active.updated_at = Set(Utc::now());
    let row = active.update(&txn).await?;
    touch_guide(&txn, guide.id).await?;
    txn.commit().await?;
    Ok(row)
}

/// Deletes an item and closes the gap in the order.
#[instrument(skip(db))]
pub async fn delete_item(
    db: &DatabaseConnection,
    user_id: i32,
    item_id: i32,
) -> Result<guides::Model, GuideError> {
    let txn = db.begin().await?;
    let (item, guide) = owned_item(&txn, user_id, item_id).await?;
    guide_items::Entity::delete_by_id(item.id)
        .exec(&txn)
        .await?;
    let rest = guide_items::Entity::find()
        .filter(guide_items::Column::GuideId.eq(guide.id))
        .order_by_asc(guide_items::Column::Position)
        .order_by_asc(guide_items::Column::Id)
        .all(&txn)
        .await?;
    for (index, row) in rest.iter().enumerate() {
        if row.position != index as i32 {
            set_position(&txn, row.id, index as i32).await?;
        }
    }
    touch_guide(&txn, guide.id).await?;
    txn.commit().await?;
    Ok(guide)
}

/// Puts a guide's items in the order given; `item_ids` must list every item exactly once.
#[instrument(skip(db))]
pub async fn reorder_items(
    db: &DatabaseConnection,
    user_id: i32,
    guide_id: i32,
    item_ids: &[i32],
) -> Result<Vec<guide_items::Model>, GuideError> {
    let txn = db.begin().await?;
    let guide = guides::Entity::find_by_id(guide_id)
        .filter(guides::Column::UserId.eq(user_id))
        .one(&txn)
        .await?
        .ok_or(GuideError::NotFound(guide_id))?;
    let current = guide_items::Entity::find()
        .filter(guide_items::Column::GuideId.eq(guide.id))
        .all(&txn)
        .await?;
    let mut wanted: Vec<i32> = item_ids.to_vec();
    wanted.sort_unstable();
    let mut have: Vec<i32> = current.iter().map(|i| i.id).collect();
    have.sort_unstable();
    if wanted != have {
        return Err(GuideError::Invalid(
            "The new order must list every item of the guide exactly once.".into(),
        ));
    }
    for (index, id) in item_ids.iter().enumerate() {
        set_position(&txn, *id, index as i32).await?;
    }
    touch_guide(&txn, guide.id).await?;
    txn.commit().await?;
    items(db, guide.id).await
}

// ---------------------------------------------------------------------------------------
// The extraction job.

/// A language model that returns the items of one chunk of guide text.
pub trait ItemModel: Send + Sync {
    /// Asks the model for the items in `chunk` (`index` of `total`).
    fn extract<'a>(
        &'a self,
        job: &'a jobs::Model,
        chunk: &'a str,
        index: usize,
        total: usize,
    ) -> futures::future::BoxFuture<'a, anyhow::Result<Vec<ExtractedItem>>>;
}

/// [`ItemModel`] on the shared LLM client: one structured call per chunk, with the
/// caller's model settings, accounted to the job.
pub struct LlmItemModel {
    client: Arc<LlmClient>,
}

impl LlmItemModel {
    /// Extraction through `client`.
    pub fn new(client: Arc<LlmClient>) -> Self {
        Self { client }
    }
}

impl ItemModel for LlmItemModel {
    fn extract<'a>(
        &'a self,
        job: &'a jobs::Model,
        chunk: &'a str,
        index: usize,
        total: usize,
    ) -> futures::future::BoxFuture<'a, anyhow::Result<Vec<ExtractedItem>>> {
        Box::pin(async move {
            let params = self
                .client
                .params_for_user(job.user_id)
                .await?
                .temperature(0.0)
                .max_tokens(EXTRACTION_MAX_TOKENS);
            let call = CallContext::task("extract_items")
                .user(job.user_id)
                .job(job.id);
            let messages = [
                Message::system(ingest::llm::SYSTEM_PROMPT),
                Message::user(ingest::llm::user_prompt(chunk, index, total)),
            ];
            let reply = self
                .client
                .structured::<ingest::llm::LlmItems>(&call, &params, &messages)
                .await?;
            Ok(reply.value.items.into_iter().map(Into::into).collect())
        })
    }
}

/// Most tokens one extraction reply may use (a chunk's items with their rubrics).
const EXTRACTION_MAX_TOKENS: u32 = 1_800;

/// Runs extraction jobs with the server's shared LLM client.
#[derive(Default)]
pub struct ExtractionHandler;

#[derive(Debug, Deserialize)]
struct Params {
    #[serde(default)]
    method: ExtractionMethod,
    #[serde(default)]
    initial: bool,
}

impl JobHandler for ExtractionHandler {
    fn run(&self, ctx: JobContext) -> HandlerFuture {
        let model: Arc<dyn ItemModel> = Arc::new(LlmItemModel::new(ctx.state.llm.clone()));
        Box::pin(async move { run_extraction(ctx, Some(model)).await })
    }
}

/// What an extraction produced, before it is stored.
struct Extraction {
    items: Vec<ExtractedItem>,
    method: &'static str,
    chunks: usize,
    fallback: Option<String>,
}

async fn run_extraction(
    ctx: JobContext,
    model: Option<Arc<dyn ItemModel>>,
) -> anyhow::Result<Outcome> {
    let params: Params = serde_json::from_value(ctx.job.params.clone()).unwrap_or(Params {
        method: ExtractionMethod::Auto,
        initial: false,
    });
    let Some(guide_id) = ctx.job.guide_id else {
        anyhow::bail!("the job has no guide");
    };
    let Some(guide) = guides::Entity::find_by_id(guide_id)
        .one(&ctx.state.db)
        .await?
    else {
        anyhow::bail!("the guide was deleted");
    };
    set_status(&ctx.state.db, guide.id, GuideStatus::Extracting, None).await?;
    let extracted = extract_items(&ctx, &guide, params.method, model).await;
    let outcome = match extracted {
        Ok(None) => Ok(Outcome::Cancelled),
        Ok(Some(extraction)) if extraction.items.is_empty() => Err(anyhow::anyhow!(
            "No questions were found in the guide{}. Number the questions (“Question 1 … [5 marks]”) or add the items by hand.",
            extraction
                .fallback
                .as_deref()
                .map(|why| format!(" (the model failed: {why}; the built-in parser found nothing)"))
                .unwrap_or_default()
        )),
        Ok(Some(extraction)) => match store_items(&ctx.state.db, guide.id, extraction.items)
            .await
        {
            Err(err) => Err(anyhow::Error::from(err).context("storing the extracted items failed")),
            Ok(merge) => {
                set_status(&ctx.state.db, guide.id, GuideStatus::Ready, None).await?;
                Ok(Outcome::Succeeded(json!({
                "method": extraction.method,
                "items": merge.total,
                "extracted": merge.extracted,
                "chunks": extraction.chunks,
                "keptEdited": merge.kept_edited,
                "replacedByEdited": merge.replaced,
                "fallbackReason": extraction.fallback,
                })))
            }
        },
        Err(err) => Err(err),
    };
    match outcome {
        Ok(Outcome::Cancelled) => {
            let has_items = !items(&ctx.state.db, guide.id).await?.is_empty();
            let (status, error) = if has_items {
                (GuideStatus::Ready, None)
            } else {
                (
                    GuideStatus::Failed,
                    Some("Extraction was cancelled.".to_owned()),
                )
            };
            set_status(&ctx.state.db, guide.id, status, error).await?;
            Ok(Outcome::Cancelled)
        }
        Ok(done) => Ok(done),
        // A write conflict: the job runs again and the guide stays EXTRACTING meanwhile.
        Err(err) if job_service::will_retry(&err, &ctx.job) => Err(err),
        Err(err) => {
            let message = format!("{err:#}");
            let has_items = !items(&ctx.state.db, guide.id).await?.is_empty();
            if params.initial && !has_items {
                // A new guide from which nothing could be extracted is not kept: detach the
                // job (so its log survives) and remove the guide, its upload and its file.
                jobs::Entity::update_many()
                    .col_expr(jobs::Column::GuideId, Expr::value(Option::<i32>::None))
                    .filter(jobs::Column::Id.eq(ctx.job.id))
                    .exec(&ctx.state.db)
                    .await?;
                remove_guide(&ctx.state, &guide).await?;
                anyhow::bail!(
                    "{message} The guide “{}” was not kept; upload it again once the problem is fixed.",
                    guide.title
                );
            }
            let status = if has_items {
                GuideStatus::Ready
            } else {
                GuideStatus::Failed
            };
            set_status(&ctx.state.db, guide.id, status, Some(message.clone())).await?;
            Err(anyhow::anyhow!(message))
        }
    }
}

async fn set_status(
    db: &DatabaseConnection,
    guide_id: i32,
    status: GuideStatus,
    error: Option<String>,
) -> Result<(), DbErr> {
    guides::Entity::update_many()
        .col_expr(guides::Column::Status, Expr::value(status))
        .col_expr(guides::Column::Error, Expr::value(error))
        .col_expr(guides::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(guides::Column::Id.eq(guide_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Extracts items; `Ok(None)` when the job was cancelled.
async fn extract_items(
    ctx: &JobContext,
    guide: &guides::Model,
    method: ExtractionMethod,
    model: Option<Arc<dyn ItemModel>>,
) -> anyhow::Result<Option<Extraction>> {
    let use_model = match (method, &model) {
        (ExtractionMethod::Parser, _) => None,
        (ExtractionMethod::Llm, None) => {
            anyhow::bail!("No language model is configured; use the built-in parser instead.")
        }
        (_, model) => model.clone(),
    };
    let Some(model) = use_model else {
        ctx.progress(0.5, "parsing the guide").await?;
        return Ok(Some(Extraction {
            items: ingest::parser::parse(&guide.text),
            method: "parser",
            chunks: 1,
            fallback: None,
        }));
    };
    let chunk_chars = ctx.state.settings.guides.llm_chunk_chars.max(500);
    let chunks = ingest::parser::chunks(&guide.text, chunk_chars);
    let total = chunks.len();
    ctx.progress(
        0.02,
        &format!("extracting items with the model ({total} parts)"),
    )
    .await?;
    let mut found = Vec::new();
    for (index, chunk) in chunks.iter().enumerate() {
        if ctx.cancel_requested().await? {
            return Ok(None);
        }
        match model.extract(&ctx.job, chunk, index, total).await {
            Ok(items) => {
                ctx.emit(
                    "chunk",
                    json!({ "index": index, "total": total, "items": items.len() }),
                )
                .await?;
                found.extend(items);
            }
            Err(err) if method == ExtractionMethod::Auto => {
                let why = format!("{err:#}");
                ctx.emit(
                    "warning",
                    json!({ "message": format!("The model failed ({why}); using the built-in parser instead.") }),
                )
                .await?;
                return Ok(Some(Extraction {
                    items: ingest::parser::parse(&guide.text),
                    method: "parser",
                    chunks: total,
                    fallback: Some(why),
                }));
            }
            Err(err) => return Err(err.context("the model could not extract the items")),
        }
        ctx.progress(
            (index + 1) as f64 / total as f64 * 0.95,
            &format!("part {} of {total} done", index + 1),
        )
        .await?;
    }
    Ok(Some(Extraction {
        items: tidy(found),
        method: "llm",
        chunks: total,
        fallback: None,
    }))
}

struct Merge {
    total: usize,
    extracted: usize,
    kept_edited: Vec<String>,
    replaced: Vec<String>,
}

/// Replaces a guide's unedited items with `extracted`, keeping edited ones: an extracted
/// item whose label matches an edited item gives way to it (in the extracted position);
/// edited items that match nothing follow at the end in their old order.
async fn store_items(
    db: &DatabaseConnection,
    guide_id: i32,
    extracted: Vec<ExtractedItem>,
) -> Result<Merge, DbErr> {
    let extracted = tidy(extracted);
    let txn = db.begin().await?;
    let existing = guide_items::Entity::find()
        .filter(guide_items::Column::GuideId.eq(guide_id))
        .order_by_asc(guide_items::Column::Position)
        .order_by_asc(guide_items::Column::Id)
        .all(&txn)
        .await?;
    let (edited, stale): (Vec<_>, Vec<_>) = existing.into_iter().partition(|i| i.edited);
    if !stale.is_empty() {
        guide_items::Entity::delete_many()
            .filter(guide_items::Column::Id.is_in(stale.iter().map(|i| i.id)))
            .exec(&txn)
            .await?;
    }
    let mut edited_by_key: HashMap<String, guide_items::Model> = edited
        .iter()
        .map(|i| (label_key(&i.label), i.clone()))
        .collect();
    let mut position = 0i32;
    let mut replaced = Vec::new();
    let now = Utc::now();
    let extracted_count = extracted.len();
    for item in extracted {
        if let Some(kept) = edited_by_key.remove(&label_key(&item.label)) {
            set_position(&txn, kept.id, position).await?;
            replaced.push(item.label);
        } else {
            guide_items::ActiveModel {
                guide_id: Set(guide_id),
                position: Set(position),
                label: Set(item.label),
                question: Set(item.question),
                model_answer: Set(item.model_answer),
                max_marks: Set(item.max_marks),
                rubric: Set(serde_json::to_value(&item.criteria).unwrap_or_default()),
                edited: Set(false),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            }
            .insert(&txn)
            .await?;
        }
        position += 1;
    }
    for item in &edited {
        if edited_by_key.contains_key(&label_key(&item.label)) {
            set_position(&txn, item.id, position).await?;
            position += 1;
        }
    }
    txn.commit().await?;
    Ok(Merge {
        total: position as usize,
        extracted: extracted_count,
        kept_edited: edited.into_iter().map(|i| i.label).collect(),
        replaced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_titles() {
        assert_eq!(
            default_title("# Biology mock\n\nQuestion 1", Some("x.pdf")),
            "Biology mock"
        );
        assert_eq!(
            default_title(&"x".repeat(500), Some("/tmp/Physics test.docx")),
            "Physics test"
        );
        assert_eq!(default_title("", None), "Untitled guide");
    }

    #[test]
    fn duplicate_message_names_the_first_upload() {
        let err = GuideError::Duplicate {
            id: 7,
            title: "Biology mock 2026".into(),
            date: "2026-11-20".into(),
        };
        assert_eq!(
            err.to_string(),
            "This guide was already uploaded as “Biology mock 2026” on 2026-11-20 (guide 7)."
        );
        assert_eq!(AppError::from(err).code(), ErrorCode::Duplicate);
    }
}
