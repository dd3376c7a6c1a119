//! Scored answers: CSV and JSONL import (multipart file and pasted text), splits, the split
//! summary, duplicate refusal, row errors with line numbers, SAF as a dataset, and scoping.
//! Helpers here are shared by `training`.

use std::path::PathBuf;

use gradelab_tests::{spawn_app, workspace_root, GqlResponse, TestApp};
use serde_json::{json, Value};

/// Fields of an import payload the tests look at.
pub const IMPORT_FIELDS: &str = "uploadId filename sha256 guideId imported skippedCount skipped { line message }
    bySplit { split count }
    summary { total scored bySplit { split count } items { itemId label train validation test unassigned scored meanNormalisedScore } }";

/// A fixture of `tests/fixtures/answers`.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(workspace_root().join("tests/fixtures/answers").join(name))
        .expect("fixture exists")
}

/// A GraphQL multipart request: `files` maps a variable (or a dotted path inside the
/// variables, e.g. `scripts.0.file`, which the caller sets to null) to (file name, bytes).
pub async fn multipart(
    app: &TestApp,
    token: &str,
    query: &str,
    mut variables: Value,
    files: &[(&str, &str, Vec<u8>)],
) -> GqlResponse {
    let mut map = serde_json::Map::new();
    for (index, (variable, _, _)) in files.iter().enumerate() {
        if !variable.contains('.') {
            variables[*variable] = Value::Null;
        }
        map.insert(index.to_string(), json!([format!("variables.{variable}")]));
    }
    let operations = json!({ "query": query, "variables": variables });
    let mut form = reqwest::multipart::Form::new()
        .text("operations", operations.to_string())
        .text("map", Value::Object(map).to_string());
    for (index, (_, filename, bytes)) in files.iter().enumerate() {
        form = form.part(
            index.to_string(),
            reqwest::multipart::Part::bytes(bytes.clone()).file_name((*filename).to_owned()),
        );
    }
    let response = app
        .client
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .expect("request reaches the server");
    let body: Value = response.json().await.expect("JSON response");
    GqlResponse {
        data: body.get("data").cloned().unwrap_or(Value::Null),
        errors: body
            .get("errors")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    }
}

/// Creates a guide from pasted items JSONL; returns its id.
pub async fn guide_from_items(app: &TestApp, token: &str, title: &str, items: &str) -> Value {
    let data = app
        .graphql(
            Some(token),
            "mutation($title: String!, $text: String) { createGuideFromItems(title: $title, text: $text) { id status items { id label maxMarks } } }",
            json!({ "title": title, "text": items }),
        )
        .await
        .ok();
    assert_eq!(data["createGuideFromItems"]["status"], "READY");
    data["createGuideFromItems"]["id"].clone()
}

/// Imports pasted answers text.
pub async fn import_text(
    app: &TestApp,
    token: &str,
    guide: &Value,
    text: &str,
    options: Value,
) -> GqlResponse {
    app.graphql(
        Some(token),
        &format!(
            "mutation($guide: ID!, $text: String!, $options: ImportAnswersOptions) {{
               importAnswersText(guideId: $guide, text: $text, options: $options) {{ {IMPORT_FIELDS} }} }}"
        ),
        json!({ "guide": guide, "text": text, "options": options }),
    )
    .await
}

/// Uploads an answers file.
pub async fn import_file(
    app: &TestApp,
    token: &str,
    guide: &Value,
    filename: &str,
    bytes: Vec<u8>,
    options: Value,
) -> GqlResponse {
    multipart(
        app,
        token,
        &format!(
            "mutation($guide: ID!, $file: Upload!, $options: ImportAnswersOptions) {{
               importAnswers(guideId: $guide, file: $file, options: $options) {{ {IMPORT_FIELDS} }} }}"
        ),
        json!({ "guide": guide, "options": options }),
        &[("file", filename, bytes)],
    )
    .await
}

