//! Accounts: sign up, sign in, sign out and the signed-in user (`queries/{sign_up,sign_in,sign_out,me}.graphql`).

use graphql_client::GraphQLQuery;
use serde_json::Value;

use super::json::Read;
use super::{http, session, ApiError};

#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "queries/sign_up.graphql",
    response_derives = "Serialize"
)]
struct SignUp;

#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "queries/sign_in.graphql",
    response_derives = "Serialize"
)]
struct SignIn;

#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "queries/sign_out.graphql",
    response_derives = "Serialize"
)]
struct SignOut;

#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "queries/me.graphql",
    response_derives = "Serialize"
)]
struct Me;

/// A GradeLab account, as the pages see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Opaque id.
    pub id: String,
    /// Sign-in email.
    pub email: String,
    /// Name shown in the header.
    pub display_name: String,
}

impl User {
    fn read(user: &Value) -> Self {
        Self {
            id: user.text("id"),
            email: user.text("email"),
            display_name: user.text("displayName"),
        }
    }
}

/// Keeps the token of a `signUp`/`signIn` payload and returns its user.
fn signed_in(payload: &Value) -> User {
    session::set_token(&payload.text("token"));
    User::read(payload.at("user"))
}

/// Creates an account and keeps its token: the user is signed in afterwards.
pub async fn sign_up(
    email: String,
    password: String,
    display_name: String,
) -> Result<User, ApiError> {
    let variables = sign_up::Variables {
        input: sign_up::SignUpInput {
            email,
            password,
            display_name,
        },
    };
    Ok(signed_in(
        http::post::<SignUp>(variables).await?.at("signUp"),
    ))
}

/// Signs in and keeps the token.
pub async fn sign_in(email: String, password: String) -> Result<User, ApiError> {
    let variables = sign_in::Variables {
        input: sign_in::SignInInput { email, password },
    };
    Ok(signed_in(
        http::post::<SignIn>(variables).await?.at("signIn"),
    ))
}

/// Revokes the token on the server, then forgets it here whatever the server said.
pub async fn sign_out() -> Result<(), ApiError> {
    let revoked = http::post::<SignOut>(sign_out::Variables).await.map(|_| ());
    session::clear_token();
    revoked
}

/// The signed-in user.
pub async fn me() -> Result<User, ApiError> {
    Ok(User::read(http::post::<Me>(me::Variables).await?.at("me")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::json::typed;
    use serde_json::json;

    #[test]
    fn reads_the_user() {
        let data = typed::<Me>(json!({
            "me": { "id": "7", "email": "a@b.org", "displayName": "Ms Rivera" }
        }));
        assert_eq!(
            User::read(data.at("me")),
            User {
                id: "7".into(),
                email: "a@b.org".into(),
                display_name: "Ms Rivera".into(),
            }
        );
        let payload =
            json!({ "token": "t", "user": { "id": "7", "email": "a@b.org", "displayName": "R" } });
        for data in [
            typed::<SignUp>(json!({ "signUp": payload }))
                .at("signUp")
                .clone(),
            typed::<SignIn>(json!({ "signIn": payload }))
                .at("signIn")
                .clone(),
        ] {
            assert_eq!(data.text("token"), "t");
            assert_eq!(User::read(data.at("user")).display_name, "R");
        }
    }
}
