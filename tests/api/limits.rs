//! GraphQL endpoint limits and bad requests.

use gradelab_tests::{spawn_app, spawn_app_with};
use serde_json::json;

#[tokio::test]
async fn malformed_graphql_gets_an_error_not_a_crash() {
    let app = spawn_app().await;
    let response = app.graphql(None, "{ me { ", json!({})).await;
    assert!(!response.errors.is_empty());
    let health = app
        .graphql(None, "{ health { version database } }", json!({}))
        .await
        .ok();
    assert!(health["health"]["version"].is_string());
}

#[tokio::test]
async fn overly_deep_queries_are_refused() {
    let app = spawn_app_with(|settings| settings.graphql.max_depth = 3).await;
    let deep = "{ __schema { types { fields { type { ofType { name } } } } } }";
    let response = app.graphql(None, deep, json!({})).await;
    let message = response.error_message().unwrap_or_default().to_lowercase();
    assert!(message.contains("nested too deep"), "{message}");
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let app = spawn_app_with(|settings| settings.server.max_body_bytes = 4096).await;
    let padding = "x".repeat(10_000);
    let response = app
        .client
        .post(format!("{}/graphql", app.base_url))
        .json(&json!({ "query": "{ health { version } }", "variables": { "pad": padding } }))
        .send()
        .await
        .expect("server answers");
    assert_eq!(response.status().as_u16(), 413);
}

#[tokio::test]
async fn graphiql_is_served_on_get() {
    let app = spawn_app().await;
    let page = app
        .client
        .get(format!("{}/graphql", app.base_url))
        .send()
        .await
        .expect("server answers");
    assert!(page.status().is_success());
    let body = page.text().await.unwrap_or_default();
    assert!(body.contains("graphiql"), "GraphiQL page expected");
}

/// Amplification attacks are refused by the limits with a coded error, cheaply, and the
/// server keeps answering.
#[tokio::test]
async fn amplification_attacks_are_refused_with_a_code_and_the_server_stays_responsive() {
    let app = spawn_app().await;
    let user = app.sign_up("Mallory").await;
    let token = Some(user.token.as_str());

    // Alias amplification: one field asked for thousands of times in one document.
    let aliases: String = (0..3_000).map(|i| format!("a{i}: me {{ id }} ")).collect();
    let response = app
        .graphql(token, &format!("{{ {aliases} }}"), json!({}))
        .await;
    assert_eq!(response.error_code(), Some("GRAPHQL_VALIDATION_FAILED"));
    assert!(response.data.is_null(), "nothing was resolved");

    // Introspection abuse: the classic deep introspection query, at the default limits.
    let deep = "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } } } } }";
    let response = app.graphql(None, deep, json!({})).await;
    assert_eq!(
        response.error_code(),
        Some("GRAPHQL_VALIDATION_FAILED"),
        "{:?}",
        response.errors
    );

    // Fragment cycles never reach execution (the parser already refuses them).
    let cycle = "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }";
    let response = app.graphql(token, cycle, json!({})).await;
    assert!(
        matches!(
            response.error_code(),
            Some("GRAPHQL_PARSE_FAILED" | "GRAPHQL_VALIDATION_FAILED")
        ),
        "{:?}",
        response.errors
    );

    // Batches are not accepted at all: one operation per request.
    let batch: Vec<_> = (0..100)
        .map(|_| json!({ "query": "{ me { id } }" }))
        .collect();
    let refused = app
        .client
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(&user.token)
        .json(&batch)
        .send()
        .await
        .expect("server answers");
    assert_eq!(refused.status().as_u16(), 400);
    let body: serde_json::Value = refused.json().await.expect("a GraphQL error body");
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");

    // A variable of the wrong type or out of range is the caller's mistake, with a code.
    let response = app
        .graphql(
            token,
            "query($limit: Int!) { jobs(limit: $limit) { id } }",
            json!({ "limit": 1_000_000 }),
        )
        .await;
    assert_eq!(response.error_code(), Some("BAD_USER_INPUT"));

    // Unparsable documents say so.
    let response = app.graphql(token, "{ me { ", json!({})).await;
    assert_eq!(response.error_code(), Some("GRAPHQL_PARSE_FAILED"));

    let health = app
        .graphql(None, "{ health { version } }", json!({}))
        .await
        .ok();
    assert!(health["health"]["version"].is_string());
}
