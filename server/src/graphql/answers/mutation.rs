//! Answer mutations: import a file or pasted text, make a guide from an items file, import a whole dataset, re-split.

use async_graphql::{Context, ErrorExtensions, Object, Result, Upload, ID};
use serde_json::json;

use super::types::{
    AnswerFileFormat, ImportAnswersOptions, ImportAnswersPayload, ImportDatasetPayload,
    SplitFractionsInput, SplitSummary,
};
use crate::error::{AppError, GqlResultExt};
use crate::graphql::guides::types::Guide;
use crate::graphql::{parse_id, require_user, state};
use crate::service::answers::{self, AnswerError, ImportOptions, ImportSource};

/// The GraphQL error of an answers request. Row errors are also listed in
/// `extensions.rowErrors` (`[{line, message}]`, the first 200) with `extensions.rowErrorCount`.
fn answer_error(err: AnswerError) -> async_graphql::Error {
    let rows = match &err {
        AnswerError::Rows { errors, total } => Some((
            json!(errors
                .iter()
                .map(|e| json!({ "line": e.line, "message": e.message }))
                .collect::<Vec<_>>()),
            *total,
        )),
        _ => None,
    };
    let error = AppError::from(err).extend();
    match rows {
        Some((list, total)) => error.extend_with(|_, ext| {
            ext.set(
                "rowErrors",
                async_graphql::Value::from_json(list).unwrap_or_default(),
            );
            ext.set("rowErrorCount", total as u64);
        }),
        None => error,
    }
}

/// Reads an uploaded file (the multipart request already enforced the size limit).
async fn read_upload(ctx: &Context<'_>, file: Upload) -> Result<ImportSource> {
    let value = file
        .value(ctx)
        .map_err(|err| AppError::bad_input(format!("The upload could not be read: {err}.")))
        .gql()?;
    let filename = value.filename.clone();
    let bytes = tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        let mut bytes = Vec::new();
        value.into_read().read_to_end(&mut bytes).map(|_| bytes)
    })
    .await
    .map_err(AppError::internal)
    .gql()?
    .map_err(AppError::internal)
    .gql()?;
    Ok(ImportSource {
        filename: Some(filename),
        bytes,
    })
}

async fn import(
    ctx: &Context<'_>,
    guide_id: ID,
    source: ImportSource,
    options: ImportOptions,
) -> Result<ImportAnswersPayload> {
    let auth = require_user(ctx)?;
    let app = state(ctx)?;
    let guide_id = parse_id(&guide_id, "guide")?;
    let report = answers::import(app, auth.user_id, guide_id, source, options)
        .await
        .map_err(answer_error)?;
    let summary = answers::summary(&app.db, auth.user_id, guide_id)
        .await
        .map_err(answer_error)?;
    Ok(ImportAnswersPayload::new(report, summary))
}

/// Answer mutations.
#[derive(Default)]
pub struct AnswerMutation;

#[Object]
impl AnswerMutation {
    /// Imports teacher-scored answers from a CSV or JSONL file (multipart request) into a
    /// guide. Columns: `item` (label, or item id), `student_ref`, `answer`, `score`, and an
    /// optional `split`. A file with any bad row imports nothing (`BAD_USER_INPUT`, rows in
    /// `extensions.rowErrors`) unless `skipBadRows` is set; a file imported before is
    /// refused with `DUPLICATE`.
    async fn import_answers(
        &self,
        ctx: &Context<'_>,
        guide_id: ID,
        file: Upload,
        options: Option<ImportAnswersOptions>,
    ) -> Result<ImportAnswersPayload> {
        require_user(ctx)?;
        let source = read_upload(ctx, file).await?;
        import(ctx, guide_id, source, options.unwrap_or_default().into()).await
    }

    /// Imports teacher-scored answers from pasted CSV or JSONL text, like `importAnswers`.
    async fn import_answers_text(
        &self,
        ctx: &Context<'_>,
        guide_id: ID,
        text: String,
        format: Option<AnswerFileFormat>,
        options: Option<ImportAnswersOptions>,
    ) -> Result<ImportAnswersPayload> {
        require_user(ctx)?;
        let mut options: ImportOptions = options.unwrap_or_default().into();
        if let Some(format) = format {
            options.format = Some(format.into());
        }
        let source = ImportSource {
            filename: None,
            bytes: text.into_bytes(),
        };
        import(ctx, guide_id, source, options).await
    }

    /// Creates a ready guide from a file (multipart) or pasted text of items, one per line
    /// as JSONL (or CSV): `label` (or `id`), `question`, `model_answer` (or
    /// `reference_answer`), `max_marks` (or `max_score`) and optional `criteria`. A shared
    /// dataset's `items.jsonl` works as is. Give exactly one of `file` and `text`.
    async fn create_guide_from_items(
        &self,
        ctx: &Context<'_>,
        title: String,
        file: Option<Upload>,
        text: Option<String>,
    ) -> Result<Guide> {
        let auth = require_user(ctx)?;
        let source = match (file, text) {
            (Some(file), None) => read_upload(ctx, file).await?,
            (None, Some(text)) => ImportSource {
                filename: None,
                bytes: text.into_bytes(),
            },
            _ => {
                return Err(AppError::bad_input(
                    "Give exactly one of `file` and `text`.",
                ))
                .gql();
            }
        };
        Ok(
            answers::create_guide_from_items(state(ctx)?, auth.user_id, &title, source)
                .await
                .map_err(answer_error)?
                .into(),
        )
    }

    /// Imports a whole dataset in one step: a guide from an items file and its answers
    /// from an answers file (both multipart), e.g. `saf/items.jsonl` + `saf/answers.jsonl`.
    /// Nothing is kept when either file is refused.
    async fn import_dataset(
        &self,
        ctx: &Context<'_>,
        title: String,
        items: Upload,
        answers: Upload,
        options: Option<ImportAnswersOptions>,
    ) -> Result<ImportDatasetPayload> {
        let auth = require_user(ctx)?;
        let app = state(ctx)?;
        let items = read_upload(ctx, items).await?;
        let answer_file = read_upload(ctx, answers).await?;
        let (guide, report) = answers::import_dataset(
            app,
            auth.user_id,
            &title,
            items,
            answer_file,
            options.unwrap_or_default().into(),
        )
        .await
        .map_err(answer_error)?;
        let summary = answers::summary(&app.db, auth.user_id, guide.id)
            .await
            .map_err(answer_error)?;
        Ok(ImportDatasetPayload {
            guide: guide.into(),
            answers: ImportAnswersPayload::new(report, summary),
        })
    }

    /// Re-assigns every scored answer of a guide to train / validation / test with a seeded
    /// split stratified by item and score (default 0.6 / 0.2 / 0.2).
    async fn resplit_answers(
        &self,
        ctx: &Context<'_>,
        guide_id: ID,
        fractions: Option<SplitFractionsInput>,
        #[graphql(default = 42, validator(minimum = 0))] seed: i64,
    ) -> Result<SplitSummary> {
        let auth = require_user(ctx)?;
        let guide_id = parse_id(&guide_id, "guide")?;
        Ok(answers::resplit(
            &state(ctx)?.db,
            auth.user_id,
            guide_id,
            fractions.map(Into::into).unwrap_or_default(),
            seed.max(0) as u64,
        )
        .await
        .map_err(answer_error)?
        .into())
    }
}