/// The split summary of a guide.
pub async fn summary(app: &TestApp, token: &str, guide: &Value) -> GqlResponse {
    app.graphql(
        Some(token),
        "query($guide: ID!) { answerSplitSummary(guideId: $guide) { total scored bySplit { split count }
           items { label train validation test unassigned scored } } }",
        json!({ "guide": guide }),
    )
    .await
}

/// Count of a split in a `bySplit` list.
pub fn split_count(by_split: &Value, split: &str) -> i64 {
    by_split
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["split"] == split)
        .and_then(|s| s["count"].as_i64())
        .unwrap_or(0)
}

/// `../shared/datasets` (or `$GRADELAB_DATASETS`).
pub fn datasets_dir() -> PathBuf {
    std::env::var_os("GRADELAB_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/datasets"))
}

/// SAF's `items.jsonl` and `answers.jsonl` lines for the given items, read in place, with at
/// most `per_item_split` answers per item and SAF split (the first ones in file order).
pub fn saf_subset(items: &[&str], per_item_split: usize) -> (String, String) {
    let dir = datasets_dir().join("saf");
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name)).unwrap_or_else(|err| {
            panic!(
                "{}: {err} (set GRADELAB_DATASETS)",
                dir.join(name).display()
            )
        })
    };
    let items_text = read("items.jsonl");
    let answers_text = read("answers.jsonl");
    let wanted = |v: &Value, key: &str| items.iter().any(|i| v[key] == *i);
    let item_out: Vec<String> = items_text
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| wanted(&v, "id")))
        .map(str::to_owned)
        .collect();
    let mut counts = std::collections::HashMap::new();
    let answer_out: Vec<String> = answers_text
        .lines()
        .filter(|l| {
            let Ok(v) = serde_json::from_str::<Value>(l) else {
                return false;
            };
            if !wanted(&v, "item_id") {
                return false;
            }
            let key = format!("{}|{}", v["item_id"], v["split"]);
            let n = counts.entry(key).or_insert(0usize);
            *n += 1;
            *n <= per_item_split
        })
        .map(str::to_owned)
        .collect();
    (item_out.join("\n") + "\n", answer_out.join("\n") + "\n")
}

