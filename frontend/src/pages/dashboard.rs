//! `/`: the signed-in home: recent guides, recent jobs (running ones live), and
//! language-model spend.

use std::sync::Arc;

use leptos::{prelude::*, task::spawn_local};

use crate::api::dashboard::{self, JobSummary, Overview, Usage};
use crate::api::jobs::{self, JobStatus, SeqCursor};
use crate::components::{
    badge::LiveBadge, format, keyed::keyed, list::CollectAny, loaded::Loaded, loading::loading,
    page_title::set_page_title, progress::ProgressBar,
};
use crate::pages::guides::guide_table;
use crate::pages::reports::report_list;

/// The dashboard.
#[component]
pub fn DashboardPage() -> impl IntoView {
    set_page_title("Dashboard");
    // The latest answer, numbered so that each one redraws the cards.
    let loaded = Loaded::new();
    let load = move || {
        spawn_local(async move {
            let overview = dashboard::load().await;
            loaded.set(overview);
        })
    };
    load();

    let cards = move |_| match loaded.get::<Overview>() {
        None => loading("Loading…"),
        Some(Err(error)) => view! {
            <div class="banner" role="alert" data-testid="dashboard-error">
                <span>{error.message}</span>
                <button type="button" class="button subtle" on:click=move |_| load()>
                    "Try again"
                </button>
            </div>
        }
        .into_any(),
        Some(Ok(data)) => overview(data).into_any(),
    };

    view! {
        <main class="content" id="main" tabindex="-1" data-testid="dashboard">
            <h1>"Dashboard"</h1>
            <p class="lead">
                "Upload a marking guide, calibrate a grader on answers you have scored, "
                "then test it on answers it has never seen."
            </p>
            <div class="cards">{keyed(move || loaded.version(), cards)}</div>
        </main>
    }
}

fn overview(data: Overview) -> impl IntoView {
    let guides = if data.guides.is_empty() {
        view! {
            <div class="empty">
                <p class="empty-title">"No marking guides yet"</p>
                <p class="empty-detail">
                    "Upload a marking guide (PDF, DOCX, TXT or Markdown) to extract its questions and rubric."
                </p>
                <a href="/guides" class="button primary">"Upload a guide"</a>
            </div>
        }.into_any()
    } else {
        let list = data.guides;
        view! {
            {guide_table(Arc::new(move || list.clone()), "Recent guides")}
            <a href="/guides" class="more-link">
                {format!("All {}", format::plural(data.guide_count, "guide", "guides"))}
            </a>
        }
        .into_any()
    };
    let jobs = if data.jobs.is_empty() {
        view! {
            <div class="empty">
                <p class="empty-title">"No jobs yet"</p>
                <p class="empty-detail">
                    "Extracting a guide's items, training and test runs appear here with their progress."
                </p>
            </div>
        }.into_any()
    } else {
        view! {
            <ul class="job-list">{data.jobs.into_iter().map(job_row).collect_any()}</ul>
        }
        .into_any()
    };
    view! {
        <section class="card wide" data-testid="card-guides" aria-labelledby="card-guides-title">
            <h2 id="card-guides-title">"Recent guides"</h2>
            {guides}
        </section>
        <section class="card" data-testid="card-jobs" aria-labelledby="card-jobs-title">
            <h2 id="card-jobs-title">"Jobs"</h2>
            {jobs}
        </section>
        {spend(data.usage)}
        <section class="card" data-testid="card-reports" aria-labelledby="card-reports-title">
            <h2 id="card-reports-title">"Reports"</h2>
            {report_list(data.reports)}
        </section>
    }
}

/// One job; a running one follows its events live.
fn job_row(job: JobSummary) -> impl IntoView {
    let status = RwSignal::new(job.status);
    let progress = RwSignal::new(job.progress);
    if !job.status.is_finished() {
        let subscription = jobs::watch(
            job.id.clone(),
            SeqCursor::after(0),
            move |event| {
                if let Some(fraction) = event.progress() {
                    progress.set(fraction);
                }
                if let Some(next) = JobStatus::from_event(&event.kind) {
                    status.set(next);
                    if next == JobStatus::Succeeded {
                        progress.set(1.0);
                    }
                }
            },
            |_| {},
        );
        let subscription = StoredValue::new_local(Some(subscription));
        on_cleanup(move || subscription.update_value(|s| *s = None));
    }
    view! {
        <li class="job-row" data-testid="job-row" data-job-id=job.id>
            <div class="job-row-head">
                <a href=job.guide_id.map(|id| format!("/guides/{id}"))>{job.kind}</a>
                <LiveBadge status=Arc::new(move || { let s = status.get(); (s.label(), s.tone()) }) testid="job-status" />
            </div>
            <ProgressBar value=Arc::new(move || progress.get()) label="Job progress" testid="job-progress" />
            <p class="sub">
                <time datetime=job.created_at.clone()>{format::date_time(&job.created_at)}</time>
                {(job.cost_usd > 0.0).then(|| format!(" · {}", format::usd(job.cost_usd)))}
            </p>
        </li>
    }
}

/// Language-model calls, tokens and cost.
fn spend(usage: Usage) -> impl IntoView {
    let tasks = usage.by_task;
    view! {
        <section class="card" data-testid="card-spend" aria-labelledby="card-spend-title">
            <h2 id="card-spend-title">"Language model spend"</h2>
            <p class="big-number" data-testid="spend-total">{format::usd(usage.cost_usd)}</p>
            <dl class="stats">
                <div>
                    <dt>"Calls"</dt>
                    <dd data-testid="spend-calls">{format::count(usage.calls)}</dd>
                </div>
                <div>
                    <dt>"From cache"</dt>
                    <dd>{format::count(usage.cache_hits)}</dd>
                </div>
                <div>
                    <dt>"Failed"</dt>
                    <dd>{format::count(usage.failed_calls)}</dd>
                </div>
                <div>
                    <dt>"Tokens"</dt>
                    <dd>{format::count(usage.tokens)}</dd>
                </div>
            </dl>
            {(!tasks.is_empty()).then(|| view! {
                <table class="table compact">
                    <caption class="visually-hidden">"Spend per task"</caption>
                    <thead>
                        <tr>
                            <th scope="col">"Task"</th>
                            <th scope="col" class="num">"Calls"</th>
                            <th scope="col" class="num">"Cost"</th>
                        </tr>
                    </thead>
                    <tbody>
                        {tasks.into_iter().map(|t| view! {
                            <tr>
                                <th scope="row">{t.task.replace('_', " ")}</th>
                                <td class="num">{format::count(t.calls)}</td>
                                <td class="num">{format::usd(t.cost_usd)}</td>
                            </tr>
                        }).collect_any()}
                    </tbody>
                </table>
            }.into_any())}
        </section>
    }
}
