//! Marking guides: upload, duplicate refusal, scoping, extraction jobs, teacher edits,
//! and nothing left behind on failure. Helpers here are shared by `guides_fixtures` and
//! `guides_hostile`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gradelab_tests::{spawn_app_with, workspace_root, GqlResponse, TestApp};
use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::{json, Value};

/// Fields of a guide the tests look at.
pub const GUIDE_FIELDS: &str =
    "id title filename mime status error contentSha256 itemCount totalMarks createdAt
    items { id label position question modelAnswer maxMarks edited rubric { description marks } }";

const UPLOAD: &str = "mutation($file: Upload!, $title: String, $method: ExtractionMethod!) {
  uploadGuide(file: $file, title: $title, method: $method) { guide { id title status filename mime } job { id status } } }";

const FROM_TEXT: &str = "mutation($title: String!, $text: String!, $method: ExtractionMethod!) {
  createGuideFromText(title: $title, text: $text, method: $method) { guide { id title status } job { id status } } }";

/// A fixture guide file.
pub fn fixture(name: &str) -> PathBuf {
    workspace_root().join("tests/fixtures/guides").join(name)
}

/// Starts a server and returns it with its database URL (SQLite or PostgreSQL).
pub async fn spawn_with_db(
    configure: impl FnOnce(&mut gradelab::config::Settings),
) -> (TestApp, String) {
    let mut url = String::new();
    let app = spawn_app_with(|settings| {
        configure(settings);
        url = settings.database_url();
    })
    .await;
    (app, url)
}

/// Uploads a file through the GraphQL multipart request spec.
pub async fn upload(
    app: &TestApp,
    token: &str,
    filename: &str,
    bytes: Vec<u8>,
    method: &str,
) -> GqlResponse {
    let operations = json!({
        "query": UPLOAD,
        "variables": { "file": null, "title": null, "method": method },
    });
    let form = reqwest::multipart::Form::new()
        .text("operations", operations.to_string())
        .text("map", json!({ "0": ["variables.file"] }).to_string())
        .part(
            "0",
            reqwest::multipart::Part::bytes(bytes).file_name(filename.to_owned()),
        );
    let response = app
        .client
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .expect("request reaches the server");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("HTTP {status}: body is not JSON: {text:?}"));
    GqlResponse {
        data: body.get("data").cloned().unwrap_or(Value::Null),
        errors: body
            .get("errors")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    }
}

/// Uploads a fixture file.
pub async fn upload_fixture(app: &TestApp, token: &str, name: &str, method: &str) -> GqlResponse {
    let bytes = std::fs::read(fixture(name)).expect("fixture exists");
    upload(app, token, name, bytes, method).await
}

/// Creates a guide from pasted text.
pub async fn from_text(
    app: &TestApp,
    token: &str,
    title: &str,
    text: &str,
    method: &str,
) -> GqlResponse {
    app.graphql(
        Some(token),
        FROM_TEXT,
        json!({ "title": title, "text": text, "method": method }),
    )
    .await
}

