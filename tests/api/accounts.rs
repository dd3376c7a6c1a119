//! Sign-up, sign-in, sign-out and the current user.

use gradelab_tests::spawn_app;
use serde_json::json;

const SIGN_IN: &str =
    "mutation($input: SignInInput!) { signIn(input: $input) { token user { email displayName } } }";
const ME: &str = "{ me { id email displayName } }";

#[tokio::test]
async fn a_new_user_signs_up_and_sees_their_account() {
    let app = spawn_app().await;
    let user = app.sign_up("Ada").await;
    assert!(!user.token.is_empty());

    let me = app.graphql(Some(&user.token), ME, json!({})).await.ok();
    assert_eq!(me["me"]["email"], user.email.as_str());
    assert_eq!(me["me"]["displayName"], "Ada");
    assert_eq!(me["me"]["id"], user.id.as_str());
}

#[tokio::test]
async fn signing_in_works_with_the_right_password_only() {
    let app = spawn_app().await;
    let user = app.sign_up("Grace").await;

    let wrong = app
        .graphql(
            None,
            SIGN_IN,
            json!({ "input": { "email": user.email, "password": "not the password" } }),
        )
        .await;
    assert_eq!(wrong.error_code(), Some("UNAUTHENTICATED"));
    assert_eq!(
        wrong.error_message(),
        Some("The email address or password is incorrect.")
    );

    // Email is case-insensitive.
    let right = app
        .graphql(
            None,
            SIGN_IN,
            json!({ "input": { "email": user.email.to_uppercase(), "password": user.password } }),
        )
        .await
        .ok();
    let token = right["signIn"]["token"].as_str().unwrap_or_default();
    assert_ne!(token, user.token, "each sign-in gets its own session");
    let me = app.graphql(Some(token), ME, json!({})).await.ok();
    assert_eq!(me["me"]["displayName"], "Grace");
}

#[tokio::test]
async fn the_same_email_cannot_sign_up_twice() {
    let app = spawn_app().await;
    let user = app.sign_up("Alan").await;
    let again = app
        .graphql(
            None,
            "mutation($input: SignUpInput!) { signUp(input: $input) { token } }",
            json!({ "input": { "email": user.email.to_uppercase(), "password": "another password", "displayName": "Alan 2" } }),
        )
        .await;
    assert_eq!(again.error_code(), Some("DUPLICATE"));
}

#[tokio::test]
async fn bad_sign_up_input_gets_a_clear_error() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({ "email": "not-an-email", "password": "long enough pw", "displayName": "X" }),
            "not a valid email",
        ),
        (
            json!({ "email": "x@example.org", "password": "short", "displayName": "X" }),
            "Passwords must be",
        ),
        (
            json!({ "email": "x@example.org", "password": "long enough pw", "displayName": "  " }),
            "display name",
        ),
    ];
    for (input, expected) in cases {
        let response = app
            .graphql(
                None,
                "mutation($input: SignUpInput!) { signUp(input: $input) { token } }",
                json!({ "input": input }),
            )
            .await;
        assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{input}");
        let message = response.error_message().unwrap_or_default();
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
    }
}

#[tokio::test]
async fn signing_out_revokes_the_session() {
    let app = spawn_app().await;
    let user = app.sign_up("Edsger").await;
    let out = app
        .graphql(Some(&user.token), "mutation { signOut }", json!({}))
        .await
        .ok();
    assert_eq!(out["signOut"], true);

    let me = app.graphql(Some(&user.token), ME, json!({})).await;
    assert_eq!(me.error_code(), Some("UNAUTHENTICATED"));
}

#[tokio::test]
async fn requests_without_a_token_are_unauthenticated() {
    let app = spawn_app().await;
    let anonymous = app.graphql(None, ME, json!({})).await;
    assert_eq!(anonymous.error_code(), Some("UNAUTHENTICATED"));
    let forged = app
        .graphql(
            Some("glab_forgedforgedforgedforgedforgedforged"),
            ME,
            json!({}),
        )
        .await;
    assert_eq!(forged.error_code(), Some("UNAUTHENTICATED"));
}

#[tokio::test]
async fn passwords_and_tokens_are_not_stored_in_clear() {
    let app = spawn_app().await;
    let user = app.sign_up("Barbara").await;
    if std::env::var("GRADELAB_TEST_DB").as_deref() == Ok("postgres") {
        return; // The SQLite file is the inspectable case.
    }
    let bytes = std::fs::read(app.data_dir.join("gradelab.db")).unwrap_or_default();
    let wal = std::fs::read(app.data_dir.join("gradelab.db-wal")).unwrap_or_default();
    let haystack = [bytes, wal].concat();
    let contains = |needle: &str| {
        haystack
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
    };
    assert!(contains(&user.email), "the database file was not inspected");
    assert!(!contains(&user.password));
    assert!(!contains(&user.token));
}
