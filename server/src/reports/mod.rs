//! Self-contained HTML reports on a training job or a test run: figures, inline SVG charts,
//! provenance and a narrative, rendered by an auto-escaping template, and the download route.
//!
//! A report has no scripts and makes no requests: CSS is inline, charts are inline SVG and
//! a Content-Security-Policy meta tag (`default-src 'none'`) forbids anything else. Every
//! text that a user, a student or a model wrote goes through the template's HTML escaping.

pub mod charts;
pub mod data;
pub mod narrative;

use std::sync::OnceLock;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment};
use regex::Regex;
use serde::Serialize;

use self::data::ReportData;
use self::narrative::{AllowedNumbers, Narrative};
use crate::service::accounts;
use crate::startup::HttpState;
use crate::state::AppState;

/// The Content-Security-Policy of every report, as a meta tag and as a download header.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

const TEMPLATE: &str = include_str!("report.html.j2");

fn environment() -> &'static Result<Environment<'static>, minijinja::Error> {
    static ENV: OnceLock<Result<Environment<'static>, minijinja::Error>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // HTML escaping for every template, whatever its name.
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.add_template("report.html", TEMPLATE)?;
        Ok(env)
    })
}

#[derive(Serialize)]
struct Charts {
    learning_curve: String,
    confusion: String,
    scatter: String,
}

#[derive(Serialize)]
struct Context<'a> {
    data: &'a ReportData,
    narrative: &'a Narrative,
    charts: Charts,
}

/// Renders the report document.
pub fn render(data: &ReportData, narrative: &Narrative) -> anyhow::Result<String> {
    let env = environment()
        .as_ref()
        .map_err(|err| anyhow::anyhow!("the report template does not compile: {err}"))?;
    let template = env.get_template("report.html")?;
    let ctx = Context {
        data,
        narrative,
        charts: Charts {
            learning_curve: charts::learning_curve(&data.epochs),
            confusion: charts::confusion(&data.confusion),
            scatter: charts::scatter(&data.scatter),
        },
    };
    Ok(template.render(minijinja::Value::from(Serde(&ctx)))?)
}

fn regex(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| {
        #[expect(clippy::unwrap_used, reason = "constant patterns")]
        Regex::new(pattern).unwrap()
    })
}

/// The visible text of a rendered report that a narrative may cite: without the narrative
/// itself, the style sheet, tags, and elements marked `nocite` (student answers, rationales,
/// titles, hashes and identifiers).
pub fn cited_text(html: &str) -> String {
    static NARRATIVE: OnceLock<Regex> = OnceLock::new();
    static STYLE: OnceLock<Regex> = OnceLock::new();
    static NOCITE: OnceLock<Regex> = OnceLock::new();
    static TAG: OnceLock<Regex> = OnceLock::new();
    let text =
        regex(&NARRATIVE, r"(?s)<!--narrative-->.*?<!--/narrative-->").replace_all(html, " ");
    let text = regex(&STYLE, r"(?s)<style>.*?</style>|<title>.*?</title>").replace_all(&text, " ");
    // Escaped content holds no `<`, so the first closing tag closes the element.
    let text = regex(
        &NOCITE,
        r#"<(?:span|q|code|td|div)\s+class="[^"]*\bnocite\b[^"]*"[^>]*>[^<]*</(?:span|q|code|td|div)>"#,
    )
    .replace_all(&text, " ");
    let text = regex(&TAG, r"<[^>]*>").replace_all(&text, " ");
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&#x2f;", "/")
        .replace("&amp;", "&")
}

/// The numbers a rendered report shows.
pub fn allowed_numbers(html: &str) -> AllowedNumbers {
    AllowedNumbers::from_text(&cited_text(html))
}

/// The report routes: `GET /reports/{id}/download` with the caller's bearer token.
pub fn routes() -> Router<HttpState> {
    Router::new().route("/reports/{id}/download", get(download))
}

