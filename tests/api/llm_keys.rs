//! Users' API keys and base URLs: keys are sealed at rest (also those stored in plain text
//! by earlier versions, at start-up), still reach the provider, and are never returned; with
//! `llm.allow_private_base_urls = false` a user's base URL may not reach internal addresses.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use entity::users;
use gradelab::config::Settings;
use gradelab::llm::{CallContext, LlmClient, Message, SecretBox};
use gradelab_tests::fault_proxy::completion;
use gradelab_tests::{spawn_app_with, TestApp, TestUser};
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, Set};
use serde_json::{json, Value};

const KEY: &str = "sk-test-SECRET-0123456789abcdef";
const UPDATE: &str =
    "mutation($input: UpdateLlmSettingsInput!) { updateLlmSettings(input: $input) \
                      { provider baseUrl model hasApiKey customized } }";
const STATUS: &str = "{ llmStatus { reachable baseUrl message } }";

/// An OpenAI-compatible endpoint that records the `Authorization` header of every request.
struct KeyServer {
    base_url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl KeyServer {
    async fn start() -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = |State(seen): State<Arc<Mutex<Vec<String>>>>, headers: &HeaderMap| {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("(none)")
                .to_owned();
            seen.lock().map(|mut seen| seen.push(auth)).ok();
        };
        let router = Router::new()
            .route(
                "/v1/models",
                get(move |state, headers: HeaderMap| async move {
                    record(state, &headers);
                    Json(json!({"data": [{"id": "local"}]}))
                }),
            )
            .route(
                "/v1/chat/completions",
                post(move |state, headers: HeaderMap| async move {
                    record(state, &headers);
                    Json(completion("Fine."))
                }),
            )
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            base_url: format!("http://{addr}/v1"),
            seen,
        }
    }

    fn seen(&self) -> Vec<String> {
        self.seen
            .lock()
            .map(|seen| seen.clone())
            .unwrap_or_default()
    }
}

struct Setup {
    app: TestApp,
    settings: Settings,
    db: DatabaseConnection,
    user: TestUser,
    user_id: i32,
}

/// A server whose own endpoint is `server_url`, and a signed-up user.
async fn setup(server_url: &str, configure: impl FnOnce(&mut Settings)) -> Setup {
    let mut captured = None;
    let app = spawn_app_with(|settings| {
        settings.llm.base_url = server_url.to_owned();
        settings.llm.max_retries = 0;
        configure(settings);
        captured = Some(settings.clone());
    })
    .await;
    let settings = captured.expect("settings were configured");
    let db = gradelab::startup::connect(&settings)
        .await
        .expect("test database");
    let user = app.sign_up("Keys").await;
    let user_id = user.id.parse().expect("numeric user id");
    Setup {
        app,
        settings,
        db,
        user,
        user_id,
    }
}