fn label_row<'a>(summary: &'a Value, label: &str) -> &'a Value {
    summary["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["label"] == label))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn csv_and_jsonl_files_import_with_their_splits_and_a_summary() {
    let app = spawn_app().await;
    let teacher = app.sign_up("Tess").await;
    let items = String::from_utf8(fixture("science_items.jsonl")).unwrap_or_default();
    let guide = guide_from_items(&app, &teacher.token, "Science mock", &items).await;

    // A CSV file through the multipart Upload: quoted commas, a line break inside a quoted
    // field, doubled quotes; rows without a split get one from the seeded stratified split.
    let csv = import_file(
        &app,
        &teacher.token,
        &guide,
        "science_scored.csv",
        fixture("science_scored.csv"),
        json!({ "seed": 7 }),
    )
    .await
    .ok();
    let csv = &csv["importAnswers"];
    assert_eq!(csv["imported"], 18);
    assert_eq!(csv["skippedCount"], 0);
    assert_eq!(csv["filename"], "science_scored.csv");
    assert_eq!(csv["sha256"].as_str().map(str::len), Some(64));
    let by_split = &csv["bySplit"];
    assert_eq!(
        split_count(by_split, "TRAIN")
            + split_count(by_split, "VALIDATION")
            + split_count(by_split, "TEST"),
        18,
        "every row has a split: {by_split}"
    );
    assert!(
        split_count(by_split, "TRAIN") >= 6 + 2,
        "6 rows say train, some of the 9 open ones join: {by_split}"
    );
    assert!(split_count(by_split, "VALIDATION") >= 2, "{by_split}");

    // The multi-line answer kept its line break and the doubled quotes became one.
    let listed = app
        .graphql(
            Some(&teacher.token),
            "query($guide: ID!) { answers(guideId: $guide, first: 100) { totalCount edges { node { studentRef text teacherScore split itemId } } } }",
            json!({ "guide": guide }),
        )
        .await
        .ok();
    let nodes: Vec<&Value> = listed["answers"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["node"])
        .collect();
    assert_eq!(listed["answers"]["totalCount"], 18);
    assert!(nodes.iter().any(
        |n| n["text"] == "CO2 goes in; O2 comes out\n(through the stomata)" && n["split"] == "TEST"
    ));
    assert!(nodes
        .iter()
        .any(|n| n["text"] == "\"Dark\" stops the plant."));

    // JSONL as pasted text, with other column names and a "dev" split; a numeric string score.
    let jsonl = String::from_utf8(fixture("science_scored.jsonl")).unwrap_or_default();
    let pasted = import_text(&app, &teacher.token, &guide, &jsonl, json!({}))
        .await
        .ok();
    let pasted = &pasted["importAnswersText"];
    assert_eq!(pasted["imported"], 5);
    assert_eq!(pasted["filename"], "pasted.jsonl");
    let summary = &pasted["summary"];
    assert_eq!(summary["total"], 23);
    assert_eq!(summary["scored"], 23);
    let item_1a = label_row(summary, "1a");
    let counted = ["train", "validation", "test", "unassigned"]
        .iter()
        .map(|k| item_1a[*k].as_i64().unwrap_or(0))
        .sum::<i64>();
    assert_eq!(counted, 8, "6 CSV + 2 JSONL answers to 1a: {item_1a}");
    assert_eq!(item_1a["unassigned"], 0);
    assert!(
        item_1a["validation"].as_i64().unwrap_or(0) >= 2,
        "S03 and the dev row: {item_1a}"
    );
    let item_2 = label_row(summary, "2");
    assert!(
        (item_2["meanNormalisedScore"].as_f64().unwrap_or(-1.0) - 4.0 / 8.0).abs() < 1e-9,
        "{item_2}"
    );

    // Filters: one split of one item.
    let item_id = item_1a["itemId"].clone();
    let validation = app
        .graphql(
            Some(&teacher.token),
            "query($guide: ID!, $item: ID) { answers(guideId: $guide, split: VALIDATION, itemId: $item) { totalCount edges { node { split itemId } } } }",
            json!({ "guide": guide, "item": item_id }),
        )
        .await
        .ok();
    assert_eq!(validation["answers"]["totalCount"], item_1a["validation"]);
    for edge in validation["answers"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
    {
        assert_eq!(edge["node"]["split"], "VALIDATION");
        assert_eq!(edge["node"]["itemId"], item_id);
    }
}

#[tokio::test]
async fn an_identical_file_is_a_duplicate_and_imports_nothing_twice() {
    let app = spawn_app().await;
    let teacher = app.sign_up("Dora").await;
    let items = String::from_utf8(fixture("science_items.jsonl")).unwrap_or_default();
    let guide = guide_from_items(&app, &teacher.token, "Science", &items).await;
    let bytes = fixture("science_scored.csv");
    import_file(
        &app,
        &teacher.token,
        &guide,
        "scores.csv",
        bytes.clone(),
        json!({}),
    )
    .await
    .ok();

    let again = import_file(
        &app,
        &teacher.token,
        &guide,
        "renamed.csv",
        bytes.clone(),
        json!({}),
    )
    .await;
    assert_eq!(again.error_code(), Some("DUPLICATE"), "{:?}", again.errors);
    let message = again.error_message().unwrap_or_default();
    assert!(
        message.contains("scores.csv") && message.contains("18 answers"),
        "{message}"
    );
    // Pasting the same bytes is the same file.
    let pasted = import_text(
        &app,
        &teacher.token,
        &guide,
        std::str::from_utf8(&bytes).unwrap_or_default(),
        json!({}),
    )
    .await;
    assert_eq!(pasted.error_code(), Some("DUPLICATE"));
    let after = summary(&app, &teacher.token, &guide).await.ok();
    assert_eq!(
        after["answerSplitSummary"]["total"], 18,
        "nothing imported twice"
    );

    // The same items make the same guide: refused too.
    let twice = app
        .graphql(
            Some(&teacher.token),
            "mutation($text: String) { createGuideFromItems(title: \"Again\", text: $text) { id } }",
            json!({ "text": items }),
        )
        .await;
    assert_eq!(twice.error_code(), Some("DUPLICATE"));

    // Another teacher may import the same file into their own guide.
    let other = app.sign_up("Omar").await;
    let their_guide = guide_from_items(&app, &other.token, "Science", &items).await;
    let theirs = import_file(
        &app,
        &other.token,
        &their_guide,
        "scores.csv",
        bytes,
        json!({}),
    )
    .await
    .ok();
    assert_eq!(theirs["importAnswers"]["imported"], 18);

    // Once the guide is deleted its answers are gone: the same files import afresh.
    let deleted = app
        .graphql(
            Some(&teacher.token),
            "mutation($id: ID!) { deleteGuide(id: $id) }",
            json!({ "id": guide }),
        )
        .await;
    assert!(deleted.errors.is_empty(), "{:?}", deleted.errors);
    let fresh_guide = guide_from_items(&app, &teacher.token, "Science", &items).await;
    let fresh = import_file(
        &app,
        &teacher.token,
        &fresh_guide,
        "scores.csv",
        fixture("science_scored.csv"),
        json!({}),
    )
    .await;
    assert!(fresh.errors.is_empty(), "{:?}", fresh.errors);
    assert_eq!(fresh.ok()["importAnswers"]["imported"], 18);
}

#[tokio::test]
async fn bad_rows_import_nothing_and_are_named_by_line_unless_skipped() {
    let app = spawn_app().await;
    let teacher = app.sign_up("Bea").await;
    let items = String::from_utf8(fixture("science_items.jsonl")).unwrap_or_default();
    let guide = guide_from_items(&app, &teacher.token, "Science", &items).await;
    let bytes = fixture("science_bad_rows.csv");

    let refused = import_file(
        &app,
        &teacher.token,
        &guide,
        "bad.csv",
        bytes.clone(),
        json!({}),
    )
    .await;
    assert_eq!(refused.error_code(), Some("BAD_USER_INPUT"));
    let error = &refused.errors[0];
    let lines: Vec<i64> = error["extensions"]["rowErrors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["line"].as_i64())
        .collect();
    assert_eq!(lines, vec![3, 5, 6, 7, 8], "{error}");
    assert_eq!(error["extensions"]["rowErrorCount"], 5);
    let messages = error["extensions"]["rowErrors"].to_string();
    for expected in [
        "unknown item “9”",
        "above item 1b's maximum of 3 marks",
        "the answer is empty",
        "“one” is not a number",
        "unknown split “holdout”",
    ] {
        assert!(messages.contains(expected), "{expected:?} in {messages}");
    }
    let message = refused.error_message().unwrap_or_default();
    assert!(
        message.contains("nothing was imported") && message.contains("line 3"),
        "{message}"
    );
    let after = summary(&app, &teacher.token, &guide).await.ok();
    assert_eq!(
        after["answerSplitSummary"]["total"], 0,
        "a file with bad rows imports nothing"
    );

    // The refused file was not recorded: with skipBadRows it imports its two good rows.
    let skipped = import_file(
        &app,
        &teacher.token,
        &guide,
        "bad.csv",
        bytes,
        json!({ "skipBadRows": true }),
    )
    .await
    .ok();
    let skipped = &skipped["importAnswers"];
    assert_eq!(skipped["imported"], 2);
    assert_eq!(skipped["skippedCount"], 5);
    assert_eq!(skipped["skipped"][0]["line"], 3);
    assert_eq!(skipped["summary"]["total"], 2);

    // A file without rows, and a header without the needed columns.
    let empty = import_text(
        &app,
        &teacher.token,
        &guide,
        "item,answer,score\n",
        json!({}),
    )
    .await;
    assert_eq!(empty.error_code(), Some("BAD_USER_INPUT"));
    let no_score = import_text(
        &app,
        &teacher.token,
        &guide,
        "item,answer\n2,Ohm\n",
        json!({}),
    )
    .await;
    assert_eq!(no_score.error_code(), Some("BAD_USER_INPUT"));
    assert!(no_score.errors[0]["extensions"]["rowErrors"][0]["message"]
        .as_str()
        .is_some_and(|m| m.contains("no score")));
}

#[tokio::test]
async fn a_saf_subset_becomes_a_guide_with_answers_and_a_carved_validation_split() {
    let app = spawn_app().await;
    let teacher = app.sign_up("Saf").await;
    let (items, answers) = saf_subset(&["4.13", "6.2_IPP", "2.3_DLL_v1.1"], 40);
    let imported = multipart(
        &app,
        &teacher.token,
        &format!(
            "mutation($items: Upload!, $answers: Upload!, $options: ImportAnswersOptions) {{
               importDataset(title: \"SAF subset\", items: $items, answers: $answers, options: $options) {{
                 guide {{ id status items {{ label maxMarks }} }} answers {{ {IMPORT_FIELDS} }} }} }}"
        ),
        json!({ "options": { "validationFromTrain": 0.25, "seed": 11 } }),
        &[("items", "items.jsonl", items.into_bytes()), ("answers", "answers.jsonl", answers.into_bytes())],
    )
    .await
    .ok();
    let dataset = &imported["importDataset"];
    assert_eq!(dataset["guide"]["status"], "READY");
    let labels: Vec<&str> = dataset["guide"]["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["label"].as_str())
        .collect();
    assert_eq!(labels, vec!["2.3_DLL_v1.1", "4.13", "6.2_IPP"]);
    let payload = &dataset["answers"];
    // 3 items × (40 train + up to 40 unseen-answers test rows).
    let by_split = &payload["bySplit"];
    assert_eq!(
        split_count(by_split, "TRAIN") + split_count(by_split, "VALIDATION"),
        120
    );
    assert_eq!(
        split_count(by_split, "VALIDATION"),
        30,
        "a quarter of train, stratified: {by_split}"
    );
    assert!(
        split_count(by_split, "TEST") > 0,
        "test_unseen_answers → test"
    );
    for item in payload["summary"]["items"].as_array().into_iter().flatten() {
        let validation = item["validation"].as_i64().unwrap_or(0);
        assert!(
            (9..=11).contains(&validation),
            "every item gets its share of validation: {item}"
        );
    }
}