/// Polls a job until it finishes; returns it.
pub async fn wait_for_job(app: &TestApp, token: &str, job_id: &Value, timeout: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let job = app
            .graphql(
                Some(token),
                "query($id: ID!) { job(id: $id) { id status progress error result guideId } }",
                json!({ "id": job_id }),
            )
            .await
            .ok();
        let status = job["job"]["status"].as_str().unwrap_or_default().to_owned();
        if matches!(status.as_str(), "SUCCEEDED" | "FAILED" | "CANCELLED") {
            return job["job"].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {job_id} still {status} after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fetches a guide.
pub async fn guide(app: &TestApp, token: &str, id: &Value) -> GqlResponse {
    app.graphql(
        Some(token),
        &format!("query($id: ID!) {{ guide(id: $id) {{ {GUIDE_FIELDS} }} }}"),
        json!({ "id": id }),
    )
    .await
}

/// Uploads a fixture and waits for its extraction; returns the guide.
pub async fn extract_fixture(
    app: &TestApp,
    token: &str,
    name: &str,
    method: &str,
    timeout: Duration,
) -> (Value, Value) {
    let created = upload_fixture(app, token, name, method).await.ok();
    let payload = &created["uploadGuide"];
    let job = wait_for_job(app, token, &payload["job"]["id"], timeout).await;
    let guide = guide(app, token, &payload["guide"]["id"]).await.ok();
    (guide["guide"].clone(), job)
}

/// Regular files under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Files in the server's blob store.
pub fn stored_files(app: &TestApp) -> usize {
    files_under(&app.data_dir.join("blobs")).len()
}

/// Row counts of the guide tables.
#[derive(Debug, PartialEq, Eq)]
pub struct Counts {
    /// `guides` rows.
    pub guides: i64,
    /// `guide_items` rows.
    pub items: i64,
    /// `uploads` rows.
    pub uploads: i64,
}

/// Counts rows directly in the server's database.
pub async fn counts(db_url: &str) -> Counts {
    let db = Database::connect(db_url).await.expect("database reachable");
    let mut values = Vec::new();
    for table in ["guides", "guide_items", "uploads"] {
        let row = db
            .query_one(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT COUNT(*) AS n FROM {table}"),
            ))
            .await
            .expect("count query")
            .expect("one row");
        values.push(row.try_get::<i64>("", "n").expect("a count"));
    }
    let _ = db.close().await;
    Counts {
        guides: values[0],
        items: values[1],
        uploads: values[2],
    }
}

const WELL_FORMED: &str = "Year 9 Chemistry quiz\n\nQuestion 1\nName the gas produced when magnesium reacts with hydrochloric acid. [1 mark]\nModel answer: Hydrogen.\nMark scheme:\n- hydrogen (1 mark)\n\nQuestion 2\nExplain why the reaction speeds up when the acid is warmed. [3 marks]\nModel answer: Particles move faster, collide more often and more collisions have enough energy to react.\nMark scheme:\n- particles move faster (1 mark)\n- more frequent collisions (1 mark)\n- more collisions exceed the activation energy (1 mark)\n\nQuestion 3\nGive one safety precaution. [1 mark]\nModel answer: Wear eye protection.\nMark scheme:\n- eye protection or gloves (1 mark)\n";

const JOB_WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn an_uploaded_docx_guide_is_extracted_by_a_background_job() {
    let (app, db_url) = spawn_with_db(|_| {}).await;
    let alice = app.sign_up("Alice").await;
    let created = upload_fixture(&app, &alice.token, "biology_mock_2026.docx", "PARSER")
        .await
        .ok();
    let payload = &created["uploadGuide"];
    assert_eq!(payload["guide"]["filename"], "biology_mock_2026.docx");
    assert_eq!(
        payload["guide"]["mime"],
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    );
    let job = wait_for_job(&app, &alice.token, &payload["job"]["id"], JOB_WAIT).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job:#}");
    assert_eq!(job["result"]["method"], "parser");

    let guide = guide(&app, &alice.token, &payload["guide"]["id"])
        .await
        .ok()["guide"]
        .clone();
    assert_eq!(guide["status"], "READY");
    assert_eq!(
        guide["title"],
        "Biology mock examination 2026 — Mark scheme"
    );
    let labels: Vec<&str> = guide["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["label"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(labels, ["1(a)", "1(b)", "2", "3", "4", "5"]);
    assert_eq!(guide["totalMarks"], 16.0);
    assert_eq!(
        guide["items"][1]["rubric"].as_array().map(Vec::len),
        Some(3)
    );

    // The job reported its progress in its event log.
    let events = app
        .graphql(
            Some(&alice.token),
            "query($id: ID!) { jobEvents(jobId: $id) { kind payload } }",
            json!({ "id": payload["job"]["id"] }),
        )
        .await
        .ok();
    let kinds: Vec<&str> = events["jobEvents"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["kind"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(kinds.first(), Some(&"queued"));
    assert!(kinds.contains(&"progress"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"succeeded"));

    // The raw file is stored once, content-addressed.
    assert_eq!(stored_files(&app), 1);
    assert_eq!(
        counts(&db_url).await,
        Counts {
            guides: 1,
            items: 6,
            uploads: 1
        }
    );
}

#[tokio::test]
async fn a_second_copy_is_refused_as_a_duplicate_and_leaves_nothing_behind() {
    let (app, db_url) = spawn_with_db(|_| {}).await;
    let alice = app.sign_up("Alice").await;
    let bob = app.sign_up("Bob").await;
    let first = upload(
        &app,
        &alice.token,
        "quiz.txt",
        WELL_FORMED.as_bytes().to_vec(),
        "PARSER",
    )
    .await
    .ok();
    let title = first["uploadGuide"]["guide"]["title"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    wait_for_job(
        &app,
        &alice.token,
        &first["uploadGuide"]["job"]["id"],
        JOB_WAIT,
    )
    .await;

    // The same guide saved with Windows line endings, trailing blanks and a BOM is the same
    // text once normalised.
    let variant = format!("\u{feff}{}", WELL_FORMED.replace('\n', "  \r\n"));
    let again = upload(
        &app,
        &alice.token,
        "copy of quiz.md",
        variant.into_bytes(),
        "PARSER",
    )
    .await;
    assert_eq!(again.error_code(), Some("DUPLICATE"), "{:?}", again.errors);
    let today = chrono_today();
    assert_eq!(
        again.error_message(),
        Some(
            format!(
                "This guide was already uploaded as “{title}” on {today} (guide {}).",
                first["uploadGuide"]["guide"]["id"]
                    .as_str()
                    .unwrap_or_default()
            )
            .as_str()
        )
    );
    let pasted = from_text(&app, &alice.token, "Pasted", WELL_FORMED, "PARSER").await;
    assert_eq!(pasted.error_code(), Some("DUPLICATE"));

    // Nothing of the refused copies was stored.
    assert_eq!(stored_files(&app), 1);
    assert_eq!(counts(&db_url).await.guides, 1);
    assert_eq!(counts(&db_url).await.uploads, 1);

    // Another teacher may upload the same guide; the file is stored once for both.
    let bobs = upload(
        &app,
        &bob.token,
        "quiz.txt",
        WELL_FORMED.as_bytes().to_vec(),
        "PARSER",
    )
    .await
    .ok();
    wait_for_job(
        &app,
        &bob.token,
        &bobs["uploadGuide"]["job"]["id"],
        JOB_WAIT,
    )
    .await;
    assert_eq!(counts(&db_url).await.guides, 2);
    assert_eq!(stored_files(&app), 1);

    // Deleting Alice's guide keeps the file Bob's guide still uses; deleting Bob's removes it.
    for (user, created) in [(&alice, &first), (&bob, &bobs)] {
        app.graphql(
            Some(&user.token),
            "mutation($id: ID!) { deleteGuide(id: $id) }",
            json!({ "id": created["uploadGuide"]["guide"]["id"] }),
        )
        .await
        .ok();
        let expected = if std::ptr::eq(user, &alice) { 1 } else { 0 };
        assert_eq!(stored_files(&app), expected);
    }
    assert_eq!(
        counts(&db_url).await,
        Counts {
            guides: 0,
            items: 0,
            uploads: 0
        }
    );
}

fn chrono_today() -> String {
    // The server stamps guides in UTC.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let days = now.div_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[tokio::test]
async fn another_users_guide_and_items_read_as_not_found() {
    let (app, _) = spawn_with_db(|_| {}).await;
    let alice = app.sign_up("Alice").await;
    let bob = app.sign_up("Bob").await;
    let created = from_text(&app, &alice.token, "Chemistry quiz", WELL_FORMED, "PARSER")
        .await
        .ok();
    let guide_id = created["createGuideFromText"]["guide"]["id"].clone();
    wait_for_job(
        &app,
        &alice.token,
        &created["createGuideFromText"]["job"]["id"],
        JOB_WAIT,
    )
    .await;
    let item_id =
        guide(&app, &alice.token, &guide_id).await.ok()["guide"]["items"][0]["id"].clone();

    let attempts = [
        ("query($id: ID!) { guide(id: $id) { id } }", json!({ "id": guide_id })),
        ("mutation($id: ID!) { deleteGuide(id: $id) }", json!({ "id": guide_id })),
        ("mutation($id: ID!) { renameGuide(id: $id, title: \"mine\") { id } }", json!({ "id": guide_id })),
        ("mutation($id: ID!) { reextractGuide(id: $id) { id } }", json!({ "id": guide_id })),
        (
            "mutation($id: ID!) { updateGuideItem(id: $id, patch: { question: \"x\" }) { id } }",
            json!({ "id": item_id }),
        ),
        ("mutation($id: ID!) { deleteGuideItem(id: $id) { id } }", json!({ "id": item_id })),
        (
            "mutation($id: ID!) { addGuideItem(guideId: $id, input: { label: \"9\", question: \"q\", maxMarks: 1 }) { id } }",
            json!({ "id": guide_id }),
        ),
        (
            "mutation($id: ID!, $item: ID!) { reorderGuideItems(guideId: $id, itemIds: [$item]) { id } }",
            json!({ "id": guide_id, "item": item_id }),
        ),
    ];
    for (query, variables) in attempts {
        let response = app.graphql(Some(&bob.token), query, variables).await;
        assert_eq!(
            response.error_code(),
            Some("NOT_FOUND"),
            "{query}: {:?}",
            response.errors
        );
    }
    let list = app
        .graphql(
            Some(&bob.token),
            "{ guides { totalCount edges { node { id } } } }",
            json!({}),
        )
        .await
        .ok();
    assert_eq!(list["guides"]["totalCount"], 0);
    // Alice's guide is untouched.
    let mine = guide(&app, &alice.token, &guide_id).await.ok();
    assert_eq!(mine["guide"]["title"], "Chemistry quiz");
    assert_eq!(mine["guide"]["itemCount"], 3);
}

#[tokio::test]
async fn teacher_edits_survive_re_extraction() {
    let (app, _) = spawn_with_db(|_| {}).await;
    let alice = app.sign_up("Alice").await;
    let token = alice.token.as_str();
    let created = from_text(&app, token, "Chemistry quiz", WELL_FORMED, "PARSER")
        .await
        .ok();
    let guide_id = created["createGuideFromText"]["guide"]["id"].clone();
    wait_for_job(
        &app,
        token,
        &created["createGuideFromText"]["job"]["id"],
        JOB_WAIT,
    )
    .await;
    let items = guide(&app, token, &guide_id).await.ok()["guide"]["items"].clone();
    let (q1, q2, q3) = (
        items[0]["id"].clone(),
        items[1]["id"].clone(),
        items[2]["id"].clone(),
    );
    assert_eq!(items[1]["edited"], false);

    // Edit question 2's rubric and marks.
    let edited = app
        .graphql(
            Some(token),
            "mutation($id: ID!, $patch: GuideItemPatch!) { updateGuideItem(id: $id, patch: $patch) { label maxMarks edited rubric { description marks } } }",
            json!({ "id": q2, "patch": { "maxMarks": 4, "rubric": [
                { "description": "particles gain kinetic energy", "marks": 2 },
                { "description": "more successful collisions", "marks": 2 }
            ] } }),
        )
        .await
        .ok();
    assert_eq!(edited["updateGuideItem"]["edited"], true);
    assert_eq!(edited["updateGuideItem"]["maxMarks"], 4.0);

    // Add an item at the front, delete question 3, reorder.
    let added = app
        .graphql(
            Some(token),
            "mutation($id: ID!, $input: GuideItemInput!) { addGuideItem(guideId: $id, input: $input, position: 0) { id position label } }",
            json!({ "id": guide_id, "input": { "label": "0", "question": "Write the word equation.", "maxMarks": 2,
                "rubric": [{ "description": "reactants", "marks": 1 }, { "description": "products", "marks": 1 }] } }),
        )
        .await
        .ok();
    let q0 = added["addGuideItem"]["id"].clone();
    assert_eq!(added["addGuideItem"]["position"], 0);
    app.graphql(
        Some(token),
        "mutation($id: ID!) { deleteGuideItem(id: $id) { itemCount } }",
        json!({ "id": q3 }),
    )
    .await
    .ok();
    let reordered = app
        .graphql(
            Some(token),
            "mutation($g: ID!, $ids: [ID!]!) { reorderGuideItems(guideId: $g, itemIds: $ids) { label position } }",
            json!({ "g": guide_id, "ids": [q2, q1, q0] }),
        )
        .await
        .ok();
    let order: Vec<&str> = reordered["reorderGuideItems"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["label"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(order, ["2", "1", "0"]);

    // Re-extract: the edited and added items are kept; unedited ones are extracted anew.
    let job = app
        .graphql(
            Some(token),
            "mutation($id: ID!) { reextractGuide(id: $id, method: PARSER) { id } }",
            json!({ "id": guide_id }),
        )
        .await
        .ok();
    let job = wait_for_job(&app, token, &job["reextractGuide"]["id"], JOB_WAIT).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job:#}");
    let mut kept: Vec<&str> = job["result"]["keptEdited"]
        .as_array()
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    kept.sort_unstable();
    assert_eq!(kept, ["0", "2"]);
    let after = guide(&app, token, &guide_id).await.ok()["guide"].clone();
    let labels: Vec<&str> = after["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["label"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(labels, ["1", "2", "3", "0"]);
    let q2_after = &after["items"][1];
    assert_eq!(q2_after["id"], q2);
    assert_eq!(q2_after["maxMarks"], 4.0);
    assert_eq!(
        q2_after["rubric"][0]["description"],
        "particles gain kinetic energy"
    );
    assert_eq!(after["status"], "READY");
}

#[tokio::test]
async fn invalid_edits_are_refused_with_reasons() {
    let (app, _) = spawn_with_db(|_| {}).await;
    let alice = app.sign_up("Alice").await;
    let token = alice.token.as_str();
    let created = from_text(&app, token, "Chemistry quiz", WELL_FORMED, "PARSER")
        .await
        .ok();
    let guide_id = created["createGuideFromText"]["guide"]["id"].clone();
    wait_for_job(
        &app,
        token,
        &created["createGuideFromText"]["job"]["id"],
        JOB_WAIT,
    )
    .await;
    let items = guide(&app, token, &guide_id).await.ok()["guide"]["items"].clone();

    let cases = [
        (
            "mutation($id: ID!) { updateGuideItem(id: $id, patch: { label: \"2\" }) { id } }",
            json!({ "id": items[0]["id"] }),
            "already labelled",
        ),
        (
            "mutation($id: ID!) { updateGuideItem(id: $id, patch: { maxMarks: -1 }) { id } }",
            json!({ "id": items[0]["id"] }),
            "between 0 and",
        ),
        (
            "mutation($id: ID!) { updateGuideItem(id: $id, patch: { question: \"   \" }) { id } }",
            json!({ "id": items[0]["id"] }),
            "must not be empty",
        ),
        (
            "mutation($g: ID!, $i: ID!) { reorderGuideItems(guideId: $g, itemIds: [$i, $i]) { id } }",
            json!({ "g": guide_id, "i": items[0]["id"] }),
            "exactly once",
        ),
        (
            "mutation($g: ID!) { renameGuide(id: $g, title: \"  \") { id } }",
            json!({ "g": guide_id }),
            "title",
        ),
        (
            "mutation { createGuideFromText(title: \"Empty\", text: \" \\n \\t \") { guide { id } } }",
            json!({}),
            "no text",
        ),
    ];
    for (query, variables, needle) in cases {
        let response = app.graphql(Some(token), query, variables).await;
        assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{query}");
        let message = response.error_message().unwrap_or_default();
        assert!(message.contains(needle), "{query}: {message}");
    }
}

#[tokio::test]
async fn a_failed_model_leaves_no_guide_row_and_no_file() {
    // A model endpoint that refuses connections.
    let (app, db_url) = spawn_with_db(|settings| {
        settings.llm.base_url = "http://127.0.0.1:9/v1".into();
        settings.llm.max_retries = 0;
    })
    .await;
    let alice = app.sign_up("Alice").await;
    let prose = "Notes for the cover teacher: the class has been reading about photosynthesis \
                 and should finish the worksheet in silence.";
    let created = upload(
        &app,
        &alice.token,
        "cover notes.txt",
        prose.as_bytes().to_vec(),
        "LLM",
    )
    .await
    .ok();
    let payload = &created["uploadGuide"];
    let job = wait_for_job(&app, &alice.token, &payload["job"]["id"], JOB_WAIT).await;
    assert_eq!(job["status"], "FAILED");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(error.contains("was not kept"), "{error}");
    assert_eq!(job["guideId"], Value::Null);
    let gone = guide(&app, &alice.token, &payload["guide"]["id"]).await;
    assert_eq!(gone.error_code(), Some("NOT_FOUND"));
    assert_eq!(
        counts(&db_url).await,
        Counts {
            guides: 0,
            items: 0,
            uploads: 0
        }
    );
    assert_eq!(stored_files(&app), 0);

    // With AUTO, the same failure falls back to the parser, and says so.
    let created = from_text(&app, &alice.token, "Chemistry quiz", WELL_FORMED, "AUTO")
        .await
        .ok();
    let job_id = created["createGuideFromText"]["job"]["id"].clone();
    let job = wait_for_job(&app, &alice.token, &job_id, JOB_WAIT).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job:#}");
    assert_eq!(job["result"]["method"], "parser");
    assert!(job["result"]["fallbackReason"].is_string());
    let events = app
        .graphql(
            Some(&alice.token),
            "query($id: ID!) { jobEvents(jobId: $id) { kind } }",
            json!({ "id": job_id }),
        )
        .await
        .ok();
    assert!(events.to_string().contains("warning"));
}

#[tokio::test]
async fn the_upload_limit_is_exact() {
    let limit = 4096;
    let (app, db_url) = spawn_with_db(|settings| settings.guides.max_upload_bytes = limit).await;
    let alice = app.sign_up("Alice").await;
    let at_limit = {
        let mut text = WELL_FORMED.to_owned();
        while text.len() < limit as usize {
            text.push_str("\nAccept any equivalent wording.");
        }
        text.truncate(limit as usize);
        text
    };
    let over = format!("{at_limit}x");
    let refused = upload(&app, &alice.token, "over.txt", over.into_bytes(), "PARSER").await;
    assert_eq!(refused.error_code(), Some("BAD_USER_INPUT"));
    assert!(
        refused.error_message().unwrap_or_default().contains("4096"),
        "{:?}",
        refused.errors
    );
    assert_eq!(stored_files(&app), 0);
    assert_eq!(counts(&db_url).await.guides, 0);
    let accepted = upload(
        &app,
        &alice.token,
        "at-limit.txt",
        at_limit.into_bytes(),
        "PARSER",
    )
    .await;
    assert!(accepted.errors.is_empty(), "{:?}", accepted.errors);
}

/// The titles on a `guides` page, in order.
fn titles(data: &Value) -> Vec<&str> {
    data["guides"]["edges"]
        .as_array()
        .map(|edges| {
            edges
                .iter()
                .filter_map(|e| e["node"]["title"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// Creates guide "Quiz `n`" from the well-formed text (parsed in the background) and
/// returns the mutation's data.
async fn quiz(app: &TestApp, token: &str, n: u32) -> Value {
    from_text(
        app,
        token,
        &format!("Quiz {n}"),
        &format!("{WELL_FORMED}\nVersion {n}"),
        "PARSER",
    )
    .await
    .ok()
}

/// Quizzes 1..=`count`, each waited for until its items are extracted.
async fn extracted_quizzes(app: &TestApp, token: &str, count: u32) {
    for n in 1..=count {
        let created = quiz(app, token, n).await;
        let job = &created["createGuideFromText"]["job"]["id"];
        assert_eq!(
            wait_for_job(app, token, job, JOB_WAIT).await["status"],
            "SUCCEEDED"
        );
    }
}

#[tokio::test]
async fn guides_are_listed_newest_first_in_pages() {
    let (app, _) = spawn_with_db(|_| {}).await;
    let alice = app.sign_up("Alice").await;
    for n in 1..=3 {
        quiz(&app, &alice.token, n).await;
    }
    let query = "query($after: String) { guides(first: 2, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { node { title text } } } }";
    let first = app
        .graphql(Some(&alice.token), query, json!({ "after": null }))
        .await
        .ok();
    assert_eq!(first["guides"]["totalCount"], 3);
    assert_eq!(first["guides"]["pageInfo"]["hasNextPage"], true);
    assert_eq!(first["guides"]["edges"][0]["node"]["title"], "Quiz 3");
    // The list does not read the texts with the rows; asked for, each is its own.
    for (edge, n) in first["guides"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .zip([3, 2])
    {
        let text = edge["node"]["text"].as_str().unwrap_or_default();
        assert!(text.starts_with("Year 9 Chemistry quiz"), "{text}");
        assert!(text.ends_with(&format!("Version {n}")), "{text}");
    }
    let cursor = first["guides"]["pageInfo"]["endCursor"].clone();
    let second = app
        .graphql(Some(&alice.token), query, json!({ "after": cursor }))
        .await
        .ok();
    assert_eq!(second["guides"]["pageInfo"]["hasNextPage"], false);
    assert_eq!(titles(&second), ["Quiz 1"]);
}

#[tokio::test]
async fn a_list_reads_item_texts_only_where_they_are_asked_for_and_totals_stay_exact() {
    // Labels, counts and totals come from rows read without the items' texts; a selection
    // that asks for a text (directly or through a fragment) gets whole items.
    let (app, _) = spawn_with_db(|_| {}).await;
    let alice = app.sign_up("Alice").await;
    extracted_quizzes(&app, &alice.token, 2).await;
    let query = "{ guides(first: 5) { edges { node { itemCount totalMarks
        brief: items { id label maxMarks position }
        whole: items { ...Texts } } } } }
        fragment Texts on GuideItem { id label maxMarks question modelAnswer rubric { marks } }";
    let data = app.graphql(Some(&alice.token), query, json!({})).await.ok();
    let edges = data["guides"]["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(edges.len(), 2);
    for edge in &edges {
        let node = &edge["node"];
        let brief = node["brief"].as_array().cloned().unwrap_or_default();
        let whole = node["whole"].as_array().cloned().unwrap_or_default();
        assert!(!whole.is_empty(), "{node}");
        assert_eq!(node["itemCount"], whole.len());
        let total: f64 = whole.iter().filter_map(|i| i["maxMarks"].as_f64()).sum();
        assert_eq!(node["totalMarks"].as_f64(), Some(total), "{node}");
        let ids = |items: &[Value]| {
            items
                .iter()
                .map(|i| (i["id"].clone(), i["label"].clone(), i["maxMarks"].clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&brief), ids(&whole), "same items, same order");
        for item in &whole {
            assert!(
                !item["question"].as_str().unwrap_or_default().is_empty(),
                "{item}"
            );
            let rubric_marks: f64 = item["rubric"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["marks"].as_f64())
                .sum();
            assert!(rubric_marks > 0.0, "the rubric is read whole: {item}");
        }
    }
}

#[tokio::test]
async fn a_page_answers_jobs_and_items_as_each_guide_does_on_its_own() {
    // A page loads its guides' items and latest jobs for the whole page at once; each guide
    // read on its own loads them one by one. Both must agree, the newest job first.
    let (app, _) = spawn_with_db(|_| {}).await;
    let alice = app.sign_up("Alice").await;
    extracted_quizzes(&app, &alice.token, 3).await;
    let fields = "id itemCount totalMarks items { id label } latestJob { id kind status }
        extraction: extractionJob { id }";
    let page = |query: String| {
        let app = &app;
        let token = alice.token.clone();
        async move { app.graphql(Some(&token), &query, json!({})).await.ok() }
    };
    let listed = page(format!(
        "{{ guides(first: 10) {{ edges {{ node {{ {fields} }} }} }} }}"
    ))
    .await;
    let nodes: Vec<Value> = listed["guides"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|edge| edge["node"].clone())
        .collect();
    assert_eq!(nodes.len(), 3);
    // Re-extract the oldest guide: its newest job is the second extraction.
    let oldest = nodes[2]["id"].clone();
    let again = app
        .graphql(
            Some(&alice.token),
            "mutation($id: ID!) { reextractGuide(id: $id, method: PARSER) { id } }",
            json!({ "id": oldest }),
        )
        .await
        .ok();
    let second = again["reextractGuide"]["id"].clone();
    wait_for_job(&app, &alice.token, &second, JOB_WAIT).await;

    let listed = page(format!(
        "{{ guides(first: 10) {{ edges {{ node {{ {fields} }} }} }} }}"
    ))
    .await;
    for edge in listed["guides"]["edges"].as_array().into_iter().flatten() {
        let node = &edge["node"];
        let alone = page(format!(
            "{{ guide(id: \"{}\") {{ {fields} }} }}",
            node["id"].as_str().unwrap_or_default()
        ))
        .await;
        assert_eq!(node, &alone["guide"], "the page and the guide alone differ");
        assert_eq!(node["latestJob"]["kind"], "EXTRACTION", "{node}");
        assert_eq!(node["latestJob"]["id"], node["extraction"]["id"], "{node}");
        assert_eq!(
            node["itemCount"],
            node["items"].as_array().map_or(0, Vec::len)
        );
    }
    let reread = listed["guides"]["edges"]
        .as_array()
        .and_then(|edges| edges.iter().find(|e| e["node"]["id"] == oldest))
        .map(|e| e["node"].clone())
        .unwrap_or_default();
    assert_eq!(
        reread["latestJob"]["id"], second,
        "the newest job: {reread}"
    );
    assert_eq!(reread["latestJob"]["status"], "SUCCEEDED");
}

#[tokio::test]
async fn a_page_read_again_shows_every_change_to_its_items_and_jobs_whoever_made_it() {
    // Pages keep their guides' item summaries and latest jobs, each under the guide's
    // revision, which the database bumps with every change to them. Changes made through
    // the API and straight in the database (as another replica or a worker would) must
    // both show on the very next read.
    let (app, db_url) = spawn_with_db(|_| {}).await;
    let alice = app.sign_up("Alice").await;
    extracted_quizzes(&app, &alice.token, 2).await;
    let db = Database::connect(&db_url)
        .await
        .expect("database reachable");
    let sql = |statement: String| {
        let db = &db;
        async move {
            db.execute_unprepared(&statement)
                .await
                .unwrap_or_else(|err| panic!("{statement}: {err}"));
        }
    };
    let revision = |guide_id: String| {
        let db = &db;
        async move {
            db.query_one(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT revision FROM guides WHERE id = {guide_id}"),
            ))
            .await
            .expect("revision query")
            .expect("the guide's row")
            .try_get::<i64>("", "revision")
            .expect("a revision")
        }
    };
    let query = "{ guides(first: 10) { edges { node { id itemCount totalMarks
        items { id label maxMarks } latestJob { id status progress } } } } }";
    let newest = || {
        let app = &app;
        let token = alice.token.clone();
        async move {
            app.graphql(Some(&token), query, json!({})).await.ok()["guides"]["edges"][0]["node"]
                .clone()
        }
    };
    let first = newest().await;
    assert_eq!(newest().await, first, "nothing changed, the same page");
    let guide = first["id"].as_str().expect("a guide id").to_owned();
    let items = first["items"].as_array().cloned().unwrap_or_default();
    assert!(items.len() >= 2, "{first}");
    let item = |n: usize| items[n]["id"].as_str().expect("an item id").to_owned();

    // Through the API: a new maximum mark.
    let before = revision(guide.clone()).await;
    app.graphql(
        Some(&alice.token),
        "mutation($id: ID!) { updateGuideItem(id: $id, patch: { maxMarks: 7 }) { id } }",
        json!({ "id": item(0) }),
    )
    .await
    .ok();
    assert!(revision(guide.clone()).await > before);
    let edited = newest().await;
    assert_eq!(edited["items"][0]["maxMarks"], 7.0, "{edited}");
    let total = first["totalMarks"].as_f64().unwrap_or_default()
        - items[0]["maxMarks"].as_f64().unwrap_or_default()
        + 7.0;
    assert_eq!(edited["totalMarks"].as_f64(), Some(total), "{edited}");

    // Behind the server's back: an item renamed, another deleted, the job set running.
    sql(format!(
        "UPDATE guide_items SET label = 'renamed' WHERE id = {}",
        item(0)
    ))
    .await;
    assert_eq!(newest().await["items"][0]["label"], "renamed");
    sql(format!("DELETE FROM guide_items WHERE id = {}", item(1))).await;
    let fewer = newest().await;
    assert_eq!(fewer["itemCount"], items.len() - 1, "{fewer}");
    assert!(
        fewer["items"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|i| i["id"] != item(1).as_str()),
        "{fewer}"
    );
    let job = first["latestJob"]["id"].as_str().expect("a job").to_owned();
    sql(format!(
        "UPDATE jobs SET status = 'running', progress = 0.5 WHERE id = {job}"
    ))
    .await;
    let running = newest().await;
    assert_eq!(running["latestJob"]["status"], "RUNNING", "{running}");
    assert_eq!(running["latestJob"]["progress"], 0.5, "{running}");

    // A lease's heartbeat shows nowhere in the API: it leaves the guide's row alone.
    let before = revision(guide.clone()).await;
    sql(format!(
        "UPDATE jobs SET lease_owner = 'elsewhere' WHERE id = {job}"
    ))
    .await;
    assert_eq!(revision(guide).await, before);
}

#[tokio::test]
async fn lists_read_at_the_same_moment_by_several_users_are_each_their_own() {
    // Concurrent list reads are batched into one statement for all callers; each caller
    // must still get exactly their own page.
    let (app, _) = spawn_with_db(|_| {}).await;
    let alice = app.sign_up("Alice").await;
    let bob = app.sign_up("Bob").await;
    let carol = app.sign_up("Carol").await;
    for (user, titles) in [
        (&alice, ["A1", "A2", "A3"].as_slice()),
        (&bob, &["B1", "B2"]),
    ] {
        for (n, title) in titles.iter().enumerate() {
            from_text(
                &app,
                &user.token,
                title,
                &format!("{WELL_FORMED}\n{title} {n}"),
                "PARSER",
            )
            .await
            .ok();
        }
    }
    let query = "query($first: Int!, $after: String) { guides(first: $first, after: $after) { pageInfo { hasNextPage endCursor } edges { node { title } } } }";
    let first = app
        .graphql(Some(&alice.token), query, json!({ "first": 2 }))
        .await
        .ok();
    let cursor = first["guides"]["pageInfo"]["endCursor"].clone();
    let asks = [
        (&alice.token, json!({ "first": 2 }), vec!["A3", "A2"]),
        (
            &alice.token,
            json!({ "first": 2, "after": cursor }),
            vec!["A1"],
        ),
        (&alice.token, json!({ "first": 20 }), vec!["A3", "A2", "A1"]),
        (&bob.token, json!({ "first": 20 }), vec!["B2", "B1"]),
        (&bob.token, json!({ "first": 1 }), vec!["B2"]),
        (&carol.token, json!({ "first": 20 }), vec![]),
    ];
    let reads = asks
        .iter()
        .cycle()
        .take(asks.len() * 4)
        .map(|(token, variables, _)| app.graphql(Some(token), query, variables.clone()));
    let answers = futures::future::join_all(reads).await;
    for (answer, (_, variables, expected)) in answers.into_iter().zip(asks.iter().cycle()) {
        let data = answer.ok();
        assert_eq!(&titles(&data), expected, "{variables}");
        let more =
            variables["first"] == 1 || (variables["first"] == 2 && variables["after"].is_null());
        assert_eq!(
            data["guides"]["pageInfo"]["hasNextPage"], more,
            "{variables}"
        );
    }
}

#[tokio::test]
async fn extraction_progress_is_pushed_to_subscribers() {
    let (app, _) = spawn_with_db(|_| {}).await;
    let alice = app.sign_up("Alice").await;
    let created = from_text(&app, &alice.token, "Chemistry quiz", WELL_FORMED, "PARSER")
        .await
        .ok();
    let job_id = created["createGuideFromText"]["job"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut subscription = app
        .subscribe(
            Some(&alice.token),
            &format!("subscription {{ jobEvents(jobId: \"{job_id}\") {{ seq kind payload }} }}"),
        )
        .await
        .expect("subscription starts");
    let mut kinds = Vec::new();
    while kinds.last().map(String::as_str) != Some("succeeded") {
        let event = subscription.next_data(30).await.expect("an event");
        kinds.push(
            event["data"]["jobEvents"]["kind"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        assert!(kinds.len() < 50, "{kinds:?}");
    }
    assert!(kinds.iter().any(|k| k == "progress"), "{kinds:?}");
}
