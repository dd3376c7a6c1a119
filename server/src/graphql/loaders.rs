//! Batched loading for list views, so a page of guides costs a fixed number of queries
//! whatever its size (no N+1): the items of every guide on the page in one query, their
//! latest jobs in another. Items are read without their texts unless the query asks for
//! them (a look-ahead in `Guide.items`), as counts, totals and labels need none.
//!
//! The loaders are shared by all requests: the loads of concurrent requests that are
//! pending together go to the database as one query — the guide pages themselves too
//! (one `UNION ALL` of every caller's page), and requests for the same page share one
//! read. (Loading a page's items and jobs up front in the list's resolver instead was
//! measured slower under load, 1,040 against 2,040 requests/s, because each request then
//! paid for its own queries.)
//!
//! A page of guides asks the loaders once for the whole page ([`PagePrefetch`]): one
//! `load_many` per loader instead of a `load_one` per guide and field, each of which costs a
//! lock, a channel and a wake-up (a page of 20 guides with `itemCount totalMarks`: 2,350 →
//! 3,080 requests/s here; the dashboard's whole read gained less than its run-to-run noise).
//! Fields the page did not foresee still load one by one.
//!
//! The loaders keep no cache (async-graphql's default `NoCache`): they only batch loads that
//! happen together. What a page needs of its guides is also kept across requests, in a
//! [`GuideCache`] checked against each guide's `revision` — a counter the database's own
//! triggers bump with every change to the guide's items or jobs — which the page reads
//! afresh each time; so nothing stale is ever served, whichever replica or worker made the
//! change. With it, one teacher's dashboard read went from 1,640–1,850 to 3,000–3,190
//! requests/s here (three alternating runs each, same seeded database).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::Lookahead;
use entity::enums::JobKind;
use entity::{guide_items, jobs};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

use crate::error::AppError;
use crate::service::guides::{self, GuidePage, ItemDetail};

/// Pages of a user's guides (texts left empty), keyed by page.
pub struct GuidePageLoader {
    db: DatabaseConnection,
}

impl Loader<GuidePage> for GuidePageLoader {
    type Value = Arc<Vec<entity::guides::Model>>;
    type Error = Arc<guides::GuideError>;

    async fn load(
        &self,
        keys: &[GuidePage],
    ) -> Result<HashMap<GuidePage, Self::Value>, Self::Error> {
        let mut found = guides::pages_without_text(&self.db, keys)
            .await
            .map_err(Arc::new)?;
        Ok(keys
            .iter()
            .map(|key| (*key, Arc::new(found.remove(key).unwrap_or_default())))
            .collect())
    }
}

/// Which items: those of one guide, read whole or as summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ItemsKey {
    /// `guides.id`.
    pub guide_id: i32,
    /// Whole rows, or without their texts (see [`ItemDetail`]).
    pub detail: ItemDetail,
}

/// The items of a guide, in order.
pub struct GuideItemsLoader {
    db: DatabaseConnection,
}

impl Loader<ItemsKey> for GuideItemsLoader {
    type Value = Arc<Vec<guide_items::Model>>;
    type Error = Arc<guides::GuideError>;

    async fn load(&self, keys: &[ItemsKey]) -> Result<HashMap<ItemsKey, Self::Value>, Self::Error> {
        let mut by_detail: HashMap<ItemDetail, Vec<i32>> = HashMap::new();
        for key in keys {
            by_detail.entry(key.detail).or_default().push(key.guide_id);
        }
        let mut loaded = HashMap::with_capacity(keys.len());
        for (detail, guide_ids) in by_detail {
            let mut found = guides::items_of(&self.db, &guide_ids, detail)
                .await
                .map_err(Arc::new)?;
            for guide_id in guide_ids {
                let rows = found.remove(&guide_id).unwrap_or_default();
                loaded.insert(ItemsKey { guide_id, detail }, Arc::new(rows));
            }
        }
        Ok(loaded)
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
    type Value = Arc<jobs::Model>;
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
            for (guide_id, row) in latest_jobs(&self.db, &guide_ids, kind)
                .await
                .map_err(Arc::new)?
            {
                found.insert(LatestJobKey { guide_id, kind }, Arc::new(row));
            }
        }
        Ok(found)
    }
}

