//! The whole flow a teacher follows, in the real browser against the real server: sign up,
//! upload a DOCX guide, edit an extracted item, see the duplicate message, import scored
//! answers, estimate and start training with the similarity engine and watch the learning
//! curve grow live, test the trained grader and open the test run's report, save an API key
//! that is never shown again; then a second teacher who cannot see any of it. Also measures the cold load's first render.

use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use gradelab_tests::{spawn_app, workspace_root};
use serde_json::Value;

use crate::{browser, fill, screenshot, start_driver, wait_for};

/// Runs `script` (a function body) in the page and returns its value.
async fn run_js(client: &Client, script: &str) -> Value {
    client
        .execute(script, vec![])
        .await
        .unwrap_or_else(|err| panic!("script runs: {err}"))
}

/// Waits until `selector`'s text satisfies `test`, for up to `secs` seconds; returns it.
async fn wait_text(
    client: &Client,
    selector: &str,
    secs: u64,
    test: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(element) = client.find(Locator::Css(selector)).await {
            if let Ok(text) = element.text().await {
                if test(&text) {
                    return text;
                }
                last = text;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    screenshot(client, "flow-failure").await;
    let page = client
        .find(Locator::Css("main"))
        .await
        .ok()
        .map(|main| async move { main.text().await.unwrap_or_default() });
    let page = match page {
        Some(text) => text.await,
        None => String::new(),
    };
    panic!("{selector} never matched within {secs} s; last text: {last:?}; page: {page}");
}

/// Waits until at least `n` elements match `selector`; returns how many.
async fn wait_count(client: &Client, selector: &str, n: usize, secs: u64) -> usize {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let found = client
            .find_all(Locator::Css(selector))
            .await
            .map_or(0, |all| all.len());
        if found >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{selector}: {found} of {n} within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn click(client: &Client, selector: &str) {
    wait_for(client, selector)
        .await
        .click()
        .await
        .unwrap_or_else(|err| panic!("{selector} clicks: {err}"));
}

async fn path(client: &Client) -> String {
    client.current_url().await.expect("url").path().to_owned()
}

async fn goto(client: &Client, base: &str, to: &str) {
    client
        .goto(&format!("{base}{to}"))
        .await
        .unwrap_or_else(|err| panic!("{to} loads: {err}"));
}

async fn sign_up(client: &Client, base: &str, name: &str, email: &str) {
    goto(client, base, "/signup").await;
    fill(client, "#display-name", name).await;
    fill(client, "#email", email).await;
    fill(client, "#password", "photosynthesis-2026").await;
    click(client, "button[type=submit]").await;
    wait_for(client, "[data-testid=dashboard]").await;
}

/// The first render of a cold load (fresh profile, empty cache), from the browser's own
/// timings: first contentful paint is the app's first render (the page is empty until
/// the wasm mounts it).
async fn cold_load_timings(client: &Client, base: &str) -> Value {
    goto(client, base, "/signin").await;
    wait_for(client, "#email").await;
    // Paint entries are recorded asynchronously: wait for the first contentful paint.
    for _ in 0..50 {
        let timings = run_js(
            client,
            r#"
            const nav = performance.getEntriesByType("navigation")[0] || {};
            const fcp = performance.getEntriesByName("first-contentful-paint")[0];
            const wasm = performance.getEntriesByType("resource")
                .find((r) => r.name.endsWith(".wasm")) || {};
            return {
                firstContentfulPaintMs: fcp ? fcp.startTime : null,
                responseEndMs: nav.responseEnd,
                domContentLoadedMs: nav.domContentLoadedEventEnd,
                loadEventMs: nav.loadEventEnd,
                wasmFetchMs: wasm.duration,
                wasmTransferBytes: wasm.transferSize,
                wasmBodyBytes: wasm.decodedBodySize,
            };
            "#,
        )
        .await;
        if timings["firstContentfulPaintMs"].is_number() {
            return timings;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no first-contentful-paint entry");
}

#[tokio::test]
async fn a_teacher_follows_the_whole_flow_in_the_browser() {
    let app = spawn_app().await;
    let base = app.base_url.clone();
    let driver = start_driver().await;
    let client = browser(&driver).await;
    let fixtures = workspace_root().join("tests/fixtures");
    let guide_file = fixtures.join("guides/biology_mock_2026.docx");
    let answers_file = fixtures.join("answers/science_scored.csv");

    // Cold load: a fresh profile, nothing cached.
    let timings = cold_load_timings(&client, &base).await;
    println!("cold load timings: {timings}");
    let first_render = timings["firstContentfulPaintMs"]
        .as_f64()
        .expect("a first paint");
    println!("time to first render (cold load, first contentful paint): {first_render:.0} ms");
    assert!(
        first_render < 5_000.0,
        "first render took {first_render} ms"
    );
    screenshot(&client, "flow-01-signin").await;

    // Sign up.
    goto(&client, &base, "/signup").await;
    fill(&client, "#display-name", "Ms Rivera").await;
    fill(&client, "#email", "rivera@school.example.org").await;
    fill(&client, "#password", "photosynthesis-2026").await;
    screenshot(&client, "flow-02-signup").await;
    click(&client, "button[type=submit]").await;
    wait_for(&client, "[data-testid=dashboard]").await;
    screenshot(&client, "flow-03-dashboard-empty").await;

    // Upload the DOCX guide, extracted by the built-in parser (no model call).
    click(&client, "[data-testid=nav-guides]").await;
    wait_for(&client, "[data-testid=guide-upload]").await;
    wait_for(&client, "[data-testid=method]")
        .await
        .select_by_value("PARSER")
        .await
        .expect("method chosen");
    wait_for(&client, "[data-testid=file-input]")
        .await
        .send_keys(&guide_file.display().to_string())
        .await
        .expect("file chosen");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path(&client).await.starts_with("/guides/") {
        assert!(Instant::now() < deadline, "no guide page after the upload");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let guide_path = path(&client).await;
    let guide_id = guide_path.trim_start_matches("/guides/").to_owned();
    let items = wait_count(&client, "[data-testid=item]", 5, 60).await;
    println!("guide {guide_id}: {items} items extracted");
    let first_label = wait_text(&client, "[data-testid=item-label]", 5, |t| !t.is_empty()).await;
    assert_eq!(first_label.trim(), "1(a)");
    screenshot(&client, "flow-04-guide-items").await;

    // Edit the first item's question inline.
    click(&client, "[data-testid=edit-item]").await;
    fill(
        &client,
        "[data-testid=edit-question]",
        "Name the structure that controls what enters and leaves an animal cell.",
    )
    .await;
    screenshot(&client, "flow-05-item-editor").await;
    click(&client, "[data-testid=save-item]").await;
    wait_text(&client, "[data-testid=item-question]", 15, |t| {
        t.contains("leaves an animal cell")
    })
    .await;
    // The edit is saved on the server: it survives a reload.
    client.refresh().await.expect("reload");
    wait_text(&client, "[data-testid=item-question]", 15, |t| {
        t.contains("leaves an animal cell")
    })
    .await;

    // The same file again: the duplicate message names the existing guide.
    goto(&client, &base, "/guides").await;
    wait_for(&client, "[data-testid=method]")
        .await
        .select_by_value("PARSER")
        .await
        .expect("method chosen");
    wait_for(&client, "[data-testid=file-input]")
        .await
        .send_keys(&guide_file.display().to_string())
        .await
        .expect("file chosen");
    let duplicate = wait_text(&client, "[data-testid=duplicate-error]", 30, |t| {
        !t.is_empty()
    })
    .await;
    println!("duplicate message: {duplicate}");
    let link = wait_for(&client, "[data-testid=duplicate-link]")
        .await
        .attr("href")
        .await
        .expect("href");
    assert_eq!(link.as_deref(), Some(guide_path.as_str()));
    assert_eq!(path(&client).await, "/guides", "stays on the list");
    wait_count(&client, "[data-testid=guide-row]", 1, 10).await;
    assert_eq!(
        client
            .find_all(Locator::Css("[data-testid=guide-row]"))
            .await
            .map_or(0, |rows| rows.len()),
        1,
        "no second guide"
    );
    screenshot(&client, "flow-06-duplicate").await;

    // Import the scored answers. Two rows give item 1(a) more than its 1 mark: they are
    // listed by line, and the good rows are imported.
    goto(&client, &base, &format!("{guide_path}/answers")).await;
    click(&client, "[data-testid=skip-bad-rows]").await;
    wait_for(&client, "[data-testid=answers-file]")
        .await
        .send_keys(&answers_file.display().to_string())
        .await
        .expect("file chosen");
    let imported = wait_text(&client, "[data-testid=import-result]", 30, |t| {
        t.contains("Imported")
    })
    .await;
    println!("import: {imported}");
    assert!(imported.contains("Imported 16 answers"), "{imported}");
    let bad_rows = wait_count(&client, "[data-testid=bad-row]", 2, 5).await;
    assert_eq!(bad_rows, 2);
    wait_text(&client, "[data-testid=answers-total]", 15, |t| {
        t.contains("16 answers")
    })
    .await;
    screenshot(&client, "flow-07-answers").await;

    // Training: the estimate first, then start, then the live page.
    goto(&client, &base, "/training").await;
    wait_for(&client, "[data-testid=train-guide]")
        .await
        .select_by_value(&guide_id)
        .await
        .expect("guide chosen");
    wait_for(&client, "[data-testid=train-engine]")
        .await
        .select_by_value("SIMILARITY")
        .await
        .expect("engine chosen");
    fill(&client, "[data-testid=train-epochs]", "6").await;
    fill(&client, "#train-patience", "6").await;
    click(&client, "[data-testid=estimate]").await;
    let calls = wait_text(&client, "[data-testid=estimate-calls]", 30, |t| {
        !t.is_empty()
    })
    .await;
    let cost = wait_text(&client, "[data-testid=estimate-cost]", 5, |t| !t.is_empty()).await;
    println!("estimate: {calls} model calls, cost {cost}");
    screenshot(&client, "flow-08-training-estimate").await;

    // Record every redraw of the learning curve from before the job starts: the page is
    // never reloaded, so this sees each point as its `epoch` event arrives.
    run_js(
        &client,
        r#"
        window.__curve = [];
        const seen = () => {
            const chart = document.querySelector("[data-testid=epoch-chart]");
            const status = document.querySelector("[data-testid=job-status]");
            if (!chart) return;
            const points = Number(chart.getAttribute("data-points"));
            const last = window.__curve[window.__curve.length - 1];
            if (!last || last.points !== points) {
                window.__curve.push({
                    points, at: performance.now(), status: status ? status.textContent : "",
                });
            }
        };
        new MutationObserver(seen).observe(document.body, {
            subtree: true, childList: true, attributes: true, characterData: true,
        });
        return true;
        "#,
    )
    .await;
    click(&client, "[data-testid=start-training]").await;
    wait_for(&client, "[data-testid=training-job-page]").await;
    let job_path = path(&client).await;
    assert!(job_path.starts_with("/training/"), "{job_path}");
    wait_for(&client, "[data-testid=epoch-chart]").await;
    let done = wait_text(&client, "[data-testid=job-status]", 300, |t| {
        matches!(t.trim(), "Done" | "Failed" | "Cancelled")
    })
    .await;
    assert_eq!(done.trim(), "Done", "the training job finished");
    let points = wait_count(&client, "[data-testid=epoch-row]", 2, 10).await;
    // Past the progress bar's 0.3 s transition.
    tokio::time::sleep(Duration::from_millis(500)).await;
    screenshot(&client, "flow-09-training-live").await;
    let curve = run_js(&client, "return window.__curve;").await;
    println!("learning curve redraws (points, ms, job status): {curve}");
    let redraws: Vec<(i64, String)> = curve
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| {
            (
                r["points"].as_i64().unwrap_or_default(),
                r["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let growing: Vec<i64> = redraws.iter().map(|(n, _)| *n).filter(|n| *n > 0).collect();
    assert!(
        growing.len() >= 2 && growing.windows(2).all(|w| w[0] < w[1]),
        "the chart gained points one redraw at a time: {redraws:?}"
    );
    let while_running = redraws
        .iter()
        .filter(|(n, status)| *n > 0 && status.trim() != "Done")
        .count();
    assert!(
        while_running >= 2,
        "at least two epoch points arrived while the job ran: {redraws:?}"
    );
    assert_eq!(growing.last().copied(), Some(points as i64));

    // Run a test with the trained grader on the held-back test answers.
    click(&client, "[data-testid=start-test-run]").await;
    wait_for(&client, "[data-testid=test-run-page]").await;
    let run_path = path(&client).await;
    assert!(run_path.starts_with("/test-runs/"), "{run_path}");
    let metrics = wait_count(&client, "[data-testid=metric]", 8, 120).await;
    wait_text(&client, "[data-testid=test-metrics]", 30, |t| {
        t.contains("QWK")
    })
    .await;
    let cells = wait_count(&client, "[data-testid=heat-cell]", 1, 10).await;
    let dots = wait_count(&client, "[data-testid=scatter-point]", 1, 10).await;
    let review = client
        .find_all(Locator::Css("[data-testid=review-item]"))
        .await
        .map_or(0, |items| items.len());
    println!(
        "test run {run_path}: {metrics} metrics, {cells} heat-map cells, {dots} scatter points, {review} to review"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    screenshot(&client, "flow-10-test-run").await;

    // Write its report and read it inline, in a frame that cannot run scripts.
    click(&client, "[data-testid=generate-report]").await;
    wait_for(&client, "[data-testid=report-page]").await;
    let report_path = path(&client).await;
    assert!(report_path.starts_with("/reports/"), "{report_path}");
    let frame = wait_for(&client, "[data-testid=report-frame]").await;
    assert_eq!(
        frame.attr("sandbox").await.expect("sandbox").as_deref(),
        Some(""),
        "the report frame is sandboxed"
    );
    let html = frame
        .attr("srcdoc")
        .await
        .expect("srcdoc")
        .unwrap_or_default();
    assert!(html.contains("<html"), "the report is a whole document");
    let title = wait_text(&client, "[data-testid=report-title]", 10, |t| !t.is_empty()).await;
    println!(
        "report {report_path}: {title} ({} bytes of HTML)",
        html.len()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    screenshot(&client, "flow-11-report").await;
    click(&client, "[data-testid=nav-reports]").await;
    wait_count(&client, "[data-testid=report-row]", 1, 15).await;

    // The dashboard lists the jobs and the report.
    click(&client, "[data-testid=nav-dashboard]").await;
    wait_count(&client, "[data-testid=job-row]", 1, 15).await;
    wait_count(&client, "[data-testid=report-row]", 1, 15).await;
    screenshot(&client, "flow-12-dashboard").await;

    // Settings: an API key is accepted and never shown again.
    click(&client, "[data-testid=nav-settings]").await;
    wait_for(&client, "[data-testid=llm-settings]").await;
    screenshot(&client, "flow-13-settings").await;
    let secret = "sk-browser-test-0123456789";
    fill(&client, "[data-testid=llm-api-key]", secret).await;
    click(&client, "[data-testid=llm-save]").await;
    wait_text(&client, "[data-testid=llm-key-state]", 15, |t| {
        t.contains("A key is stored")
    })
    .await;
    let typed = wait_for(&client, "[data-testid=llm-api-key]")
        .await
        .prop("value")
        .await
        .expect("value");
    assert_eq!(typed.as_deref(), Some(""), "the key field is emptied");
    client.refresh().await.expect("reload");
    wait_text(&client, "[data-testid=llm-key-state]", 15, |t| {
        t.contains("A key is stored")
    })
    .await;
    let html = client.source().await.expect("page source");
    assert!(!html.contains(secret), "the key never comes back");
    screenshot(&client, "flow-14-settings-saved").await;

    // A second teacher sees none of it.
    click(&client, "[data-testid=sign-out]").await;
    wait_for(&client, "#email").await;
    sign_up(&client, &base, "Mr Okafor", "okafor@school.example.org").await;
    goto(&client, &base, "/guides").await;
    wait_for(&client, "[data-testid=guides-empty]").await;
    goto(&client, &base, &guide_path).await;
    let missing = wait_text(&client, "[data-testid=guide-missing]", 15, |t| {
        !t.is_empty()
    })
    .await;
    println!("second teacher at {guide_path}: {missing}");
    assert!(
        client
            .find_all(Locator::Css("[data-testid=item]"))
            .await
            .map_or(0, |items| items.len())
            == 0
    );
    goto(&client, &base, &job_path).await;
    wait_for(&client, "[data-testid=job-missing]").await;
    goto(&client, &base, &run_path).await;
    wait_for(&client, "[data-testid=test-run-missing]").await;
    goto(&client, &base, &report_path).await;
    wait_for(&client, "[data-testid=report-missing]").await;
    goto(&client, &base, "/reports").await;
    let empty = wait_for(&client, "[data-testid=reports-empty]").await;
    assert!(empty.is_displayed().await.expect("displayed"), "no reports");
    assert_eq!(
        client
            .find_all(Locator::Css("[data-testid=report-row]"))
            .await
            .map_or(0, |rows| rows.len()),
        0
    );
    screenshot(&client, "flow-15-second-teacher").await;

    client.close().await.expect("browser closes");
}
