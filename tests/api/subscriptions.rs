//! Subscriptions over a real WebSocket (graphql-transport-ws).

use gradelab_tests::spawn_app;
use serde_json::json;

const EVENTS: &str = "subscription { accountEvents { kind detail at } }";

#[tokio::test]
async fn account_events_arrive_over_a_websocket_for_their_owner_only() {
    let app = spawn_app().await;
    let dana = app.sign_up("Dana").await;
    let eve = app.sign_up("Eve").await;

    let mut danas = app
        .subscribe(Some(&dana.token), EVENTS)
        .await
        .expect("subscribed");
    let mut eves = app
        .subscribe(Some(&eve.token), EVENTS)
        .await
        .expect("subscribed");
    // Give the server a moment to register both streams before anything happens.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    app.graphql(
        Some(&dana.token),
        "mutation { createApiToken(name: \"grading bot\") { token } }",
        json!({}),
    )
    .await
    .ok();

    let event = danas.next_data(10).await.expect("Dana gets her event");
    assert_eq!(event["data"]["accountEvents"]["kind"], "API_TOKEN_CREATED");
    assert_eq!(event["data"]["accountEvents"]["detail"], "grading bot");

    // Eve sees nothing of Dana's account.
    assert!(eves.next_data(1).await.is_err());
}

#[tokio::test]
async fn a_websocket_with_a_bad_token_is_refused() {
    let app = spawn_app().await;
    let refused = app.subscribe(Some("glab_not-a-real-token"), EVENTS).await;
    assert!(
        refused.is_err(),
        "connection_init with a bad token must fail"
    );
}

#[tokio::test]
async fn an_anonymous_subscription_gets_unauthenticated() {
    let app = spawn_app().await;
    let mut anonymous = app.subscribe(None, EVENTS).await.expect("socket opens");
    let message = anonymous.next_message().await.expect("a reply");
    // An execution error arrives as a `next` whose payload carries `errors`.
    assert_eq!(message["type"], "next");
    assert_eq!(
        message["payload"]["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );
    assert!(message["payload"]["data"].is_null());
}
