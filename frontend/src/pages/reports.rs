//! `/reports` and `/reports/:id`: the caller's reports, and one report shown inline in a
//! sandboxed frame (no scripts, no same-origin access) with a download of its HTML.

use leptos::{prelude::*, task::spawn_local};

use crate::api::testing::{self, ReportSummary};
use crate::components::{
    format,
    keyed::keyed,
    list::CollectAny,
    loaded::Loaded,
    loading::{load_failed, loading},
    page_title::set_page_title,
};
use crate::pages::test_run::save_file;

/// The list of reports.
#[component]
pub fn ReportsPage() -> impl IntoView {
    set_page_title("Reports");
    let loaded = Loaded::new();
    spawn_local(async move { loaded.set(testing::reports().await) });
    let body = move |_| match loaded.get::<Vec<ReportSummary>>() {
        None => loading("Loading…"),
        Some(Err(error)) => load_failed("reports-error", error.message),
        Some(Ok(reports)) => report_list(reports).into_any(),
    };
    view! {
        <main class="content" id="main" tabindex="-1" data-testid="reports-page">
            <h1>"Reports"</h1>
            <p class="lead">
                "Self-contained reports on test runs: metrics, confusion, disagreements and "
                "provenance, ready to share."
            </p>
            <section class="card">{keyed(move || loaded.version(), body)}</section>
        </main>
    }
}

/// Reports as a list of links (also on the dashboard).
pub fn report_list(reports: Vec<ReportSummary>) -> impl IntoView {
    let empty = reports.is_empty();
    view! {
        <p class="muted" hidden=!empty data-testid="reports-empty">
            "No reports yet. Run a test on a trained grader, then write its report."
        </p>
        <ul class="job-list" hidden=empty>
            {reports.into_iter().map(|r| view! {
                <li class="job-row" data-testid="report-row">
                    <div class="job-row-head">
                        <a href=format!("/reports/{}", r.id)>{r.title}</a>
                        {r.pending.then(|| view! { <span class="badge badge-info">"Narrative pending"</span> }.into_any())}
                    </div>
                    <p class="sub"><time datetime=r.created_at.clone()>{format::date_time(&r.created_at)}</time></p>
                </li>
            }).collect_any()}
        </ul>
    }
}

/// One report.
#[component]
pub fn ReportPage(id: String) -> impl IntoView {
    set_page_title("Report");
    let loaded = Loaded::new();
    spawn_local(async move { loaded.set(testing::report(id).await) });
    let body = move |_| match loaded.get::<(ReportSummary, String)>() {
        None => loading("Loading…"),
        Some(Err(error)) => load_failed("report-missing", error.message),
        Some(Ok((report, html))) => {
            let file = format!("gradelab-report-{}.html", report.id);
            let content = StoredValue::new(html.clone());
            view! {
                <header class="page-head">
                    <h1 data-testid="report-title">{report.title.clone()}</h1>
                    <p class="meta">
                        <time datetime=report.created_at.clone()>{format::date_time(&report.created_at)}</time>
                        <button
                            type="button"
                            class="button subtle"
                            data-testid="download-report"
                            on:click=move |_| content.with_value(|html| save_file(&file, "text/html", html))
                        >
                            "Download HTML"
                        </button>
                    </p>
                </header>
                // `sandbox` with no permissions: the report cannot run scripts or reach
                // this app, whatever its text holds.
                <iframe
                    class="report-frame"
                    title=report.title
                    sandbox=""
                    srcdoc=html
                    data-testid="report-frame"
                ></iframe>
            }
            .into_any()
        }
    };
    view! {
        <main class="content" id="main" tabindex="-1" data-testid="report-page">
            <nav class="breadcrumb" aria-label="Breadcrumb">
                <a href="/reports">"Reports"</a>
            </nav>
            <div class="stack">{keyed(move || loaded.version(), body)}</div>
        </main>
    }
}
