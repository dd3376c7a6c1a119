//! Fills `created_at` / `updated_at` on save when the caller has not set them.

use sea_orm::entity::prelude::DateTimeUtc;
use sea_orm::ActiveValue::{self, Set};

/// On insert, set `created_at` to now unless the caller gave a value.
pub(crate) fn stamp_created(created_at: &mut ActiveValue<DateTimeUtc>, insert: bool) {
    if insert && created_at.is_not_set() {
        *created_at = Set(chrono::Utc::now());
    }
}

/// Like [`stamp_created`]; also set `updated_at` to now on insert (unless given)
/// and on every update (unless the caller explicitly `Set` it).
pub(crate) fn stamp_created_updated(
    created_at: &mut ActiveValue<DateTimeUtc>,
    updated_at: &mut ActiveValue<DateTimeUtc>,
    insert: bool,
) {
    let now = chrono::Utc::now();
    if insert && created_at.is_not_set() {
        *created_at = Set(now);
    }
    let stamp = if insert {
        updated_at.is_not_set()
    } else {
        !updated_at.is_set()
    };
    if stamp {
        *updated_at = Set(now);
    }
}