#[tokio::test]
async fn another_users_guide_and_answers_read_as_not_found() {
    let app = spawn_app().await;
    let alice = app.sign_up("Alice").await;
    let bob = app.sign_up("Bob").await;
    let items = String::from_utf8(fixture("science_items.jsonl")).unwrap_or_default();
    let guide = guide_from_items(&app, &alice.token, "Alice's science", &items).await;
    let imported = import_file(
        &app,
        &alice.token,
        &guide,
        "s.csv",
        fixture("science_scored.csv"),
        json!({}),
    )
    .await
    .ok();
    assert_eq!(imported["importAnswers"]["imported"], 18);
    let listed = app
        .graphql(
            Some(&alice.token),
            "query($g: ID!) { answers(guideId: $g, first: 1) { edges { node { id } } } }",
            json!({ "g": guide }),
        )
        .await
        .ok();
    let answer_id = listed["answers"]["edges"][0]["node"]["id"].clone();

    let into_hers = import_text(
        &app,
        &bob.token,
        &guide,
        "item,answer,score\n2,Ohm,1\n",
        json!({}),
    )
    .await;
    assert_eq!(into_hers.error_code(), Some("NOT_FOUND"));
    let her_summary = summary(&app, &bob.token, &guide).await;
    assert_eq!(her_summary.error_code(), Some("NOT_FOUND"));
    let her_list = app
        .graphql(
            Some(&bob.token),
            "query($g: ID!) { answers(guideId: $g) { totalCount } }",
            json!({ "g": guide }),
        )
        .await;
    assert_eq!(her_list.error_code(), Some("NOT_FOUND"));
    let her_answer = app
        .graphql(
            Some(&bob.token),
            "query($id: ID!) { answer(id: $id) { text } }",
            json!({ "id": answer_id }),
        )
        .await;
    assert_eq!(her_answer.error_code(), Some("NOT_FOUND"));
    let resplit = app
        .graphql(
            Some(&bob.token),
            "mutation($g: ID!) { resplitAnswers(guideId: $g) { total } }",
            json!({ "g": guide }),
        )
        .await;
    assert_eq!(resplit.error_code(), Some("NOT_FOUND"));
    let anonymous = summary(&app, "", &guide).await;
    assert_eq!(anonymous.error_code(), Some("UNAUTHENTICATED"));

    // Alice's answers are untouched.
    let hers = summary(&app, &alice.token, &guide).await.ok();
    assert_eq!(hers["answerSplitSummary"]["total"], 18);
}

