//! Synthetic answers: the model writes answers at chosen score levels; they are stored
//! unconfirmed, with the suggested score apart from the teacher's, and stay out of training
//! until the teacher confirms them.

use std::time::Duration;

use gradelab_tests::fault_proxy::FaultServer;
use gradelab_tests::{spawn_app, spawn_app_with, TestApp};
use serde_json::{json, Value};

use crate::answers::guide_from_items;
use crate::guides::wait_for_job;
use crate::scripts::fixture;

const SYNTHETIC_FIELDS: &str =
    "level suggestedScore confirmed answer { id itemId text teacherScore split submissionId }";

async fn health_guide(app: &TestApp, token: &str) -> (Value, Value) {
    let items = String::from_utf8(fixture("health_items.jsonl")).unwrap_or_default();
    let guide = guide_from_items(app, token, "Health check", &items).await;
    let data = app
        .graphql(
            Some(token),
            "query($id: ID!) { guide(id: $id) { items { id label } } }",
            json!({ "id": guide }),
        )
        .await
        .ok();
    let item = data["guide"]["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["label"] == "1"))
        .map(|i| i["id"].clone())
        .unwrap_or_default();
    (guide, item)
}

async fn synthetic(
    app: &TestApp,
    token: &str,
    guide: &Value,
    confirmed: Option<bool>,
) -> Vec<Value> {
    let data = app
        .graphql(
            Some(token),
            &format!(
                "query($g: ID!, $c: Boolean) {{ syntheticAnswers(guideId: $g, confirmed: $c) {{ {SYNTHETIC_FIELDS} }} }}"
            ),
            json!({ "g": guide, "c": confirmed }),
        )
        .await
        .ok();
    data["syntheticAnswers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Answers with a teacher score: what training uses.
async fn scored(app: &TestApp, token: &str, guide: &Value) -> Value {
    let data = app
        .graphql(
            Some(token),
            "query($g: ID!) { answerSplitSummary(guideId: $g) { total scored } }",
            json!({ "g": guide }),
        )
        .await
        .ok();
    data["answerSplitSummary"].clone()
}

async fn synthesize(app: &TestApp, token: &str, guide: &Value, item: &Value) -> Value {
    let data = app
        .graphql(
            Some(token),
            "mutation($g: ID!, $items: [ID!]) { synthesizeAnswers(guideId: $g, levels: [FULL, PARTIAL, WRONG], perLevel: 1, itemIds: $items) { id kind status } }",
            json!({ "g": guide, "items": [item] }),
        )
        .await
        .ok();
    assert_eq!(data["synthesizeAnswers"]["kind"], "SYNTHESIS");
    data["synthesizeAnswers"]["id"].clone()
}

#[tokio::test]
async fn synthesis_requests_are_checked() {
    let app = spawn_app().await;
    let teacher = app.sign_up("Teacher").await;
    let (guide, _) = health_guide(&app, &teacher.token).await;
    for (levels, per_level, items) in [
        (json!([]), 1, Value::Null),
        (json!(["FULL"]), 0, Value::Null),
        (json!(["FULL"]), 11, Value::Null),
        (json!(["FULL"]), 1, json!(["999999"])),
    ] {
        let refused = app
            .graphql(
                Some(&teacher.token),
                "mutation($g: ID!, $l: [ScoreLevel!]!, $n: Int!, $i: [ID!]) { synthesizeAnswers(guideId: $g, levels: $l, perLevel: $n, itemIds: $i) { id } }",
                json!({ "g": guide, "l": levels, "n": per_level, "i": items }),
            )
            .await;
        assert_eq!(
            refused.error_code(),
            Some("BAD_USER_INPUT"),
            "{levels} {per_level} {items}"
        );
    }
}

#[tokio::test]
async fn synthetic_answers_keep_the_suggestion_apart_until_confirmed() {
    // A canned endpoint stands in for the model: each call gets the same reply, so the
    // suggested score (4 marks) is kept inside each level's band of the 2-mark maximum.
    let reply = json!({ "answers": [{ "answer": "Plants make food from light.", "score": 4 }] });
    let server = FaultServer::canned(reply.to_string()).await;
    let url = server.base_url.clone();
    let app = spawn_app_with(move |s| {
        s.llm.base_url = url;
        s.llm.max_retries = 0;
    })
    .await;
    let teacher = app.sign_up("Teacher").await;
    let (guide, item) = health_guide(&app, &teacher.token).await;
    let job = synthesize(&app, &teacher.token, &guide, &item).await;
    let job = wait_for_job(&app, &teacher.token, &job, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job:#}");
    // The same text three times is stored once.
    let all = synthetic(&app, &teacher.token, &guide, None).await;
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0]["level"], "FULL");
    assert_eq!(all[0]["suggestedScore"], 2.0);
    assert!(all[0]["answer"]["teacherScore"].is_null());
    assert_eq!(server.requests(), 3, "one call per level");
}

#[tokio::test]
async fn the_local_model_synthesises_one_answer_per_level() {
    // The local model is shared and answers one request at a time: wait for it.
    let app = spawn_app_with(|s| {
        s.llm.timeout_secs = 900;
        s.llm.max_retries = 1;
    })
    .await;
    let teacher = app.sign_up("Teacher").await;
    let (guide, item) = health_guide(&app, &teacher.token).await;
    let job = synthesize(&app, &teacher.token, &guide, &item).await;
    let job = wait_for_job(&app, &teacher.token, &job, Duration::from_secs(1700)).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job:#}");
    let unconfirmed = synthetic(&app, &teacher.token, &guide, Some(false)).await;
    assert_eq!(unconfirmed.len(), 3, "{unconfirmed:#?}");
    let mut levels: Vec<&str> = unconfirmed
        .iter()
        .filter_map(|s| s["level"].as_str())
        .collect();
    levels.sort_unstable();
    assert_eq!(levels, ["FULL", "PARTIAL", "WRONG"]);
    for s in &unconfirmed {
        assert_eq!(s["answer"]["itemId"], item);
        assert!(
            s["answer"]["teacherScore"].is_null(),
            "a suggestion is never the teacher's score"
        );
        assert!(!s["answer"]["text"]
            .as_str()
            .unwrap_or_default()
            .trim()
            .is_empty());
        let suggested = s["suggestedScore"].as_f64().unwrap_or(-1.0);
        match s["level"].as_str() {
            Some("FULL") => assert!(suggested >= 1.5, "{s}"),
            Some("WRONG") => assert!(suggested <= 0.5, "{s}"),
            _ => assert!((0.5..=1.5).contains(&suggested), "{s}"),
        }
    }
    // Excluded from training until confirmed: no answer counts as scored.
    assert_eq!(
        scored(&app, &teacher.token, &guide).await,
        json!({ "total": 3, "scored": 0 })
    );

    // The teacher accepts one suggestion and gives another a score of their own.
    let full = unconfirmed
        .iter()
        .find(|s| s["level"] == "FULL")
        .cloned()
        .unwrap_or_default();
    let wrong = unconfirmed
        .iter()
        .find(|s| s["level"] == "WRONG")
        .cloned()
        .unwrap_or_default();
    let accepted = app
        .graphql(
            Some(&teacher.token),
            &format!("mutation($id: ID!) {{ confirmSyntheticAnswer(answerId: $id) {{ {SYNTHETIC_FIELDS} }} }}"),
            json!({ "id": full["answer"]["id"] }),
        )
        .await
        .ok();
    assert_eq!(accepted["confirmSyntheticAnswer"]["confirmed"], true);
    assert_eq!(
        accepted["confirmSyntheticAnswer"]["answer"]["teacherScore"],
        full["suggestedScore"]
    );
    let own = app
        .graphql(
            Some(&teacher.token),
            &format!("mutation($id: ID!) {{ confirmSyntheticAnswer(answerId: $id, score: 0.5) {{ {SYNTHETIC_FIELDS} }} }}"),
            json!({ "id": wrong["answer"]["id"] }),
        )
        .await
        .ok();
    assert_eq!(own["confirmSyntheticAnswer"]["answer"]["teacherScore"], 0.5);
    assert_eq!(
        scored(&app, &teacher.token, &guide).await,
        json!({ "total": 3, "scored": 2 })
    );
    assert_eq!(
        synthetic(&app, &teacher.token, &guide, Some(false))
            .await
            .len(),
        1
    );
    let listed = app
        .graphql(
            Some(&teacher.token),
            "query($g: ID!) { submissions(guideId: $g, source: \"synthetic\") { source answers { id } } }",
            json!({ "g": guide }),
        )
        .await
        .ok();
    assert_eq!(
        listed["submissions"][0]["answers"].as_array().map(Vec::len),
        Some(3)
    );
}
