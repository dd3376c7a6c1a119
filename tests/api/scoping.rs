//! Every object belongs to a user; another user's object reads as not found.

use gradelab_tests::spawn_app;
use serde_json::json;

const CREATE: &str =
    "mutation($name: String!) { createApiToken(name: $name) { token apiToken { id name } } }";
const REVOKE: &str = "mutation($id: ID!) { revokeApiToken(id: $id) { id name } }";
const LIST: &str = "{ apiTokens { id name } }";

#[tokio::test]
async fn another_users_api_token_reads_as_not_found() {
    let app = spawn_app().await;
    let alice = app.sign_up("Alice").await;
    let bob = app.sign_up("Bob").await;

    let created = app
        .graphql(
            Some(&alice.token),
            CREATE,
            json!({ "name": "marking script" }),
        )
        .await
        .ok();
    let id = created["createApiToken"]["apiToken"]["id"].clone();

    let bobs_list = app.graphql(Some(&bob.token), LIST, json!({})).await.ok();
    assert_eq!(bobs_list["apiTokens"], json!([]));

    let stolen = app
        .graphql(Some(&bob.token), REVOKE, json!({ "id": id }))
        .await;
    assert_eq!(stolen.error_code(), Some("NOT_FOUND"));
    // Same answer as for an id that never existed.
    let missing = app
        .graphql(Some(&bob.token), REVOKE, json!({ "id": "999999" }))
        .await;
    assert_eq!(missing.error_code(), Some("NOT_FOUND"));

    // Alice's token is untouched.
    let alices_list = app.graphql(Some(&alice.token), LIST, json!({})).await.ok();
    assert_eq!(alices_list["apiTokens"][0]["name"], "marking script");
}

#[tokio::test]
async fn an_api_token_authenticates_until_revoked() {
    let app = spawn_app().await;
    let carol = app.sign_up("Carol").await;
    let created = app
        .graphql(Some(&carol.token), CREATE, json!({ "name": "ci" }))
        .await
        .ok();
    let secret = created["createApiToken"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let id = created["createApiToken"]["apiToken"]["id"].clone();

    let me = app
        .graphql(Some(&secret), "{ me { displayName } }", json!({}))
        .await
        .ok();
    assert_eq!(me["me"]["displayName"], "Carol");

    // The list never shows the secret again.
    let list = app.graphql(Some(&carol.token), LIST, json!({})).await.ok();
    assert!(!list.to_string().contains(&secret));

    app.graphql(Some(&carol.token), REVOKE, json!({ "id": id }))
        .await
        .ok();
    let after = app
        .graphql(Some(&secret), "{ me { displayName } }", json!({}))
        .await;
    assert_eq!(after.error_code(), Some("UNAUTHENTICATED"));
}
