//! Guide mutations: create from a file or text, rename, delete, re-extract, edit items.

use async_graphql::{Context, Object, Result, Upload, ID};

use super::types::{
    CreateGuidePayload, ExtractionMethod, Guide, GuideItem, GuideItemInput, GuideItemPatch,
};
use crate::error::{AppError, GqlResultExt};
use crate::graphql::jobs::types::Job;
use crate::graphql::{parse_id, require_user, state};
use crate::service::guides::{self, NewUpload};

/// Guide mutations.
#[derive(Default)]
pub struct GuideMutation;

#[Object]
impl GuideMutation {
    /// Uploads a marking guide (PDF, DOCX, TXT or Markdown; multipart request) and starts
    /// extracting its items. Refused with `DUPLICATE` when the caller already has a guide
    /// with the same text, and with `BAD_USER_INPUT` when the file cannot be read; nothing
    /// is stored then.
    async fn upload_guide(
        &self,
        ctx: &Context<'_>,
        file: Upload,
        #[graphql(desc = "Title; defaults to the guide's first line or the file name.")]
        title: Option<String>,
        #[graphql(default)] method: ExtractionMethod,
    ) -> Result<CreateGuidePayload> {
        let auth = require_user(ctx)?;
        let app = state(ctx)?;
        let value = file
            .value(ctx)
            .map_err(|err| AppError::bad_input(format!("The upload could not be read: {err}.")))
            .gql()?;
        let limit = app.settings.guides.max_upload_bytes;
        let size = value.size().map_err(AppError::internal).gql()?;
        if size > limit {
            return Err(AppError::bad_input(format!(
                "The file is {size} bytes; the limit is {limit} bytes."
            )))
            .gql();
        }
        // The multipart parser spooled the file to disk; the service streams it from there.
        let upload = NewUpload {
            filename: value.filename,
            file: value.content,
            title,
        };
        Ok(
            guides::create_from_upload(app, auth.user_id, upload, method.into())
                .await
                .gql()?
                .into(),
        )
    }

    /// Creates a guide from pasted text and starts extracting its items.
    async fn create_guide_from_text(
        &self,
        ctx: &Context<'_>,
        title: String,
        text: String,
        #[graphql(default)] method: ExtractionMethod,
    ) -> Result<CreateGuidePayload> {
        let auth = require_user(ctx)?;
        Ok(
            guides::create_from_text(state(ctx)?, auth.user_id, &title, &text, method.into())
                .await
                .gql()?
                .into(),
        )
    }

    /// Renames a guide.
    async fn rename_guide(&self, ctx: &Context<'_>, id: ID, title: String) -> Result<Guide> {
        let auth = require_user(ctx)?;
        let id = parse_id(&id, "guide")?;
        Ok(guides::rename(&state(ctx)?.db, auth.user_id, id, &title)
            .await
            .gql()?
            .into())
    }

    /// Deletes a guide with its items, jobs and stored file; returns its id.
    async fn delete_guide(&self, ctx: &Context<'_>, id: ID) -> Result<ID> {
        let auth = require_user(ctx)?;
        let guide_id = parse_id(&id, "guide")?;
        guides::delete(state(ctx)?, auth.user_id, guide_id)
            .await
            .gql()?;
        Ok(id)
    }

    /// Extracts a guide's items again. Items the teacher edited or added are kept; the
    /// job's result lists them.
    async fn reextract_guide(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(default)] method: ExtractionMethod,
    ) -> Result<Job> {
        let auth = require_user(ctx)?;
        let id = parse_id(&id, "guide")?;
        Ok(
            guides::reextract(state(ctx)?, auth.user_id, id, method.into())
                .await
                .gql()?
                .into(),
        )
    }

    /// Adds an item at `position` (0-based; default: at the end).
    async fn add_guide_item(
        &self,
        ctx: &Context<'_>,
        guide_id: ID,
        input: GuideItemInput,
        position: Option<i32>,
    ) -> Result<GuideItem> {
        let auth = require_user(ctx)?;
        let guide_id = parse_id(&guide_id, "guide")?;
        Ok(guides::add_item(
            &state(ctx)?.db,
            auth.user_id,
            guide_id,
            input.into(),
            position,
        )
        .await
        .gql()?
        .into())
    }

    /// Changes an item; it is then marked as edited.
    async fn update_guide_item(
        &self,
        ctx: &Context<'_>,
        id: ID,
        patch: GuideItemPatch,
    ) -> Result<GuideItem> {
        let auth = require_user(ctx)?;
        let id = parse_id(&id, "guide item")?;
        Ok(
            guides::update_item(&state(ctx)?.db, auth.user_id, id, patch.into())
                .await
                .gql()?
                .into(),
        )
    }

    /// Deletes an item; returns its guide.
    async fn delete_guide_item(&self, ctx: &Context<'_>, id: ID) -> Result<Guide> {
        let auth = require_user(ctx)?;
        let id = parse_id(&id, "guide item")?;
        Ok(guides::delete_item(&state(ctx)?.db, auth.user_id, id)
            .await
            .gql()?
            .into())
    }

    /// Puts a guide's items in a new order; `itemIds` lists every item exactly once.
    async fn reorder_guide_items(
        &self,
        ctx: &Context<'_>,
        guide_id: ID,
        item_ids: Vec<ID>,
    ) -> Result<Vec<GuideItem>> {
        let auth = require_user(ctx)?;
        let guide_id = parse_id(&guide_id, "guide")?;
        let ids = item_ids
            .iter()
            .map(|id| parse_id(id, "guide item"))
            .collect::<Result<Vec<_>>>()?;
        let rows = guides::reorder_items(&state(ctx)?.db, auth.user_id, guide_id, &ids)
            .await
            .gql()?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}