#[tokio::test]
async fn a_seeded_resplit_is_stratified_and_repeatable() {
    let app = spawn_app().await;
    let teacher = app.sign_up("Rae").await;
    let (items, answers) = saf_subset(&["4.13", "12.3_PE"], 50);
    let guide = guide_from_items(&app, &teacher.token, "SAF two items", &items).await;
    import_text(&app, &teacher.token, &guide, &answers, json!({}))
        .await
        .ok();

    const RESPLIT: &str = "mutation($g: ID!, $seed: Int!) { resplitAnswers(guideId: $g, fractions: { train: 0.5, validation: 0.25, test: 0.25 }, seed: $seed) {
        total bySplit { split count } items { label train validation test } } }";
    let first = app
        .graphql(
            Some(&teacher.token),
            RESPLIT,
            json!({ "g": guide, "seed": 3 }),
        )
        .await
        .ok();
    let split = &first["resplitAnswers"];
    let total = split["total"].as_i64().unwrap_or(0);
    assert!(total > 80, "{split}");
    let train = split_count(&split["bySplit"], "TRAIN");
    assert!((train - total / 2).abs() <= 1, "{split}");
    for item in split["items"].as_array().into_iter().flatten() {
        let n = ["train", "validation", "test"]
            .iter()
            .map(|k| item[*k].as_i64().unwrap_or(0))
            .sum::<i64>();
        let validation = item["validation"].as_i64().unwrap_or(0);
        assert!(
            (validation - n / 4).abs() <= 2,
            "each item split in proportion: {item}"
        );
    }
    let ids_in = |data: &Value| data.to_string();
    let again = app
        .graphql(
            Some(&teacher.token),
            RESPLIT,
            json!({ "g": guide, "seed": 3 }),
        )
        .await
        .ok();
    assert_eq!(
        ids_in(&again["resplitAnswers"]),
        ids_in(split),
        "same seed, same split"
    );
    let v3 = validation_ids(&app, &teacher.token, &guide).await;
    app.graphql(
        Some(&teacher.token),
        RESPLIT,
        json!({ "g": guide, "seed": 4 }),
    )
    .await
    .ok();
    let v4 = validation_ids(&app, &teacher.token, &guide).await;
    assert_ne!(v3, v4, "another seed, another split");
}

async fn validation_ids(app: &TestApp, token: &str, guide: &Value) -> Value {
    app.graphql(
        Some(token),
        "query($g: ID!) { answers(guideId: $g, split: VALIDATION, first: 500) { edges { node { id } } } }",
        json!({ "g": guide }),
    )
    .await
    .ok()
}
