//! Browser tests: the real web app (frontend/dist) served by the real server, driven in
//! Debian's headless Chromium through chromedriver. Screenshots land in
//! `tests/screenshots/` for review.

mod report_xss;
mod teacher_flow;
mod ungraded;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use gradelab_tests::{spawn_app, workspace_root, TestApp};
use serde_json::{json, Value};

/// A chromedriver process, killed on drop.
pub(crate) struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn start_driver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port");
    let binary =
        std::env::var("GRADELAB_TEST_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let child = Command::new(binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is installed (apt-get install chromium-driver)");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start");
}

pub(crate) async fn browser(driver: &Driver) -> Client {
    // Both of rustls's crypto back-ends are compiled in; without a choice it panics.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let profile = tempfile::tempdir().expect("profile dir").keep();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-quic",
                "--window-size=1280,860",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    ClientBuilder::rustls()
        .expect("TLS roots")
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a browser session")
}

pub(crate) async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    let dir = workspace_root().join("tests/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).expect("screenshot written");
    println!("screenshot: {}", path.display());
}

pub(crate) async fn fill(client: &Client, selector: &str, text: &str) {
    let field = client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(selector))
        .await
        .unwrap_or_else(|err| panic!("{selector} appears: {err}"));
    field.clear().await.expect("cleared");
    field.send_keys(text).await.expect("typed");
}

/// A GraphQL request as `token`'s user; the response's `data`.
pub(crate) async fn gql(app: &TestApp, token: &str, query: &str, variables: Value) -> Value {
    app.graphql(Some(token), query, variables).await.ok()
}

/// Waits (up to 5 minutes) until job `id` has ended; its status, error and result.
pub(crate) async fn wait_job(app: &TestApp, token: &str, id: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let job = gql(
            app,
            token,
            "query($id: ID!) { job(id: $id) { status error result } }",
            json!({ "id": id }),
        )
        .await["job"]
            .clone();
        if matches!(
            job["status"].as_str(),
            Some("SUCCEEDED" | "FAILED" | "CANCELLED")
        ) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) async fn wait_for(client: &Client, selector: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(selector))
        .await
        .unwrap_or_else(|err| panic!("{selector} appears: {err}"))
}

#[tokio::test]
async fn a_teacher_signs_up_signs_out_and_signs_back_in() {
    let app = spawn_app().await;
    let driver = start_driver().await;
    let client = browser(&driver).await;

    // An anonymous visit to the dashboard lands on the sign-in page.
    client
        .goto(&format!("{}/", app.base_url))
        .await
        .expect("page loads");
    wait_for(&client, "#email").await;
    assert!(client
        .current_url()
        .await
        .expect("url")
        .path()
        .ends_with("/signin"));
    screenshot(&client, "01-signin").await;

    client
        .goto(&format!("{}/signup", app.base_url))
        .await
        .expect("page loads");
    fill(&client, "#display-name", "Ms Rivera").await;
    fill(&client, "#email", "rivera@school.example.org").await;
    fill(&client, "#password", "photosynthesis-2026").await;
    screenshot(&client, "02-signup").await;
    wait_for(&client, "button[type=submit]")
        .await
        .click()
        .await
        .expect("submit");

    wait_for(&client, "[data-testid=dashboard]").await;
    let name = wait_for(&client, "[data-testid=user-name]")
        .await
        .text()
        .await
        .expect("text");
    assert_eq!(name.trim(), "Ms Rivera");
    screenshot(&client, "03-dashboard").await;

    wait_for(&client, "[data-testid=sign-out]")
        .await
        .click()
        .await
        .expect("sign out");
    wait_for(&client, "#email").await;
    // After signing out, the dashboard is no longer reachable.
    client
        .goto(&format!("{}/", app.base_url))
        .await
        .expect("page loads");
    wait_for(&client, "#password").await;

    fill(&client, "#email", "rivera@school.example.org").await;
    fill(&client, "#password", "wrong password!").await;
    wait_for(&client, "button[type=submit]")
        .await
        .click()
        .await
        .expect("submit");
    let error = wait_for(&client, "[data-testid=form-error]")
        .await
        .text()
        .await
        .expect("text");
    assert!(error.contains("incorrect"), "{error}");
    screenshot(&client, "04-signin-error").await;

    fill(&client, "#password", "photosynthesis-2026").await;
    wait_for(&client, "button[type=submit]")
        .await
        .click()
        .await
        .expect("submit");
    wait_for(&client, "[data-testid=dashboard]").await;

    client.close().await.expect("browser closes");
}
