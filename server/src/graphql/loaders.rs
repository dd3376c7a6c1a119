//! Batched loading for list views, so a page of guides costs a fixed number of queries
//! whatever its size (no N+1): the items of every guide on the page in one query, their
//! latest jobs in two.
//!
//! The loaders keep no cache between requests (async-graphql's default `NoCache`): they only
//! batch the loads of one request that happen together, so nothing stale is ever served.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use entity::enums::JobKind;
use entity::{guide_items, jobs};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};

use crate::service::guides;

/// The items of a guide, in order, keyed by guide id.
pub struct GuideItemsLoader {
    db: DatabaseConnection,
}

impl Loader<i32> for GuideItemsLoader {
    type Value = Arc<Vec<guide_items::Model>>;
    type Error = Arc<guides::GuideError>;

    async fn load(&self, keys: &[i32]) -> Result<HashMap<i32, Self::Value>, Self::Error> {
        let mut found = guides::items_of(&self.db, keys).await.map_err(Arc::new)?;
        Ok(keys
            .iter()
            .map(|key| (*key, Arc::new(found.remove(key).unwrap_or_default())))
            .collect())
    }
}

/// Which job of a guide: the latest of one kind, or of any kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LatestJobKey {
    /// `guides.id`.
    pub guide_id: i32,
    /// Restrict to one kind of job.
    pub kind: Option<JobKind>,
}

/// The most recent job of a guide.
pub struct LatestJobLoader {
    db: DatabaseConnection,
}

impl Loader<LatestJobKey> for LatestJobLoader {
    type Value = jobs::Model;
    type Error = Arc<sea_orm::DbErr>;

    async fn load(
        &self,
        keys: &[LatestJobKey],
    ) -> Result<HashMap<LatestJobKey, Self::Value>, Self::Error> {
        let mut by_kind: HashMap<Option<JobKind>, Vec<i32>> = HashMap::new();
        for key in keys {
            by_kind.entry(key.kind).or_default().push(key.guide_id);
        }
        let mut found = HashMap::new();
        for (kind, guide_ids) in by_kind {
            // The newest job id per guide, then those rows.
            let mut newest = jobs::Entity::find()
                .select_only()
                .column(jobs::Column::GuideId)
                .column_as(Expr::col(jobs::Column::Id).max(), "id")
                .filter(jobs::Column::GuideId.is_in(guide_ids))
                .group_by(jobs::Column::GuideId);
            if let Some(kind) = kind {
                newest = newest.filter(jobs::Column::Kind.eq(kind));
            }
            let ids: Vec<(Option<i32>, Option<i32>)> =
                newest.into_tuple().all(&self.db).await.map_err(Arc::new)?;
            let rows = jobs::Entity::find()
                .filter(jobs::Column::Id.is_in(ids.into_iter().filter_map(|(_, id)| id)))
                .all(&self.db)
                .await
                .map_err(Arc::new)?;
            for row in rows {
                if let Some(guide_id) = row.guide_id {
                    found.insert(LatestJobKey { guide_id, kind }, row);
                }
            }
        }
        Ok(found)
    }
}

/// The items loader, as schema data.
pub fn items_loader(db: &DatabaseConnection) -> DataLoader<GuideItemsLoader> {
    DataLoader::new(GuideItemsLoader { db: db.clone() }, tokio::spawn)
}

/// The latest-job loader, as schema data.
pub fn latest_job_loader(db: &DatabaseConnection) -> DataLoader<LatestJobLoader> {
    DataLoader::new(LatestJobLoader { db: db.clone() }, tokio::spawn)
}