async fn download(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(token) = token else {
        return problem(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Send your token as `Authorization: Bearer <token>`.",
        );
    };
    let user = match accounts::authenticate(&app, token).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            return problem(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "Your session has expired or was revoked; sign in again.",
            )
        }
        Err(err) => {
            tracing::error!(error = %err, "authenticating a report download failed");
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "Internal server error; the details are in the server log.",
            );
        }
    };
    let not_found = || {
        problem(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!(
                "report {} not found",
                id.chars().take(20).collect::<String>()
            ),
        )
    };
    let Ok(report_id) = id.parse::<i32>() else {
        return not_found();
    };
    match crate::service::reports::get(&app.db, user.user_id, report_id).await {
        Ok(report) => {
            let mut response = report.html.into_response();
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            if let Ok(value) = HeaderValue::from_str(&format!(
                "attachment; filename=\"gradelab-report-{report_id}.html\""
            )) {
                h.insert(header::CONTENT_DISPOSITION, value);
            }
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(crate::service::reports::ReportError::NotFound(..)) => not_found(),
        Err(err) => {
            tracing::error!(error = %err, "loading a report for download failed");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "Internal server error; the details are in the server log.",
            )
        }
    }
}

fn problem(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ConfusionMatrix;
    use crate::reports::data::{Disagreement, EpochPoint, Fact, Metric, Variance};

    fn sample(hostile: &str) -> ReportData {
        ReportData {
            title: format!("Training job 1 — {hostile}"),
            kind_label: "Training job".into(),
            guide_title: hostile.into(),
            generated_at: "2026-11-25 20:00 UTC".into(),
            answer_count: 45,
            headline: vec![
                Metric {
                    key: "n".into(),
                    name: "Answers compared".into(),
                    value: "45".into(),
                    hint: String::new(),
                },
                Metric {
                    key: "qwk".into(),
                    name: "Quadratic weighted kappa".into(),
                    value: "0.812".into(),
                    hint: "almost perfect agreement".into(),
                },
            ],
            qwk_band: "almost perfect agreement".into(),
            epochs: (0..3)
                .map(|e| EpochPoint {
                    epoch: e,
                    qwk: "0.700".into(),
                    mae: "0.200".into(),
                    qwk_value: Some(0.7),
                    mae_value: Some(0.2),
                    kept: e != 1,
                    change: hostile.into(),
                    tokens: 0,
                })
                .collect(),
            items: Vec::new(),
            worst: vec![Disagreement {
                item_label: "1".into(),
                student_ref: hostile.into(),
                answer: format!("{hostile} 9999"),
                teacher: "2".into(),
                grader: "0".into(),
                max_marks: "2".into(),
                difference: "-2".into(),
                rationale: hostile.into(),
            }],
            variance: Variance::default(),
            provenance: vec![Fact {
                name: "Prompt hash".into(),
                value: "3fa9".into(),
                nocite: true,
            }],
            confusion: ConfusionMatrix {
                labels: vec![0.0, 0.25, 0.5, 0.75, 1.0],
                counts: vec![vec![1; 5]; 5],
            },
            scatter: vec![(0.0, 0.5), (1.0, 1.0)],
            job_id: Some(1),
            test_run_id: None,
            guide_id: 1,
        }
    }

    #[test]
    fn hostile_text_is_escaped_and_the_document_is_self_contained() {
        let hostile = r#"<script>alert(1)</script><img src=x onerror="alert(2)">"#;
        let data = sample(hostile);
        let mut n = narrative::computed(&data, None);
        n.insights.push(hostile.into());
        let html = render(&data, &n).expect("renders");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains(CSP));
        assert_eq!(html.matches(r#"class="point""#).count(), 3);
    }

    #[test]
    fn cited_numbers_exclude_student_text_hashes_and_the_narrative() {
        let data = sample("plain");
        let mut n = narrative::computed(&data, None);
        n.executive_summary = "QWK 0.812 and 7777".into();
        let html = render(&data, &n).expect("renders");
        let allowed = allowed_numbers(&html);
        let tok = |t: &str| narrative::number_tokens(t).remove(0);
        assert!(allowed.allows(&tok("0.812")));
        assert!(allowed.allows(&tok("45")));
        assert!(
            !allowed.allows(&tok("9999")),
            "student text is not a figure"
        );
        assert!(
            !allowed.allows(&tok("7777")),
            "the narrative cannot vouch for itself"
        );
        assert!(!allowed.allows(&tok("3")), "hash digits are not figures");
    }
}
