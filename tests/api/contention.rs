//! Concurrent writers: many guides created at once, each extracted by a background job
//! while the others write, on the same SQLite file. A job that hits a momentary write
//! conflict runs again instead of failing.

use std::time::Duration;

use futures::future::join_all;
use gradelab_tests::spawn_app;
use serde_json::json;

const CREATE: &str = "mutation($title: String!, $text: String!) {
    createGuideFromText(title: $title, text: $text, method: PARSER) { __typename } }";
const GUIDES: &str = "{ guides(first: 50) { edges { node { itemCount status extractionJob { status error attempts } } } } }";

#[tokio::test]
async fn guides_created_all_at_once_are_all_extracted() {
    let app = spawn_app().await;
    let teacher = app.sign_up("Busy").await;
    let count = 30;
    let created = join_all((0..count).map(|g| {
        let text: String = (1..=5)
            .map(|q| {
                format!(
                    "Question {q} (2 marks)\nExplain idea {q} of topic {g}.\n\
                     Model answer: idea {q} follows from its cause and has an effect.\n\
                     Marking criteria:\n1) names the cause (1)\n2) names the effect (1)\n\n"
                )
            })
            .collect();
        let app = &app;
        let token = teacher.token.clone();
        async move {
            app.graphql(
                Some(&token),
                CREATE,
                json!({ "title": format!("Guide {g}"), "text": text }),
            )
            .await
        }
    }))
    .await;
    for response in created {
        assert!(response.errors.is_empty(), "{:?}", response.errors);
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let data = app
            .graphql(Some(&teacher.token), GUIDES, json!({}))
            .await
            .ok();
        let nodes: Vec<_> = data["guides"]["edges"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["node"].clone())
            .collect();
        assert_eq!(nodes.len(), count);
        let failed: Vec<_> = nodes
            .iter()
            .filter(|n| n["extractionJob"]["status"] == "FAILED")
            .collect();
        assert!(failed.is_empty(), "extraction failed: {failed:?}");
        if nodes.iter().all(|n| n["itemCount"] == 5) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all extracted: {nodes:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
