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
