//! Test runs: a similarity grader tested on held-out SAF answers with its events streamed over
//! a WebSocket, metrics that match a recomputation from the per-answer rows, the review
//! queue, scoping, a small run with an LLM grader on the real local model, how many
//! gradings an LLM run keeps in flight at a canned endpoint, and a whole run through an
//! endpoint that answers with 429 storms, 5xx, stalls and garbage.

use std::time::Duration;

use gradelab_tests::fault_proxy::{Fault, FaultServer};
use gradelab_tests::{spawn_app, spawn_app_with, spawn_app_with_canned_llm, Subscription, TestApp};
use serde_json::{json, Value};

use crate::answers::{guide_from_items, import_text, saf_subset, split_count};
use crate::llm::real_model_app;

const START_TRAINING: &str =
    "mutation($input: TrainingInput!) { startTraining(input: $input) { id } }";
const JOB: &str = "query($id: ID!) { job(id: $id) { id status error result progress promptTokens completionTokens } }";
const START_RUN: &str = "mutation($input: TestRunInput!) { startTestRun(input: $input) {
    id jobId guideId graderVersionId job { id kind status } } }";
/// Everything a run reports.
pub const RUN: &str = "query($id: ID!) { testRun(id: $id) {
    id guideId graderVersion { id version engine }
    job { status progress error }
    metrics { n answers repeats engine exact withinOne mae rmse pearson spearman qwk bias
      agreement { maeMarks rmseMarks qwkMarks biasMarks }
      confusion { labels counts }
      perItem { itemId label maxMarks agreement { n exact mae qwk } }
      variance { repeats n flipRate meanSpread maxSpread meanSd }
      consistency quality qualityParts { length structure vocabulary coherence overall } reviewCount
      ungraded { answerId itemLabel studentRef repeat error } }
    answers(first: 1000) { answerId itemId itemLabel studentRef text teacherScore maxMarks score scores spread error rationale feedback confidence consistency quality { overall } }
    reviewQueue(first: 500) { reasons priority answer { answerId teacherScore score maxMarks spread rationale } } } }";

/// Every event of a job over the subscription, until its final one.
pub async fn collect_events(subscription: &mut Subscription, timeout: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut events = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(
            !left.is_zero(),
            "no final event within {timeout:?}: {events:?}"
        );
        let payload = subscription
            .next_data(left.as_secs().max(1))
            .await
            .unwrap_or_else(|err| panic!("subscription ended early ({err}): {events:?}"));
        let event = payload["data"]["jobEvents"].clone();
        assert!(event.is_object(), "not an event: {payload}");
        let kind = event["kind"].as_str().unwrap_or_default().to_owned();
        events.push(event);
        if matches!(kind.as_str(), "succeeded" | "failed" | "cancelled") {
            return events;
        }
    }
}

