//! The web app as the server sends it: compressed for browsers that accept gzip, and the
//! client-side routes answered with the app's page.

use gradelab_tests::{spawn_app, workspace_root};

#[tokio::test]
async fn the_web_app_is_sent_gzipped_and_client_routes_get_the_app_page() {
    let dist = workspace_root().join("frontend/dist");
    let Some(wasm) = std::fs::read_dir(&dist).ok().and_then(|entries| {
        entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|name| name.ends_with("_bg.wasm"))
    }) else {
        assert!(
            std::env::var("CI").is_err(),
            "frontend/dist is built before the tests in CI"
        );
        eprintln!("SKIPPED: build the web app first (frontend/build.sh)");
        return;
    };
    let app = spawn_app().await;
    let raw = std::fs::metadata(dist.join(&wasm)).expect("wasm").len();

    let response = app
        .client
        .get(format!("{}/{wasm}", app.base_url))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .expect("server answers");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("gzip")
    );
    let body = response.bytes().await.expect("body");
    assert_eq!(&body[..2], &[0x1f, 0x8b], "a gzip stream");
    assert!(
        (body.len() as u64) < raw / 2,
        "{} bytes sent for a {raw}-byte wasm",
        body.len()
    );

    // A deep link into the app gets the app's page, not a 404.
    let page = app
        .client
        .get(format!("{}/guides/1", app.base_url))
        .send()
        .await
        .expect("server answers");
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap_or_default().contains("<html"));
}
