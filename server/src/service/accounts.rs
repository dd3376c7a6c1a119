//! Accounts: sign-up, sign-in, sessions and API tokens.
//!
//! Passwords are stored as argon2id hashes. Sessions and API tokens are opaque random
//! tokens shown to the client once; the database keeps only their SHA-256, so a leaked
//! database does not leak working tokens.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use entity::enums::TokenKind;
use entity::{sessions, users};
use rand::RngCore;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set, SqlErr,
};
use sha2::{Digest, Sha256};
use tracing::instrument;

use crate::error::{AppError, ErrorCode};
use crate::state::AppState;

/// Prefix that makes GradeLab tokens recognisable to secret scanners.
const TOKEN_PREFIX: &str = "glab_";
/// Longest accepted password: argon2 has no limit, but hashing megabytes is a cheap DoS.
const MAX_PASSWORD_LEN: usize = 1024;
/// Longest display name or token name.
const MAX_NAME_LEN: usize = 100;
/// `last_used_at` is refreshed at most this often, to keep reads from writing.
const LAST_USED_GRANULARITY_MINUTES: i64 = 5;

/// What went wrong in an account operation.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The email address is not plausible.
    #[error("“{0}” is not a valid email address.")]
    InvalidEmail(String),
    /// The password is too short or too long.
    #[error("Passwords must be between {min} and {MAX_PASSWORD_LEN} characters long.")]
    BadPassword {
        /// Shortest accepted length.
        min: usize,
    },
    /// A name is empty or too long.
    #[error("The {0} must be between 1 and {MAX_NAME_LEN} characters long.")]
    BadName(&'static str),
    /// Somebody already signed up with this address.
    #[error("An account with this email address already exists; sign in instead.")]
    EmailTaken,
    /// Unknown email or wrong password (deliberately not saying which).
    #[error("The email address or password is incorrect.")]
    InvalidCredentials,
    /// No such API token for this user.
    #[error("API token {0} not found")]
    TokenNotFound(i32),
    /// Hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl From<AccountError> for AppError {
    fn from(err: AccountError) -> Self {
        let code = match &err {
            AccountError::InvalidEmail(_)
            | AccountError::BadPassword { .. }
            | AccountError::BadName(_) => ErrorCode::BadUserInput,
            AccountError::EmailTaken => ErrorCode::Duplicate,
            AccountError::InvalidCredentials => ErrorCode::Unauthenticated,
            AccountError::TokenNotFound(_) => ErrorCode::NotFound,
            AccountError::Hash(_) | AccountError::Db(_) => return AppError::internal(err),
        };
        AppError::new(code, err.to_string())
    }
}

/// The caller behind a valid token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser {
    /// The account.
    pub user_id: i32,
    /// The session or API token row that authenticated the request.
    pub session_id: i32,
}

/// Kinds of security event on an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountEventKind {
    /// A new sign-in session started.
    SignedIn,
    /// A session was ended.
    SignedOut,
    /// An API token was created.
    ApiTokenCreated,
    /// An API token was revoked.
    ApiTokenRevoked,
}

/// A security event, delivered to the account owner's `accountEvents` subscriptions.
#[derive(Debug, Clone)]
pub struct AccountEvent {
    /// Whose account.
    pub user_id: i32,
    /// What happened.
    pub kind: AccountEventKind,
    /// Human detail, e.g. the token name.
    pub detail: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// Input for [`sign_up`].
#[derive(Debug)]
pub struct NewAccount {
    /// Email address; compared case-insensitively.
    pub email: String,
    /// Plain-text password; only its hash is stored.
    pub password: String,
    /// Name shown in the app.
    pub display_name: String,
}

/// Creates an account and signs it in. Returns the session token and the user.
#[instrument(skip_all)]
pub async fn sign_up(
    state: &AppState,
    input: NewAccount,
) -> Result<(String, users::Model), AccountError> {
    let email = normalise_email(&input.email)?;
    let display_name = check_name(&input.display_name, "display name")?;
    let min = state.settings.auth.min_password_len;
    if input.password.chars().count() < min || input.password.len() > MAX_PASSWORD_LEN {
        return Err(AccountError::BadPassword { min });
    }
    let password_hash = hash_password(input.password).await?;
    let now = Utc::now();
    let user = users::ActiveModel {
        email: Set(email),
        display_name: Set(display_name),
        password_hash: Set(password_hash),
        settings: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&state.db)
    .await
    .map_err(|err| match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => AccountError::EmailTaken,
        _ => AccountError::Db(err),
    })?;
    let token = start_session(state, user.id).await?;
    tracing::info!(user_id = user.id, "account created");
    Ok((token, user))
}