async fn stored_settings(db: &DatabaseConnection, user_id: i32) -> Value {
    users::Entity::find_by_id(user_id)
        .one(db)
        .await
        .ok()
        .flatten()
        .and_then(|user| user.settings)
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn api_keys_are_sealed_at_rest_reach_the_provider_and_are_never_returned() {
    let provider = KeyServer::start().await;
    let s = setup("http://127.0.0.1:9/v1", |_| {}).await;

    let updated = s
        .app
        .graphql(
            Some(&s.user.token),
            UPDATE,
            json!({"input": {"provider": "CUSTOM", "baseUrl": provider.base_url, "model": "local",
                             "apiKey": KEY}}),
        )
        .await
        .ok();
    assert_eq!(updated["updateLlmSettings"]["hasApiKey"], true);
    assert!(!updated.to_string().contains("SECRET"));

    // The database row holds a sealed value, not the key.
    let stored = stored_settings(&s.db, s.user_id).await;
    let sealed = stored["llm"]["apiKey"].as_str().unwrap_or_default();
    assert!(sealed.starts_with("enc:v1:"), "{stored}");
    assert!(!stored.to_string().contains("SECRET"), "{stored}");
    let key_file = s.app.data_dir.join("secret.key");
    assert!(
        key_file.exists(),
        "the key-encryption key lives outside the database"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
    }

    // The server opens it for the user's own requests: the provider sees the key…
    let status = s
        .app
        .graphql(Some(&s.user.token), STATUS, json!({}))
        .await
        .ok();
    assert_eq!(status["llmStatus"]["reachable"], true, "{status}");
    assert!(!status.to_string().contains("SECRET"));
    assert_eq!(provider.seen(), vec![format!("Bearer {KEY}")]);
    // …and so does a grading call made with the user's parameters.
    let llm = LlmClient::new(&s.settings.llm, s.db.clone())
        .with_secrets(SecretBox::load_or_create(&s.settings).expect("the server's secret key"));
    let params = llm.params_for_user(s.user_id).await.expect("params");
    llm.chat(
        &CallContext::task("grade").user(s.user_id),
        &params,
        &[Message::user("Grade this.")],
    )
    .await
    .expect("call with the user's key");
    assert_eq!(provider.seen().last(), Some(&format!("Bearer {KEY}")));

    // No response carries the key; the field does not exist.
    let read = s
        .app
        .graphql(Some(&s.user.token), "{ llmSettings { apiKey } }", json!({}))
        .await;
    assert!(!read.errors.is_empty());
    let settings = s
        .app
        .graphql(
            Some(&s.user.token),
            "{ llmSettings { provider baseUrl model temperature hasApiKey customized } }",
            json!({}),
        )
        .await
        .ok();
    assert_eq!(settings["llmSettings"]["hasApiKey"], true);
    assert!(!settings.to_string().contains("SECRET"));

    // A sealed value copied into another account does not open there.
    let other = s.app.sign_up("Other").await;
    let other_id: i32 = other.id.parse().expect("numeric id");
    let row = users::ActiveModel {
        id: Set(other_id),
        settings: Set(Some(stored.clone())),
        ..Default::default()
    };
    row.update(&s.db).await.expect("copy the sealed key");
    let theirs = s.app.graphql(Some(&other.token), STATUS, json!({})).await;
    assert_eq!(theirs.error_code(), Some("BAD_USER_INPUT"), "{theirs:?}");
    assert!(theirs
        .error_message()
        .unwrap_or_default()
        .contains("enter the key again"));
    assert_eq!(provider.seen().len(), 2, "nothing was sent with it");
}

#[tokio::test]
async fn keys_stored_in_plain_text_still_work_and_are_sealed_at_the_next_start() {
    let provider = KeyServer::start().await;
    let s = setup("http://127.0.0.1:9/v1", |_| {}).await;
    // A row as an earlier version wrote it.
    let legacy = json!({"llm": {"provider": "custom", "baseUrl": provider.base_url, "apiKey": KEY},
                        "ui": {"theme": "dark"}});
    let row = users::ActiveModel {
        id: Set(s.user_id),
        settings: Set(Some(legacy)),
        ..Default::default()
    };
    row.update(&s.db).await.expect("legacy settings");

    let status = s
        .app
        .graphql(Some(&s.user.token), STATUS, json!({}))
        .await
        .ok();
    assert_eq!(status["llmStatus"]["reachable"], true, "{status}");
    assert_eq!(provider.seen(), vec![format!("Bearer {KEY}")]);

    // A second server on the same database and data directory (a restart) seals it.
    let same = s.settings.clone();
    let restarted = spawn_app_with(move |settings| {
        let bind = settings.server.bind;
        *settings = same;
        settings.server.bind = bind;
    })
    .await;
    let stored = stored_settings(&s.db, s.user_id).await;
    assert!(
        stored["llm"]["apiKey"]
            .as_str()
            .is_some_and(|key| key.starts_with("enc:v1:")),
        "{stored}"
    );
    assert!(!stored.to_string().contains("SECRET"));
    assert_eq!(stored["ui"]["theme"], "dark", "other settings are kept");
    let status = restarted
        .graphql(Some(&s.user.token), STATUS, json!({}))
        .await
        .ok();
    assert_eq!(status["llmStatus"]["reachable"], true, "{status}");
    assert_eq!(provider.seen().last(), Some(&format!("Bearer {KEY}")));
}

#[tokio::test]
async fn private_base_urls_are_allowed_by_default() {
    let provider = KeyServer::start().await;
    let s = setup("http://127.0.0.1:9/v1", |_| {}).await;
    let updated = s
        .app
        .graphql(
            Some(&s.user.token),
            UPDATE,
            json!({"input": {"provider": "CUSTOM", "baseUrl": provider.base_url}}),
        )
        .await
        .ok();
    assert_eq!(updated["updateLlmSettings"]["baseUrl"], provider.base_url);
    let status = s
        .app
        .graphql(Some(&s.user.token), STATUS, json!({}))
        .await
        .ok();
    assert_eq!(status["llmStatus"]["reachable"], true, "{status}");
    assert_eq!(provider.seen().len(), 1);
}

#[tokio::test]
async fn with_private_base_urls_off_users_cannot_reach_internal_addresses() {
    let server_endpoint = KeyServer::start().await;
    let internal = KeyServer::start().await;
    let s = setup(&server_endpoint.base_url, |settings| {
        settings.llm.allow_private_base_urls = false;
    })
    .await;
    let port = internal
        .base_url
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/v1")
        .to_owned();

    for url in [
        internal.base_url.clone(),
        format!("http://localhost:{port}/v1"),
        "http://169.254.169.254/latest".to_owned(),
        "http://10.0.0.5:8000/v1".to_owned(),
        "http://[::1]:8000/v1".to_owned(),
    ] {
        let refused = s
            .app
            .graphql(
                Some(&s.user.token),
                UPDATE,
                json!({"input": {"provider": "CUSTOM", "baseUrl": url}}),
            )
            .await;
        assert_eq!(refused.error_code(), Some("BAD_USER_INPUT"), "{url}");
        let message = refused.error_message().unwrap_or_default();
        assert!(
            message.contains("loopback, private or link-local"),
            "{url}: {message}"
        );
    }
    // A preset whose default URL is local is refused the same way.
    let ollama = s
        .app
        .graphql(
            Some(&s.user.token),
            UPDATE,
            json!({"input": {"provider": "OLLAMA"}}),
        )
        .await;
    assert_eq!(ollama.error_code(), Some("BAD_USER_INPUT"));

    // A public address is accepted (nothing is sent when saving).
    let public = s
        .app
        .graphql(
            Some(&s.user.token),
            UPDATE,
            json!({"input": {"provider": "CUSTOM", "baseUrl": "https://93.184.215.14/v1"}}),
        )
        .await
        .ok();
    assert_eq!(
        public["updateLlmSettings"]["baseUrl"],
        "https://93.184.215.14/v1"
    );

    // The server's own endpoint stays usable, though it is on loopback.
    let defaults = s.app.sign_up("Defaults").await;
    let status = s
        .app
        .graphql(Some(&defaults.token), STATUS, json!({}))
        .await
        .ok();
    assert_eq!(status["llmStatus"]["reachable"], true, "{status}");
    assert_eq!(server_endpoint.seen().len(), 1);

    // A URL stored before the switch was turned off is refused when used: by address, and
    // by name when the name resolves to loopback.
    for url in [
        internal.base_url.clone(),
        format!("http://localhost:{port}/v1"),
    ] {
        let row = users::ActiveModel {
            id: Set(s.user_id),
            settings: Set(Some(json!({"llm": {"provider": "custom", "baseUrl": url}}))),
            ..Default::default()
        };
        row.update(&s.db).await.expect("stored URL");
        let status = s
            .app
            .graphql(Some(&s.user.token), STATUS, json!({}))
            .await
            .ok();
        assert_eq!(status["llmStatus"]["reachable"], false, "{url}: {status}");
    }
    assert!(internal.seen().is_empty(), "no request reached it");
}