/// Polls a job until it finishes.
pub async fn wait_for_job(app: &TestApp, token: &str, job: &Value, timeout: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let data = app
            .graphql(Some(token), JOB, json!({ "id": job }))
            .await
            .ok();
        let status = data["job"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if matches!(status.as_str(), "SUCCEEDED" | "FAILED" | "CANCELLED") {
            return data["job"].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {job} still {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A guide of two SAF items (train answers, a quarter carved into validation, and their
/// held-out test answers) with a trained similarity grader. Returns (guide, version id).
pub async fn similarity_grader(app: &TestApp, token: &str) -> (Value, Value) {
    let (items, answers) = saf_subset(&["4.13", "6.2_IPP"], 24);
    let guide = guide_from_items(app, token, "SAF, two items", &items).await;
    let imported = import_text(
        app,
        token,
        &guide,
        &answers,
        json!({ "validationFromTrain": 0.25, "seed": 3 }),
    )
    .await
    .ok();
    assert!(split_count(&imported["importAnswersText"]["bySplit"], "TEST") > 10);
    let input = json!({ "guideId": guide, "engine": "SIMILARITY", "epochs": 1, "patience": 1, "gradientEpochs": 2, "seed": 1 });
    let job = app
        .graphql(Some(token), START_TRAINING, json!({ "input": input }))
        .await
        .ok()["startTraining"]["id"]
        .clone();
    let job = wait_for_job(app, token, &job, Duration::from_secs(300)).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    (guide, job["result"]["grader_version_id"].clone())
}

/// Starts a run of `version` and returns it.
pub async fn start_run(app: &TestApp, token: &str, input: Value) -> Value {
    app.graphql(Some(token), START_RUN, json!({ "input": input }))
        .await
        .ok()["startTestRun"]
        .clone()
}

/// Starts a test run and waits until its job ends, however it ends: the run as started
/// and its job.
async fn ended_run(app: &TestApp, token: &str, input: Value, timeout: Duration) -> (Value, Value) {
    let run = start_run(app, token, input).await;
    let job = wait_for_job(app, token, &run["jobId"], timeout).await;
    (run, job)
}

/// Starts a test run, waits until its job succeeded and returns everything the run reports
/// ([`RUN`]).
pub async fn finished_run(app: &TestApp, token: &str, input: Value, timeout: Duration) -> Value {
    let (run, job) = ended_run(app, token, input, timeout).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    app.graphql(Some(token), RUN, json!({ "id": run["id"] }))
        .await
        .ok()["testRun"]
        .clone()
}

/// Starts a test run that must fail within two minutes saying `why`; returns everything
/// the run reports ([`RUN`]).
async fn failed_run(app: &TestApp, token: &str, input: Value, why: &str) -> Value {
    let (run, job) = ended_run(app, token, input, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "FAILED", "{job}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(error.contains(why), "the run says why it stopped: {error}");
    app.graphql(Some(token), RUN, json!({ "id": run["id"] }))
        .await
        .ok()["testRun"]
        .clone()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn close(what: &str, got: &Value, want: f64) {
    assert!(
        (f(got) - want).abs() < 1e-9,
        "{what}: the API says {got}, recomputed {want}"
    );
}

fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
    cov / (vx.sqrt() * vy.sqrt())
}

/// Checks the run's metrics against a recomputation from its own per-answer rows.
pub fn check_metrics_match_rows(run: &Value) {
    let m = &run["metrics"];
    let rows = run["answers"].as_array().cloned().unwrap_or_default();
    let scored: Vec<&Value> = rows
        .iter()
        .filter(|r| r["teacherScore"].is_number())
        .collect();
    let n = scored.len() as f64;
    assert_eq!(m["n"], scored.len(), "n is the scored answers");
    assert_eq!(m["answers"], rows.len());
    let t: Vec<f64> = scored.iter().map(|r| f(&r["teacherScore"])).collect();
    let p: Vec<f64> = scored.iter().map(|r| f(&r["score"])).collect();
    let max: Vec<f64> = scored.iter().map(|r| f(&r["maxMarks"])).collect();
    let tn: Vec<f64> = t.iter().zip(&max).map(|(a, m)| a / m).collect();
    let pn: Vec<f64> = p.iter().zip(&max).map(|(a, m)| a / m).collect();
    let exact = t
        .iter()
        .zip(&p)
        .filter(|(a, b)| (*a - *b).abs() < 1e-9)
        .count() as f64
        / n;
    let within = t
        .iter()
        .zip(&p)
        .filter(|(a, b)| (*a - *b).abs() <= 1.0 + 1e-9)
        .count() as f64
        / n;
    let mae = tn.iter().zip(&pn).map(|(a, b)| (b - a).abs()).sum::<f64>() / n;
    let rmse = (tn
        .iter()
        .zip(&pn)
        .map(|(a, b)| (b - a).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    let bias = tn.iter().zip(&pn).map(|(a, b)| b - a).sum::<f64>() / n;
    close("exact", &m["exact"], exact);
    close("within one", &m["withinOne"], within);
    close("MAE", &m["mae"], mae);
    close("RMSE", &m["rmse"], rmse);
    close("bias", &m["bias"], bias);
    if m["pearson"].is_number() {
        close("pearson", &m["pearson"], pearson(&tn, &pn));
    }
    // The confusion matrix counts every scored answer once, in its quarter bins.
    let mut counts = vec![vec![0i64; 5]; 5];
    for (a, b) in tn.iter().zip(&pn) {
        let bin = |x: f64| (x.clamp(0.0, 1.0) * 4.0).round() as usize;
        counts[bin(*a)][bin(*b)] += 1;
    }
    assert_eq!(m["confusion"]["counts"], json!(counts));
    // Per item: the answers of each item.
    for item in m["perItem"].as_array().cloned().unwrap_or_default() {
        let of_item = scored
            .iter()
            .filter(|r| r["itemId"] == item["itemId"])
            .count();
        assert_eq!(item["agreement"]["n"], of_item, "{item}");
    }
    let items_total: i64 = m["perItem"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["agreement"]["n"].as_i64()).sum())
        .unwrap_or(0);
    assert_eq!(items_total as f64, n);
    // The heuristics are the means of the rows'.
    let quality = rows
        .iter()
        .map(|r| f(&r["quality"]["overall"]))
        .sum::<f64>()
        / rows.len() as f64;
    close("quality", &m["quality"], quality);
}

#[tokio::test]
async fn a_similarity_test_run_streams_events_and_its_metrics_match_its_rows() {
    let app = spawn_app().await;
    let teacher = app.sign_up("Tess").await;
    let (guide, version) = similarity_grader(&app, &teacher.token).await;

    let run = start_run(
        &app,
        &teacher.token,
        json!({ "graderVersionId": version, "repeats": 2 }),
    )
    .await;
    assert_eq!(run["job"]["kind"], "TEST_RUN");
    assert_eq!(run["guideId"], guide);
    let mut subscription = app
        .subscribe(
            Some(&teacher.token),
            &format!(
                "subscription {{ jobEvents(jobId: {}) {{ seq kind payload }} }}",
                run["jobId"]
            ),
        )
        .await
        .expect("subscribed");
    let events = collect_events(&mut subscription, Duration::from_secs(300)).await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"queued"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"succeeded"), "{events:?}");
    assert!(
        kinds.contains(&"progress") && kinds.contains(&"metrics"),
        "{kinds:?}"
    );
    let seqs: Vec<i64> = events.iter().filter_map(|e| e["seq"].as_i64()).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "no gap");
    let last_progress = events
        .iter()
        .rfind(|e| e["kind"] == "progress")
        .map(|e| f(&e["payload"]["progress"]));
    assert_eq!(last_progress, Some(1.0));

    let data = app
        .graphql(Some(&teacher.token), RUN, json!({ "id": run["id"] }))
        .await
        .ok();
    let run = &data["testRun"];
    let m = &run["metrics"];
    assert_eq!(run["job"]["status"], "SUCCEEDED");
    assert_eq!(
        run["graderVersion"]["id"],
        version.to_string().trim_matches('"')
    );
    assert_eq!(m["engine"], "similarity");
    assert_eq!(m["repeats"], 2);
    let rows = run["answers"].as_array().cloned().unwrap_or_default();
    assert!(rows.len() > 10, "the test split was graded: {}", rows.len());
    for row in &rows {
        assert_eq!(row["scores"].as_array().map(Vec::len), Some(2), "{row}");
        assert!(row["rationale"]
            .as_str()
            .is_some_and(|r| r.contains("Similarity")));
    }
    check_metrics_match_rows(run);
    // The similarity engine is deterministic: its repeats never flip.
    assert_eq!(m["variance"]["flipRate"], 0.0);
    assert_eq!(m["variance"]["n"], rows.len());
    assert!(m["qwk"].is_number() && m["consistency"].is_number());
    // The review queue holds exactly the answers at least half the marks away, worst first.
    let far: Vec<&Value> = rows
        .iter()
        .filter(|r| (f(&r["error"]).abs() / f(&r["maxMarks"])) >= 0.5 - 1e-9)
        .collect();
    let queue = run["reviewQueue"].as_array().cloned().unwrap_or_default();
    assert_eq!(queue.len(), far.len());
    assert_eq!(m["reviewCount"], far.len());
    let priorities: Vec<f64> = queue.iter().map(|e| f(&e["priority"])).collect();
    assert!(
        priorities.windows(2).all(|w| w[0] >= w[1]),
        "{priorities:?}"
    );
    for entry in &queue {
        assert_eq!(entry["reasons"], json!(["disagreement"]));
        assert!(entry["answer"]["teacherScore"].is_number());
    }
    eprintln!(
        "similarity test run: n {} exact {:.3} MAE {:.3} r {:.3} QWK {:.3} bias {:+.3}, {} to review",
        m["n"],
        f(&m["exact"]),
        f(&m["mae"]),
        f(&m["pearson"]),
        f(&m["qwk"]),
        f(&m["bias"]),
        queue.len()
    );

    // Listed under its guide.
    let list = app
        .graphql(
            Some(&teacher.token),
            "query($g: ID!) { testRuns(guideId: $g, first: 5) { totalCount edges { node { id } } } }",
            json!({ "g": guide }),
        )
        .await
        .ok();
    assert_eq!(list["testRuns"]["totalCount"], 1);
    assert_eq!(list["testRuns"]["edges"][0]["node"]["id"], run["id"]);

    // A freshly uploaded set of answers is graded on its own.
    let fresh = [
        (
            "4.13",
            "Fresh answer one about the question, written after training.",
            1.0,
        ),
        (
            "6.2_IPP",
            "A second new answer that nobody has graded with this grader yet.",
            0.0,
        ),
        ("6.2_IPP", "Third fresh answer.", 1.0),
    ]
    .iter()
    .enumerate()
    .map(|(i, (item, text, score))| {
        json!({ "item": item, "student": format!("fresh-{i}"), "answer": text, "score": score, "split": "test" })
            .to_string()
    })
    .collect::<Vec<_>>()
    .join("\n");
    let upload = import_text(&app, &teacher.token, &guide, &fresh, json!({}))
        .await
        .ok()["importAnswersText"]["uploadId"]
        .clone();
    let fresh_run = finished_run(
        &app,
        &teacher.token,
        json!({ "graderVersionId": version, "uploadId": upload }),
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(
        fresh_run["metrics"]["answers"], 3,
        "only the upload's answers"
    );
    let texts: Vec<&str> = fresh_run["answers"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["text"].as_str()).collect())
        .unwrap_or_default();
    assert!(texts.contains(&"Third fresh answer."), "{texts:?}");
    check_metrics_match_rows(&fresh_run);

    // Another user sees none of it.
    let other = app.sign_up("Otto").await;
    for (query, vars) in [
        (RUN, json!({ "id": run["id"] })),
        (
            "query($g: ID!) { testRuns(guideId: $g) { totalCount } }",
            json!({ "g": guide }),
        ),
        (
            START_RUN,
            json!({ "input": { "graderVersionId": version } }),
        ),
        (
            "query($g: ID!) { exportFineTuning(guideId: $g) { content } }",
            json!({ "g": guide }),
        ),
    ] {
        let response = app.graphql(Some(&other.token), query, vars).await;
        assert_eq!(response.error_code(), Some("NOT_FOUND"), "{query}");
    }
}

#[tokio::test]
async fn a_test_run_refuses_bad_input_with_clear_errors() {
    let app = spawn_app().await;
    let teacher = app.sign_up("Val").await;
    let missing = app
        .graphql(
            Some(&teacher.token),
            START_RUN,
            json!({ "input": { "graderVersionId": "999999" } }),
        )
        .await;
    assert_eq!(missing.error_code(), Some("NOT_FOUND"));
    let too_many = app
        .graphql(
            Some(&teacher.token),
            START_RUN,
            json!({ "input": { "graderVersionId": "1", "repeats": 9 } }),
        )
        .await;
    assert_eq!(too_many.error_code(), Some("BAD_USER_INPUT"));
    assert!(
        too_many
            .error_message()
            .is_some_and(|m| m.contains("repeats must be between 1 and 5")),
        "{:?}",
        too_many.error_message()
    );
    let anonymous = app.graphql(None, RUN, json!({ "id": "1" })).await;
    assert_eq!(anonymous.error_code(), Some("UNAUTHENTICATED"));
}

/// A guide of the SAF `items` (6 answers each, a fifth of train moved to validation) and
/// the id of an LLM grader version trained for epoch 0 only, on one validation answer: the
/// zero-shot grader.
async fn zero_shot_llm_version(
    app: &TestApp,
    token: &str,
    items: &[&str],
    timeout: Duration,
) -> Value {
    zero_shot_llm_version_with(app, token, items, "", timeout).await
}

/// [`zero_shot_llm_version`] with `extra` answers (JSON Lines) imported beside the SAF ones.
async fn zero_shot_llm_version_with(
    app: &TestApp,
    token: &str,
    items: &[&str],
    extra: &str,
    timeout: Duration,
) -> Value {
    let (items, answers) = saf_subset(items, 6);
    let answers = format!("{}\n{extra}", answers.trim_end());
    let guide = guide_from_items(app, token, "SAF items", &items).await;
    import_text(
        app,
        token,
        &guide,
        &answers,
        json!({ "validationFromTrain": 0.2, "seed": 2 }),
    )
    .await
    .ok();
    let input = json!({ "guideId": guide, "engine": "LLM", "epochs": 0, "patience": 1, "maxTokens": 96,
        "exemplars": 0, "validationLimit": 1, "seed": 7 });
    let job = app
        .graphql(Some(token), START_TRAINING, json!({ "input": input }))
        .await
        .ok()["startTraining"]["id"]
        .clone();
    let job = wait_for_job(app, token, &job, timeout).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    job["result"]["grader_version_id"].clone()
}

#[tokio::test]
async fn an_llm_test_run_grades_with_the_real_local_model_and_measures_its_variance() {
    let Some(app) = real_model_app().await else {
        return;
    };
    let teacher = app.sign_up("Lena").await;
    let version =
        zero_shot_llm_version(&app, &teacher.token, &["4.13"], Duration::from_secs(1800)).await;

    let began = std::time::Instant::now();
    let (run, finished) = ended_run(
        &app,
        &teacher.token,
        json!({ "graderVersionId": version, "limit": 2, "repeats": 2, "repeatTemperature": 0.9 }),
        Duration::from_secs(1800),
    )
    .await;
    assert_eq!(finished["status"], "SUCCEEDED", "{finished}");
    assert!(
        finished["promptTokens"].as_i64().unwrap_or(0) > 0,
        "real calls were accounted: {finished}"
    );
    let data = app
        .graphql(Some(&teacher.token), RUN, json!({ "id": run["id"] }))
        .await
        .ok();
    let run = &data["testRun"];
    let m = &run["metrics"];
    assert_eq!(m["engine"], "llm");
    assert_eq!(m["answers"], 2);
    let rows = run["answers"].as_array().cloned().unwrap_or_default();
    for row in &rows {
        assert_eq!(row["scores"].as_array().map(Vec::len), Some(2), "{row}");
        let score = f(&row["score"]);
        assert!((0.0..=f(&row["maxMarks"])).contains(&score), "{row}");
        assert!(
            row["rationale"]
                .as_str()
                .is_some_and(|r| !r.trim().is_empty()),
            "the model explains: {row}"
        );
        let confidence = f(&row["confidence"]);
        assert!(
            (0.0..=1.0).contains(&confidence),
            "the model's probabilities were read: {row}"
        );
    }
    check_metrics_match_rows(run);
    assert!(m["variance"]["flipRate"].is_number());
    eprintln!(
        "LLM test run: 2 answers × 2 in {:.1} s; scores {:?}; teacher {:?}; flip rate {}; {} prompt tokens",
        began.elapsed().as_secs_f64(),
        rows.iter().map(|r| r["scores"].clone()).collect::<Vec<_>>(),
        rows.iter().map(|r| r["teacherScore"].clone()).collect::<Vec<_>>(),
        m["variance"]["flipRate"],
        finished["promptTokens"]
    );
}

/// A verdict in the shape of the grading prompt's schema (no criterion met, one mark claimed).
const CANNED_VERDICT: &str =
    r#"{"criteria":[],"score":1,"feedback":"Canned feedback.","rationale":"Canned rationale."}"#;

/// An LLM test run of 8 answers against a canned endpoint of `provider` answering after
/// 300 ms, with `llm.concurrency` = 3: the most calls the endpoint ever had at once, and
/// the finished run.
async fn canned_llm_run(provider: &str) -> (usize, Value) {
    let endpoint = FaultServer::canned(CANNED_VERDICT).await;
    endpoint.set_latency(Duration::from_millis(300));
    let base_url = endpoint.base_url.clone();
    let app = spawn_app_with(|settings| {
        settings.llm.provider = provider.to_owned();
        settings.llm.base_url = base_url;
        settings.llm.model = "canned".into();
        settings.llm.concurrency = 3;
        settings.llm.cache = false;
    })
    .await;
    let teacher = app.sign_up("Ines").await;
    let version = zero_shot_llm_version(
        &app,
        &teacher.token,
        &["4.13", "6.2_IPP"],
        Duration::from_secs(120),
    )
    .await;
    let run = finished_run(
        &app,
        &teacher.token,
        json!({ "graderVersionId": version, "limit": 8 }),
        Duration::from_secs(120),
    )
    .await;
    (endpoint.max_in_flight(), run)
}

/// Token log-probabilities spelling [`CANNED_VERDICT`] whose written mark, 1, the model
/// gave only 5 %: the other 95 % went to a first digit 0.
fn hesitant_logprobs() -> Value {
    let at = CANNED_VERDICT.find("\"score\":").unwrap_or_default() + "\"score\":".len();
    let token = |text: &str, p: f64, top: &[(&str, f64)]| {
        json!({
            "token": text, "logprob": p.ln(), "bytes": text.as_bytes(),
            "top_logprobs": top.iter().map(|(t, p)| json!({"token": t, "logprob": p.ln()})).collect::<Vec<_>>(),
        })
    };
    json!([
        token(&CANNED_VERDICT[..at], 1.0, &[]),
        token("1", 0.05, &[("0", 0.95), ("1", 0.05)]),
        token(&CANNED_VERDICT[at + 1..], 1.0, &[(",", 1.0)]),
    ])
}

#[tokio::test]
async fn an_llm_test_run_reads_each_mark_from_the_token_probabilities_of_its_reply() {
    let endpoint = FaultServer::canned(CANNED_VERDICT).await;
    endpoint.set_canned_logprobs(hesitant_logprobs());
    let base_url = endpoint.base_url.clone();
    let app = spawn_app_with(|settings| {
        settings.llm.provider = "llamacpp".into();
        settings.llm.base_url = base_url;
        settings.llm.model = "canned".into();
    })
    .await;
    let teacher = app.sign_up("Oona").await;
    let version =
        zero_shot_llm_version(&app, &teacher.token, &["4.13"], Duration::from_secs(120)).await;
    let run = finished_run(
        &app,
        &teacher.token,
        json!({ "graderVersionId": version, "limit": 3 }),
        Duration::from_secs(120),
    )
    .await;
    let rows = run["answers"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 3, "{run}");
    for row in &rows {
        // Written 1 at 5 %; 95 % on a first digit 0, which leads to marks below 1.
        let score = f(&row["score"]);
        assert!(
            0.0 < score && score < 1.0,
            "the mark weighs what the model hesitated between, not the digit it wrote: {row}"
        );
        let confidence = f(&row["confidence"]);
        assert!(0.0 < confidence && confidence < 1.0, "{row}");
    }
    for body in endpoint.bodies() {
        assert_eq!(body["logprobs"], true, "{body}");
        assert_eq!(body["top_logprobs"], 8, "{body}");
    }
}

/// A canned llama.cpp endpoint, an app using it, a teacher and a zero-shot LLM version of
/// item 4.13 whose test split holds one more answer, [`ODD_ANSWER`].
async fn canned_version_with_odd_answer() -> (FaultServer, TestApp, String, Value) {
    let endpoint = FaultServer::canned(CANNED_VERDICT).await;
    let app = spawn_app_with_canned_llm(&endpoint.base_url).await;
    let teacher = app.sign_up("Pia").await;
    let odd = json!({ "id": "odd:1", "item_id": "4.13", "answer": ODD_ANSWER, "score": 0.5,
        "split": "test_unseen_answers" });
    let version = zero_shot_llm_version_with(
        &app,
        &teacher.token,
        &["4.13"],
        &odd.to_string(),
        Duration::from_secs(120),
    )
    .await;
    (endpoint, app, teacher.token, version)
}

/// A test answer the canned endpoint will fail on.
const ODD_ANSWER: &str = "Zebra crossings decide which route the packets take.";

#[tokio::test]
async fn a_test_run_leaves_out_an_answer_the_grader_keeps_failing_on_and_says_which() {
    let (endpoint, app, token, version) = canned_version_with_odd_answer().await;
    // Whatever the model is asked about this answer, its reply is not a verdict.
    endpoint.on_body_containing(ODD_ANSWER, Fault::Content("I cannot grade this.".into()));
    let run = finished_run(
        &app,
        &token,
        json!({ "graderVersionId": version }),
        Duration::from_secs(120),
    )
    .await;
    let metrics = &run["metrics"];
    let graded = run["answers"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        graded.len(),
        6,
        "the six SAF test answers are graded: {run}"
    );
    assert!(graded.iter().all(|a| a["studentRef"] != "odd:1"), "{run}");
    assert_eq!(metrics["answers"], 6, "{metrics}");
    let ungraded = metrics["ungraded"].as_array().cloned().unwrap_or_default();
    assert_eq!(ungraded.len(), 1, "{metrics}");
    assert_eq!(ungraded[0]["studentRef"], "odd:1");
    assert_eq!(ungraded[0]["itemLabel"], "4.13");
    assert_eq!(ungraded[0]["repeat"], 0);
    let error = ungraded[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("not valid"), "the reason is given: {error}");
    // The run's report says so too.
    let report = app
        .graphql(
            Some(&token),
            "mutation($input: GenerateReportInput!) { generateReport(input: $input) { html } }",
            json!({ "input": { "testRunId": run["id"], "useLlm": false } }),
        )
        .await
        .ok();
    let html = report["generateReport"]["html"]
        .as_str()
        .unwrap_or_default();
    assert!(
        html.contains("Answers left out") && html.contains("odd:1 (question 4.13)"),
        "{html}"
    );
}

#[tokio::test]
async fn a_test_run_fails_when_answer_after_answer_gets_no_verdict_and_keeps_what_it_graded() {
    let (endpoint, app, token, version) = canned_version_with_odd_answer().await;
    // The first answer is graded (one call at a time); from the second on, no reply is a
    // verdict.
    endpoint.push([Fault::Pass]);
    endpoint.push(std::iter::repeat_n(Fault::Content("Sorry.".into()), 50));
    let run = failed_run(
        &app,
        &token,
        json!({ "graderVersionId": version }),
        "3 answers in a row could not be graded",
    )
    .await;
    // Nothing paid for is lost: whatever was graded before the failures stays.
    let graded = run["answers"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        graded.len(),
        1,
        "the answer graded before the failures stays: {run}"
    );
    assert!(graded[0]["score"].is_number(), "{run}");
}

#[tokio::test]
async fn an_llm_test_run_keeps_a_hosted_endpoint_busy_and_sends_llamacpp_one_call_at_a_time() {
    // A hosted or vLLM endpoint: up to `llm.concurrency` gradings at once.
    let (in_flight, run) = canned_llm_run("vllm").await;
    assert_eq!(in_flight, 3, "three calls in flight at once");
    let rows = run["answers"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 8, "{run}");
    for row in &rows {
        assert!(row["score"].is_number(), "every answer graded: {row}");
        assert_eq!(row["rationale"], "Canned rationale.", "{row}");
    }
    check_metrics_match_rows(&run);

    // The local llama.cpp server decodes one request at a time: one call after another.
    let (in_flight, run) = canned_llm_run("llamacpp").await;
    assert_eq!(in_flight, 1, "one call at a time");
    assert_eq!(run["answers"].as_array().map(Vec::len), Some(8), "{run}");
}

/// An app grading through `endpoint` that retries quickly: 3 retries 10–50 ms apart, 1 s
/// per attempt.
async fn app_with_fast_retries(endpoint: &FaultServer) -> TestApp {
    let base_url = endpoint.base_url.clone();
    spawn_app_with(|settings| {
        settings.llm.provider = "llamacpp".into();
        settings.llm.base_url = base_url;
        settings.llm.model = "canned".into();
        settings.llm.cache = false;
        settings.llm.retry_base_ms = 10;
        settings.llm.retry_max_ms = 50;
        settings.llm.max_retries = 3;
        settings.llm.timeout_secs = 1;
    })
    .await
}

/// The answers a run graded, by student, with their marks.
fn marks_by_student(run: &Value) -> Vec<(String, f64)> {
    let mut marks: Vec<(String, f64)> = run["answers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            (
                row["studentRef"].as_str().unwrap_or_default().to_owned(),
                f(&row["score"]),
            )
        })
        .collect();
    marks.sort_by(|a, b| a.0.cmp(&b.0));
    marks
}

#[tokio::test]
async fn a_whole_test_run_through_429_storms_5xx_stalls_and_garbage_loses_and_repeats_nothing() {
    let endpoint = FaultServer::canned(CANNED_VERDICT).await;
    let app = app_with_fast_retries(&endpoint).await;
    let teacher = app.sign_up("Rosa").await;
    let version = zero_shot_llm_version(
        &app,
        &teacher.token,
        &["4.13", "6.2_IPP"],
        Duration::from_secs(120),
    )
    .await;
    let input = json!({ "graderVersionId": version, "limit": 6 });
    let clean = finished_run(
        &app,
        &teacher.token,
        input.clone(),
        Duration::from_secs(120),
    )
    .await;
    let clean_requests = endpoint.requests();

    // Every grading of the run meets trouble first, within the client's three retries; one
    // call at a time (llama.cpp), so the script meets the calls in order.
    let storm = [
        vec![
            Fault::RateLimited("0".into()),
            Fault::RateLimited("0".into()),
            Fault::RateLimited("0".into()),
        ],
        vec![Fault::Status(503), Fault::Status(502), Fault::Status(500)],
        vec![Fault::Stall(Duration::from_secs(3))],
        vec![
            Fault::Body("<html><body>502 Bad Gateway</body></html>".into()),
            Fault::Body(r#"{"choices": "#.into()),
        ],
        vec![Fault::RateLimited("1".into()), Fault::Status(504)],
        vec![Fault::Status(500), Fault::RateLimited("0".into())],
    ];
    let faults: usize = storm.iter().map(Vec::len).sum();
    for faults in storm {
        endpoint.push(faults);
        endpoint.push([Fault::Pass]);
    }
    let stormy = finished_run(&app, &teacher.token, input, Duration::from_secs(180)).await;

    let before = endpoint.requests();
    assert_eq!(
        before - clean_requests,
        faults + 6,
        "every fault was met, and each of the six answers was graded by one passing call"
    );
    assert_eq!(
        marks_by_student(&stormy),
        marks_by_student(&clean),
        "the same answers graded, each once, with the marks of the run without faults"
    );
    assert_eq!(marks_by_student(&stormy).len(), 6, "{stormy}");
    let metrics = &stormy["metrics"];
    assert_eq!(metrics["answers"], 6, "{metrics}");
    assert_eq!(metrics["ungraded"], json!([]), "{metrics}");
    for key in ["exact", "mae", "qwk"] {
        assert_eq!(metrics[key], clean["metrics"][key], "{key}: {metrics}");
    }

    // A storm that outlasts the retries: the run stops with the reason, keeping what it
    // graded before.
    endpoint.push([Fault::Pass]);
    endpoint.push(std::iter::repeat_n(Fault::RateLimited("0".into()), 400));
    let run = failed_run(
        &app,
        &teacher.token,
        json!({ "graderVersionId": version, "limit": 6 }),
        "The language-model provider is rate limiting requests",
    )
    .await;
    assert_eq!(
        marks_by_student(&run).len(),
        1,
        "the answer graded before the storm stays: {run}"
    );
}