/// Checks the credentials and starts a session. Returns the session token and the user.
#[instrument(skip_all)]
pub async fn sign_in(
    state: &AppState,
    email: &str,
    password: String,
) -> Result<(String, users::Model), AccountError> {
    let email = email.trim().to_lowercase();
    if password.len() > MAX_PASSWORD_LEN {
        return Err(AccountError::InvalidCredentials);
    }
    let user = users::Entity::find()
        .filter(users::Column::Email.eq(email))
        .one(&state.db)
        .await?;
    let Some(user) = user else {
        // Spend the same time as a real check, so response times do not reveal which
        // addresses have accounts.
        let _ = hash_password(password).await;
        return Err(AccountError::InvalidCredentials);
    };
    if !verify_password(password, user.password_hash.clone()).await? {
        return Err(AccountError::InvalidCredentials);
    }
    let token = start_session(state, user.id).await?;
    Ok((token, user))
}

/// Ends the session (or revokes the API token) that authenticated this request.
#[instrument(skip(state))]
pub async fn sign_out(state: &AppState, auth: AuthUser) -> Result<(), AccountError> {
    revoke(state, auth.session_id).await?;
    publish(
        state,
        auth.user_id,
        AccountEventKind::SignedOut,
        "session ended",
    );
    Ok(())
}

/// Resolves a bearer token to its user, if the token is valid, unexpired and not revoked.
///
/// A token resolved in the last [`SESSION_CACHE_TTL`] is answered from memory
/// ([`SessionCache`]), so a busy client does not read its session row on every request.
#[instrument(skip_all)]
pub async fn authenticate(state: &AppState, token: &str) -> Result<Option<AuthUser>, AccountError> {
    if !token.starts_with(TOKEN_PREFIX) || token.len() > 128 {
        return Ok(None);
    }
    let now = Utc::now();
    let token_hash = hash_token(token);
    if let Some(cached) = state.sessions.get(&token_hash) {
        if cached.expires_at.is_some_and(|expires| expires <= now) {
            return Ok(None);
        }
        return Ok(Some(cached.auth));
    }
    let session = sessions::Entity::find()
        .filter(sessions::Column::TokenHash.eq(&token_hash))
        .filter(sessions::Column::RevokedAt.is_null())
        .one(&state.db)
        .await?;
    let Some(session) = session else {
        return Ok(None);
    };
    if session.expires_at.is_some_and(|expires| expires <= now) {
        return Ok(None);
    }
    let stale = session
        .last_used_at
        .is_none_or(|used| now - used > Duration::minutes(LAST_USED_GRANULARITY_MINUTES));
    if stale {
        sessions::Entity::update_many()
            .col_expr(sessions::Column::LastUsedAt, Expr::value(now))
            .filter(sessions::Column::Id.eq(session.id))
            .exec(&state.db)
            .await?;
    }
    let auth = AuthUser {
        user_id: session.user_id,
        session_id: session.id,
    };
    state.sessions.put(token_hash, auth, session.expires_at);
    Ok(Some(auth))
}

/// How long a resolved token is trusted without reading its session row again. Signing out
/// or revoking a token takes effect at once on the server that did it, and within this time
/// on other replicas.
pub const SESSION_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(2);

/// Most tokens kept in a [`SessionCache`]; beyond it the cache starts afresh.
const SESSION_CACHE_CAPACITY: usize = 10_000;

/// Recently resolved tokens, by their SHA-256 (see [`authenticate`]).
#[derive(Default)]
pub struct SessionCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, CachedSession>>,
}

#[derive(Clone, Copy)]
struct CachedSession {
    auth: AuthUser,
    expires_at: Option<DateTime<Utc>>,
    resolved: std::time::Instant,
}

impl SessionCache {
    fn entries(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, CachedSession>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, token_hash: &str) -> Option<CachedSession> {
        let cached = *self.entries().get(token_hash)?;
        (cached.resolved.elapsed() < SESSION_CACHE_TTL).then_some(cached)
    }

    fn put(&self, token_hash: String, auth: AuthUser, expires_at: Option<DateTime<Utc>>) {
        let mut entries = self.entries();
        if entries.len() >= SESSION_CACHE_CAPACITY {
            entries.clear();
        }
        entries.insert(
            token_hash,
            CachedSession {
                auth,
                expires_at,
                resolved: std::time::Instant::now(),
            },
        );
    }

    /// Drops a revoked session's token.
    fn forget(&self, session_id: i32) {
        self.entries()
            .retain(|_, cached| cached.auth.session_id != session_id);
    }
}

/// Loads the caller's account.
pub async fn current_user(
    db: &DatabaseConnection,
    auth: AuthUser,
) -> Result<users::Model, AccountError> {
    users::Entity::find_by_id(auth.user_id)
        .one(db)
        .await?
        .ok_or(AccountError::InvalidCredentials)
}

