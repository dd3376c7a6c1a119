//! Accounts: sign up, sign in, sign out and the signed-in user (`queries/{sign_up,sign_in,sign_out,me}.graphql`).

use graphql_client::GraphQLQuery;

use super::{http, session, ApiError};

#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "queries/sign_up.graphql",
    variables_derives = "Debug, Clone",
    response_derives = "Debug, Clone"
)]
struct SignUp;

#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "queries/sign_in.graphql",
    variables_derives = "Debug, Clone",
    response_derives = "Debug, Clone"
)]
struct SignIn;

#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "queries/sign_out.graphql",
    response_derives = "Debug"
)]
struct SignOut;

#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "queries/me.graphql",
    response_derives = "Debug, Clone"
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

macro_rules! user_from {
    ($generated:ty) => {
        impl From<$generated> for User {
            fn from(user: $generated) -> Self {
                Self {
                    id: user.id,
                    email: user.email,
                    display_name: user.display_name,
                }
            }
        }
    };
}

user_from!(sign_up::SignUpSignUpUser);
user_from!(sign_in::SignInSignInUser);
user_from!(me::MeMe);

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
    let payload = http::post::<SignUp>(variables).await?.sign_up;
    session::set_token(&payload.token);
    Ok(payload.user.into())
}

/// Signs in and keeps the token.
pub async fn sign_in(email: String, password: String) -> Result<User, ApiError> {
    let variables = sign_in::Variables {
        input: sign_in::SignInInput { email, password },
    };
    let payload = http::post::<SignIn>(variables).await?.sign_in;
    session::set_token(&payload.token);
    Ok(payload.user.into())
}

/// Revokes the token on the server, then forgets it here whatever the server said.
pub async fn sign_out() -> Result<(), ApiError> {
    let revoked = http::post::<SignOut>(sign_out::Variables).await.map(|_| ());
    session::clear_token();
    revoked
}

/// The signed-in user.
pub async fn me() -> Result<User, ApiError> {
    Ok(http::post::<Me>(me::Variables).await?.me.into())
}
