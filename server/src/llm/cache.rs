//! The response cache: `llm_cache` rows keyed by the SHA-256 of the canonical request.
//!
//! The canonical request is the JSON object `{provider, base_url, request}` where `request`
//! is the exact chat-completions body (model, messages, response format with its schema,
//! temperature, seed, max_tokens), serialised compactly with object keys sorted at every
//! level. The API key and the timeout are not part of it: they do not change the answer.

use std::io::Write;

use chrono::Utc;
use entity::llm_cache;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Set};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256 of the canonical form of a request to `base_url`.
pub fn request_key(provider: &str, base_url: &str, request: &Value) -> String {
    let mut hasher = Sha256::new();
    // `{"base_url":…,"provider":…,"request":…}`, keys in sorted order, without copying the
    // request. Writing into a hasher cannot fail.
    let _ = (|| -> std::io::Result<()> {
        hasher.write_all(b"{\"base_url\":")?;
        serde_json::to_writer(&mut hasher, base_url)?;
        hasher.write_all(b",\"provider\":")?;
        serde_json::to_writer(&mut hasher, provider)?;
        hasher.write_all(b",\"request\":")?;
        write_canonical(&mut hasher, request)?;
        hasher.write_all(b"}")
    })();
    hex::encode(hasher.finalize())
}

/// Writes `value` as compact JSON with object keys sorted at every level, straight into
/// `out` (no sorted copy of the tree is built).
fn write_canonical(out: &mut impl Write, value: &Value) -> std::io::Result<()> {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.write_all(b"{")?;
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                serde_json::to_writer(&mut *out, key)?;
                out.write_all(b":")?;
                write_canonical(out, value)?;
            }
            out.write_all(b"}")
        }
        Value::Array(items) => {
            out.write_all(b"[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_canonical(out, item)?;
            }
            out.write_all(b"]")
        }
        scalar => Ok(serde_json::to_writer(out, scalar)?),
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
    use serde_json::json;

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

    #[test]
    fn the_key_is_the_hash_of_the_canonical_wrapper() {
        let request = json!({"model": "m", "messages": []});
        let mut expected = Vec::new();
        let wrapper = json!({"provider": "p", "base_url": "u", "request": request});
        write_canonical(&mut expected, &wrapper).unwrap_or_default();
        assert_eq!(
            request_key("p", "u", &request),
            hex::encode(Sha256::digest(&expected))
        );
    }

    #[test]
    fn the_canonical_form_is_compact_json_with_sorted_keys() {
        let mut out = Vec::new();
        let value = json!({"b": [1, {"d": null, "c": "é\""}], "a": 0.5});
        write_canonical(&mut out, &value).unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&out),
            r#"{"a":0.5,"b":[1,{"c":"é\"","d":null}]}"#
        );
    }
}