/// The newest job (of `kind`) of each of these guides, by guide id, in one statement and
/// without checkpoints.
async fn latest_jobs(
    db: &DatabaseConnection,
    guide_ids: &[i32],
    kind: Option<JobKind>,
) -> Result<HashMap<i32, jobs::Model>, sea_orm::DbErr> {
    let mut newest = Query::select();
    newest
        .expr(Expr::col(jobs::Column::Id).max())
        .from(jobs::Entity)
        .and_where(jobs::Column::GuideId.is_in(guide_ids.iter().copied()))
        .group_by_col(jobs::Column::GuideId);
    if let Some(kind) = kind {
        newest.and_where(jobs::Column::Kind.eq(kind));
    }
    let rows = crate::service::jobs::without_checkpoint(jobs::Entity::find())
        .filter(jobs::Column::Id.in_subquery(newest))
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| Some((row.guide_id?, row)))
        .collect())
}

/// How long a loader waits for more keys before it reads: none beyond what arrives before
/// its task first runs. Under load that is every request resolving at the time, so
/// concurrent requests still share their statements, while a request never sleeps for a
/// batch: with async-graphql's default of 1 ms (a tokio sleep, so 1–2 ms), each of the
/// read's two rounds of loads slept while the cores idled, and one teacher's dashboard read
/// made 1,523–1,653 requests/s here against 1,649–2,210 without the sleep (`graphql_load`,
/// five and five runs on the same day; 8 teachers in turn: 756–840 against 684–987).
const BATCH_DELAY: Duration = Duration::ZERO;

/// The guide-page loader, as schema data.
pub fn guide_page_loader(db: &DatabaseConnection) -> DataLoader<GuidePageLoader> {
    DataLoader::new(GuidePageLoader { db: db.clone() }, tokio::spawn).delay(BATCH_DELAY)
}

/// The items loader, as schema data.
pub fn items_loader(db: &DatabaseConnection) -> DataLoader<GuideItemsLoader> {
    DataLoader::new(GuideItemsLoader { db: db.clone() }, tokio::spawn).delay(BATCH_DELAY)
}

/// The latest-job loader, as schema data.
pub fn latest_job_loader(db: &DatabaseConnection) -> DataLoader<LatestJobLoader> {
    DataLoader::new(LatestJobLoader { db: db.clone() }, tokio::spawn).delay(BATCH_DELAY)
}

/// Most item rows a [`GuideCache`] keeps; beyond it the cache starts afresh.
const CACHED_ITEMS: usize = 100_000;
/// Most latest jobs a [`GuideCache`] keeps; beyond it the cache starts afresh.
const CACHED_JOBS: usize = 10_000;

/// What hangs off the guides of recent pages — item summaries and latest jobs — each kept
/// with the guide's `revision` it was read at. The database bumps a guide's revision
/// (triggers) in the same transaction as any change to its items or to what the API shows
/// of its jobs, and every page reads its guides' revisions afresh, so an entry is used only
/// while nothing it holds can have changed: never stale, on any replica. (An entry read just
/// after a change but stored under the revision before it holds newer data than its key;
/// the next page reads the new revision and reloads.) Guide ids are never reused
/// (`AUTOINCREMENT`, sequences), so a key cannot outlive its guide into another. A page
/// whose guides are all cached costs one statement (the page itself) instead of three.
#[derive(Default)]
pub struct GuideCache {
    entries: Mutex<CacheEntries>,
}

#[derive(Default)]
struct CacheEntries {
    items: HashMap<i32, (i64, Arc<Vec<guide_items::Model>>)>,
    item_rows: usize,
    jobs: HashMap<LatestJobKey, (i64, Option<Arc<jobs::Model>>)>,
}

