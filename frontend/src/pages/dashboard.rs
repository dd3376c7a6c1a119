//! `/`: the signed-in home: recent guides, recent jobs (running ones live), and
//! language-model spend.

use leptos::{prelude::*, task::spawn_local};
use leptos_router::components::A;

use crate::api::dashboard::{self, JobSummary, Usage};
use crate::api::jobs::{self, JobStatus, SeqCursor};
use crate::components::{
    badge::Badge, empty_card::EmptyCard, format, page_title::set_page_title,
    progress::ProgressBar, shell::AppShell,
};
use crate::pages::guides::{guide_row, guide_table};

/// The dashboard.
#[component]
pub fn DashboardPage() -> impl IntoView {
    set_page_title("Dashboard");
    let overview = RwSignal::new(None);
    let load = move || spawn_local(async move { overview.set(Some(dashboard::load().await)) });
    load();

    let cards = move || match overview.get() {
        None => view! { <p class="muted" aria-live="polite">"Loading…"</p> }.into_any(),
        Some(Err(error)) => view! {
            <div class="banner" role="alert" data-testid="dashboard-error">
                <span>{error.message}</span>
                <button type="button" class="button subtle" on:click=move |_| load()>
                    "Try again"
                </button>
            </div>
        }
        .into_any(),
        Some(Ok(data)) => {
            let guides = if data.guides.is_empty() {
                view! {
                    <div class="empty">
                        <p class="empty-title">"No marking guides yet"</p>
                        <p class="empty-detail">
                            "Upload a marking guide (PDF, DOCX, TXT or Markdown) to extract its questions and rubric."
                        </p>
                        <A href="/guides" attr:class="button primary">"Upload a guide"</A>
                    </div>
                }
                .into_any()
            } else {
                view! {
                    {guide_table(data.guides.into_iter().map(guide_row).collect_view(), "Recent guides")}
                    <A href="/guides" attr:class="more-link">
                        {format!("All {}", format::plural(data.guide_count, "guide", "guides"))}
                    </A>
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
                }
                .into_any()
            } else {
                view! {
                    <ul class="job-list">
                        {data.jobs.into_iter().map(|job| view! { <JobRow job=job /> }).collect_view()}
                    </ul>
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
                <Spend usage=data.usage />
                <EmptyCard
                    title="Reports"
                    message="No reports yet"
                    detail="Reports on training jobs and test runs will be listed here."
                    testid="card-reports"
                />
            }
            .into_any()
        }
    };

    view! {
        <AppShell testid="dashboard">
            <h1>"Dashboard"</h1>
            <p class="lead">
                "Upload a marking guide, calibrate a grader on answers you have scored, "
                "then test it on answers it has never seen."
            </p>
            <div class="cards">{cards}</div>
        </AppShell>
    }
}

/// One job; a running one follows its events live.
#[component]
fn JobRow(job: JobSummary) -> impl IntoView {
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
    let target = job.guide_id.map(|id| format!("/guides/{id}"));
    view! {
        <li class="job-row" data-testid="job-row" data-job-id=job.id>
            <div class="job-row-head">
                {match target {
                    Some(href) => view! { <A href=href>{job.kind}</A> }.into_any(),
                    None => view! { <span>{job.kind}</span> }.into_any(),
                }}
                {move || {
                    let s = status.get();
                    view! { <Badge label=s.label() tone=s.tone() testid="job-status" /> }
                }}
            </div>
            <ProgressBar value=progress label="Job progress" testid="job-progress" />
            <p class="sub">
                <time datetime=job.created_at.clone()>{format::date_time(&job.created_at)}</time>
                {(job.cost_usd > 0.0).then(|| format!(" · {}", format::usd(job.cost_usd)))}
            </p>
        </li>
    }
}

/// Language-model calls, tokens and cost.
#[component]
fn Spend(usage: Usage) -> impl IntoView {
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
                        }).collect_view()}
                    </tbody>
                </table>
            })}
        </section>
    }
}
