//! GraphQL types for accounts.

use async_graphql::{Enum, InputObject, SimpleObject, ID};
use chrono::{DateTime, Utc};
use entity::{sessions, users};

use crate::service::accounts::{AccountEvent as ServiceEvent, AccountEventKind as ServiceKind};

/// A GradeLab account.
#[derive(SimpleObject)]
pub struct User {
    /// Stable identifier.
    pub id: ID,
    /// Email address used to sign in (lower-case).
    pub email: String,
    /// Name shown in the app.
    pub display_name: String,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
}

impl From<users::Model> for User {
    fn from(user: users::Model) -> Self {
        Self {
            id: user.id.into(),
            email: user.email,
            display_name: user.display_name,
            created_at: user.created_at,
        }
    }
}

/// Returned by `signUp` and `signIn`: a bearer token and the account.
#[derive(SimpleObject)]
pub struct AuthPayload {
    /// Send as `Authorization: Bearer <token>` (or in the WebSocket `connection_init`
    /// payload as `{"token": …}`). Shown only once.
    pub token: String,
    /// The signed-in account.
    pub user: User,
}

/// A long-lived API token for scripts and integrations. The secret is shown only when the
/// token is created.
#[derive(SimpleObject)]
pub struct ApiToken {
    /// Stable identifier.
    pub id: ID,
    /// Name given when the token was created.
    pub name: String,
    /// When the token was created.
    pub created_at: DateTime<Utc>,
    /// When the token last authenticated a request (to within a few minutes).
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<sessions::Model> for ApiToken {
    fn from(token: sessions::Model) -> Self {
        Self {
            id: token.id.into(),
            name: token.name.unwrap_or_default(),
            created_at: token.created_at,
            last_used_at: token.last_used_at,
        }
    }
}

/// A newly created API token with its secret.
#[derive(SimpleObject)]
pub struct NewApiToken {
    /// The secret; store it now, it cannot be shown again.
    pub token: String,
    /// The token's metadata.
    pub api_token: ApiToken,
}

/// Input for `signUp`.
#[derive(InputObject)]
pub struct SignUpInput {
    /// Email address; used to sign in.
    pub email: String,
    /// At least 8 characters.
    pub password: String,
    /// Name shown in the app.
    pub display_name: String,
}

/// Input for `signIn`.
#[derive(InputObject)]
pub struct SignInInput {
    /// Email address given at sign-up.
    pub email: String,
    /// Password.
    pub password: String,
}

/// Kinds of security event on an account.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "ServiceKind")]
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

/// A security event on the caller's account.
#[derive(SimpleObject)]
pub struct AccountEvent {
    /// What happened.
    pub kind: AccountEventKind,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Human detail, such as the API token's name.
    pub detail: String,
}

impl From<ServiceEvent> for AccountEvent {
    fn from(event: ServiceEvent) -> Self {
        Self {
            kind: event.kind.into(),
            at: event.at,
            detail: event.detail,
        }
    }
}