impl GuideCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, CacheEntries> {
        // The map stays consistent whatever a panicking holder did: it only inserts whole
        // entries.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A guide of a page: its id and the revision the page read.
#[derive(Debug, Clone, Copy)]
pub struct PageGuide {
    /// `guides.id`.
    pub id: i32,
    /// `guides.revision`.
    pub revision: i64,
}

/// What a page of guides will ask the loaders for, loaded for every guide of the page at
/// once: from the [`GuideCache`] where the guide has not changed since, otherwise through
/// the shared loaders (so concurrent pages still share their statements).
#[derive(Default)]
pub struct PagePrefetch {
    items: HashMap<ItemsKey, Arc<Vec<guide_items::Model>>>,
    /// Latest jobs by kind and guide; a kind present here was loaded for every guide of
    /// the page, so a guide missing from it has no such job.
    jobs: HashMap<Option<JobKind>, HashMap<i32, Arc<jobs::Model>>>,
}

impl PagePrefetch {
    /// Loads what `node` (the selection on each guide of the page) reads: item summaries
    /// for `itemCount`, `totalMarks` and `items` without texts, whole items when `items`
    /// asks for a text or the rubric, and the latest jobs for `latestJob` and
    /// `extractionJob`.
    pub async fn load(
        node: &Lookahead<'_>,
        guides: &[PageGuide],
        items: &DataLoader<GuideItemsLoader>,
        latest_jobs: &DataLoader<LatestJobLoader>,
        cache: &GuideCache,
    ) -> Result<Self, AppError> {
        let items_field = node.field("items");
        let full = ["question", "modelAnswer", "rubric"]
            .iter()
            .any(|field| items_field.field(field).exists());
        let summary = node.field("itemCount").exists()
            || node.field("totalMarks").exists()
            || (items_field.exists() && !full);
        let details = [(summary, ItemDetail::Summary), (full, ItemDetail::Full)];
        let kinds: Vec<Option<JobKind>> = [
            (node.field("latestJob").exists(), None),
            (
                node.field("extractionJob").exists(),
                Some(JobKind::Extraction),
            ),
        ]
        .into_iter()
        .filter_map(|(wanted, kind)| wanted.then_some(kind))
        .collect();
        let mut page = Self {
            items: HashMap::new(),
            jobs: kinds.iter().map(|&kind| (kind, HashMap::new())).collect(),
        };
        // What the cache holds at the revisions just read; the rest goes to the loaders.
        let mut item_keys = Vec::new();
        let mut job_keys = Vec::new();
        {
            let cached = cache.entries();
            for (_, detail) in details.iter().filter(|(wanted, _)| *wanted) {
                for guide in guides {
                    let key = ItemsKey {
                        guide_id: guide.id,
                        detail: *detail,
                    };
                    match cached.items.get(&guide.id) {
                        // Only summaries are cached: whole items can be large.
                        Some((revision, rows))
                            if *detail == ItemDetail::Summary && *revision == guide.revision =>
                        {
                            page.items.insert(key, Arc::clone(rows));
                        }
                        _ => item_keys.push(key),
                    }
                }
            }
            for &kind in &kinds {
                for guide in guides {
                    let key = LatestJobKey {
                        guide_id: guide.id,
                        kind,
                    };
                    match cached.jobs.get(&key) {
                        Some((revision, job)) if *revision == guide.revision => {
                            if let Some(job) = job {
                                page.jobs
                                    .entry(kind)
                                    .or_default()
                                    .insert(guide.id, Arc::clone(job));
                            }
                        }
                        _ => job_keys.push(key),
                    }
                }
            }
        }
        if item_keys.is_empty() && job_keys.is_empty() {
            return Ok(page);
        }
        let revisions: HashMap<i32, i64> = guides.iter().map(|g| (g.id, g.revision)).collect();
        let (loaded_items, loaded_jobs) = futures::try_join!(
            async {
                items
                    .load_many(item_keys.iter().copied())
                    .await
                    .map_err(|err| AppError::internal(anyhow::anyhow!("loading items: {err}")))
            },
            async {
                latest_jobs
                    .load_many(job_keys.iter().copied())
                    .await
                    .map_err(|err| AppError::internal(anyhow::anyhow!("loading jobs: {err}")))
            },
        )?;
        let mut cached = cache.entries();
        for (key, rows) in loaded_items {
            if key.detail == ItemDetail::Summary {
                if cached.item_rows + rows.len() > CACHED_ITEMS {
                    cached.items.clear();
                    cached.item_rows = 0;
                }
                cached.item_rows += rows.len();
                let revision = revisions[&key.guide_id];
                if let Some((_, old)) = cached
                    .items
                    .insert(key.guide_id, (revision, Arc::clone(&rows)))
                {
                    cached.item_rows -= old.len();
                }
            }
            page.items.insert(key, rows);
        }
        if cached.jobs.len() + job_keys.len() > CACHED_JOBS {
            cached.jobs.clear();
        }
        for key in job_keys {
            let job = loaded_jobs.get(&key).cloned();
            cached
                .jobs
                .insert(key, (revisions[&key.guide_id], job.clone()));
            if let Some(job) = job {
                page.jobs
                    .entry(key.kind)
                    .or_default()
                    .insert(key.guide_id, job);
            }
        }
        Ok(page)
    }

    /// The items of `key` if the page loaded them; whole items stand in for summaries.
    pub fn items(&self, key: ItemsKey) -> Option<Arc<Vec<guide_items::Model>>> {
        let full = ItemsKey {
            detail: ItemDetail::Full,
            ..key
        };
        self.items
            .get(&key)
            .or_else(|| self.items.get(&full))
            .cloned()
    }

    /// The latest job of `key` if the page loaded that kind: `Some(None)` when the guide
    /// has none.
    pub fn latest_job(&self, key: LatestJobKey) -> Option<Option<&Arc<jobs::Model>>> {
        self.jobs
            .get(&key.kind)
            .map(|found| found.get(&key.guide_id))
    }
}