/// Creates a named, non-expiring API token. Returns the secret (shown once) and its row.
#[instrument(skip(state))]
pub async fn create_api_token(
    state: &AppState,
    auth: AuthUser,
    name: &str,
) -> Result<(String, sessions::Model), AccountError> {
    let name = check_name(name, "token name")?;
    let (token, row) = insert_token(
        &state.db,
        auth.user_id,
        TokenKind::ApiToken,
        Some(name.clone()),
        None,
    )
    .await?;
    publish(
        state,
        auth.user_id,
        AccountEventKind::ApiTokenCreated,
        &name,
    );
    Ok((token, row))
}

/// The caller's live API tokens, newest first.
pub async fn list_api_tokens(
    db: &DatabaseConnection,
    auth: AuthUser,
) -> Result<Vec<sessions::Model>, AccountError> {
    Ok(sessions::Entity::find()
        .filter(sessions::Column::UserId.eq(auth.user_id))
        .filter(sessions::Column::Kind.eq(TokenKind::ApiToken))
        .filter(sessions::Column::RevokedAt.is_null())
        .order_by_desc(sessions::Column::Id)
        .all(db)
        .await?)
}

/// Revokes one of the caller's API tokens. Another user's token reads as not found.
#[instrument(skip(state))]
pub async fn revoke_api_token(
    state: &AppState,
    auth: AuthUser,
    id: i32,
) -> Result<sessions::Model, AccountError> {
    let token = sessions::Entity::find_by_id(id)
        .filter(sessions::Column::UserId.eq(auth.user_id))
        .filter(sessions::Column::Kind.eq(TokenKind::ApiToken))
        .filter(sessions::Column::RevokedAt.is_null())
        .one(&state.db)
        .await?
        .ok_or(AccountError::TokenNotFound(id))?;
    revoke(state, token.id).await?;
    let name = token.name.clone().unwrap_or_default();
    publish(
        state,
        auth.user_id,
        AccountEventKind::ApiTokenRevoked,
        &name,
    );
    Ok(token)
}

async fn start_session(state: &AppState, user_id: i32) -> Result<String, AccountError> {
    let ttl = Duration::hours(i64::from(state.settings.auth.session_ttl_hours));
    let (token, _) = insert_token(
        &state.db,
        user_id,
        TokenKind::Session,
        None,
        Some(Utc::now() + ttl),
    )
    .await?;
    publish(state, user_id, AccountEventKind::SignedIn, "new session");
    Ok(token)
}

async fn insert_token(
    db: &DatabaseConnection,
    user_id: i32,
    kind: TokenKind,
    name: Option<String>,
    expires_at: Option<DateTime<Utc>>,
) -> Result<(String, sessions::Model), DbErr> {
    let token = new_token();
    let row = sessions::ActiveModel {
        user_id: Set(user_id),
        token_hash: Set(hash_token(&token)),
        kind: Set(kind),
        name: Set(name),
        created_at: Set(Utc::now()),
        last_used_at: Set(None),
        expires_at: Set(expires_at),
        revoked_at: Set(None),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok((token, row))
}

async fn revoke(state: &AppState, session_id: i32) -> Result<(), DbErr> {
    sessions::Entity::update_many()
        .col_expr(sessions::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(sessions::Column::Id.eq(session_id))
        .exec(&state.db)
        .await?;
    state.sessions.forget(session_id);
    Ok(())
}

fn publish(state: &AppState, user_id: i32, kind: AccountEventKind, detail: &str) {
    // No subscriber is fine: the event is informational.
    let _ = state.account_events.send(AccountEvent {
        user_id,
        kind,
        detail: detail.to_owned(),
        at: Utc::now(),
    });
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// SHA-256 of a token, hex-encoded: what the database stores.
fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn normalise_email(email: &str) -> Result<String, AccountError> {
    let email = email.trim().to_lowercase();
    let plausible = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email.chars().any(char::is_whitespace);
    if plausible {
        Ok(email)
    } else {
        Err(AccountError::InvalidEmail(email))
    }
}

fn check_name(name: &str, what: &'static str) -> Result<String, AccountError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(AccountError::BadName(what));
    }
    Ok(name.to_owned())
}

async fn hash_password(password: String) -> Result<String, AccountError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|err| AccountError::Hash(err.to_string()))
    })
    .await
    .map_err(|err| AccountError::Hash(err.to_string()))?
}

async fn verify_password(password: String, hash: String) -> Result<bool, AccountError> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&hash).map_err(|err| AccountError::Hash(err.to_string()))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|err| AccountError::Hash(err.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            normalise_email("  Ada@Example.ORG ").ok(),
            Some("ada@example.org".to_string())
        );
        for bad in [
            "",
            "ada",
            "@example.org",
            "ada@example",
            "ada@.org",
            "a b@c.de",
        ] {
            assert!(normalise_email(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn tokens_are_random_and_stored_only_as_hashes() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(hash_token(&a).len(), 64);
        assert_ne!(hash_token(&a), hash_token(&b));
    }
}
