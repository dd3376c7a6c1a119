//! The response cache: `llm_cache` rows keyed by the SHA-256 of the canonical request.
//!
//! The canonical request is the JSON object `{provider, base_url, request}` where `request`
//! is the exact chat-completions body (model, messages, response format with its schema,
//! temperature, seed, max_tokens), serialised compactly with object keys sorted at every
//! level. The API key and the timeout are not part of it: they do not change the answer.

use chrono::Utc;
use entity::llm_cache;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Set};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256 of the canonical form of a request to `base_url`.
pub fn request_key(provider: &str, base_url: &str, request: &Value) -> String {
    let canonical = canonicalize(&json!({
        "provider": provider,
        "base_url": base_url,
        "request": request,
    }));
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// A copy of `value` with object keys sorted at every level.
fn canonicalize(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), canonicalize(v)))
                    .collect::<Map<_, _>>(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonicalize).collect()),
        other => other.clone(),
    }
}

/// The cached response body for `key`, counting the hit.
pub async fn lookup(db: &DatabaseConnection, key: &str) -> Result<Option<String>, DbErr> {
    let Some(row) = llm_cache::Entity::find()
        .filter(llm_cache::Column::RequestSha256.eq(key))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    llm_cache::Entity::update_many()
        .col_expr(
            llm_cache::Column::Hits,
            Expr::col(llm_cache::Column::Hits).add(1),
        )
        .col_expr(llm_cache::Column::LastHitAt, Expr::value(Utc::now()))
        .filter(llm_cache::Column::Id.eq(row.id))
        .exec(db)
        .await?;
    Ok(Some(row.response))
}

/// What a cache entry holds.
pub struct Entry<'a> {
    /// Cache key.
    pub key: &'a str,
    /// Provider preset name.
    pub provider: &'a str,
    /// Model name.
    pub model: &'a str,
    /// Raw response body.
    pub response: &'a str,
    /// Tokens the response cost.
    pub prompt_tokens: i64,
    /// Tokens the response cost.
    pub completion_tokens: i64,
}

/// Stores a response; a concurrent identical call that stored first wins.
pub async fn store(db: &DatabaseConnection, entry: Entry<'_>) -> Result<(), DbErr> {
    let row = llm_cache::ActiveModel {
        request_sha256: Set(entry.key.to_owned()),
        provider: Set(entry.provider.to_owned()),
        model: Set(entry.model.to_owned()),
        response: Set(entry.response.to_owned()),
        prompt_tokens: Set(entry.prompt_tokens),
        completion_tokens: Set(entry.completion_tokens),
        hits: Set(0),
        created_at: Set(Utc::now()),
        last_hit_at: Set(None),
        ..Default::default()
    };
    llm_cache::Entity::insert(row)
        .on_conflict(
            OnConflict::column(llm_cache::Column::RequestSha256)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_ignores_key_order_but_not_content() {
        let a = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.0});
        let b = json!({"temperature": 0.0, "messages": [{"content": "hi", "role": "user"}], "model": "m"});
        let c = json!({"model": "m", "messages": [{"role": "user", "content": "hi!"}], "temperature": 0.0});
        let key = request_key("llamacpp", "http://x/v1", &a);
        assert_eq!(key.len(), 64);
        assert_eq!(key, request_key("llamacpp", "http://x/v1", &b));
        assert_ne!(key, request_key("llamacpp", "http://x/v1", &c));
        assert_ne!(key, request_key("llamacpp", "http://y/v1", &a));
        assert_ne!(key, request_key("ollama", "http://x/v1", &a));
    }
}
