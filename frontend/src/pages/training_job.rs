//! `/training/:id`: one training job, live: progress, the learning curve redrawn as each
//! `epoch` event arrives, the epochs table, the event log and cancel.

use leptos::{prelude::*, task::spawn_local};

use crate::api::jobs::JobEvent;
use crate::api::testing;
use crate::api::training::{self, EpochPoint, JobInfo};
use crate::components::{
    chart::learning_curve,
    form_error::FormError,
    format,
    job_monitor::JobMonitor,
    keyed::keyed,
    list::CollectAny,
    loaded::Loaded,
    loading::{load_failed, loading},
    page_title::set_page_title,
};
use crate::router;

/// The page of training job `id`.
#[component]
pub fn TrainingJobPage(id: String) -> impl IntoView {
    set_page_title("Training job");
    let loaded = Loaded::new();
    let job_id = id.clone();
    spawn_local(async move { loaded.set(training::job(job_id).await) });

    let body = move |_| match loaded.get::<JobInfo>() {
        None => loading("Loading…"),
        Some(Ok(job)) if job.training => view! { <Live id=id.clone() job=job /> }.into_any(),
        Some(Ok(_)) => load_failed("job-missing", "That job is not a training job.".to_owned()),
        Some(Err(error)) => load_failed("job-missing", error.message),
    };

    view! {
        <main class="content" id="main" tabindex="-1" data-testid="training-job-page">
            <nav class="breadcrumb" aria-label="Breadcrumb">
                <a href="/training">"Training"</a>
            </nav>
            {keyed(move || loaded.version(), body)}
        </main>
    }
}

#[component]
fn Live(id: String, job: JobInfo) -> impl IntoView {
    let points = RwSignal::new(Vec::<EpochPoint>::new());
    let on_event = move |event: JobEvent| {
        if let Some(point) = EpochPoint::from_event(&event) {
            points.update(|all| all.push(point));
        }
    };
    // The grader version the job produced, known once it has finished.
    let version = RwSignal::new(job.grader_version_id.clone());
    let test_error = RwSignal::new(None::<String>);
    let job_id = StoredValue::new(id.clone());
    let on_finish = move |_| {
        spawn_local(async move {
            if let Ok(found) = training::job(job_id.get_value()).await {
                version.set(found.grader_version_id);
            }
        })
    };
    let start_test = move |_| {
        let Some(chosen) = version.get_untracked() else {
            return;
        };
        spawn_local(async move {
            match testing::start(chosen).await {
                Ok(run) => router::navigate(&format!("/test-runs/{run}")),
                Err(failure) => test_error.set(Some(failure.message)),
            }
        });
    };
    let test_button = move || {
        version.get().map(|_| {
            view! {
                <div class="actions">
                    <button type="button" class="button primary" data-testid="start-test-run" on:click=start_test>
                        "Test this grader on the test answers"
                    </button>
                </div>
            }.into_any()
        })
    };
    let guide_link = job.guide_id.map(|guide| {
        view! {
            <a href=format!("/guides/{guide}") data-testid="job-guide">"Open the guide"</a>
        }
    });
    let rows = move || {
        points
            .get_untracked()
            .into_iter()
            .map(|p| {
                let show = |v: Option<f64>| v.map_or("–".to_owned(), |v| format::decimal(v, 3));
                view! {
                    <tr data-testid="epoch-row" class=(p.epoch == p.best_epoch).then_some("best")>
                        <th scope="row" class="num">{p.epoch}</th>
                        <td>{p.change}</td>
                        <td>{if p.kept { "Kept" } else { "Rejected" }}</td>
                        <td class="num">{show(p.qwk)}</td>
                        <td class="num">{show(p.mae)}</td>
                        <td class="num">{show(p.exact)}</td>
                        <td class="num">{format::count(p.tokens)}</td>
                    </tr>
                }
            })
            .collect_any()
    };

    view! {
        <header class="page-head">
            <h1>{format!("Training job {id}")}</h1>
            <p class="meta">
                <span>"Started " <time datetime=job.created_at.clone()>{format::date_time(&job.created_at)}</time></span>
                {guide_link}
            </p>
        </header>
        {job.error.map(|text| view! { <p class="form-error" role="alert">{text}</p> }.into_any())}
        <section class="card" aria-label="Progress">
            <JobMonitor
                job_id=id
                status=job.status
                progress=job.progress
                label="Training"
                on_event=on_event
                on_finish=on_finish
            />
            {move || test_button()}
            <FormError message=test_error testid="start-test-error" />
        </section>
        <section class="card" data-testid="learning-curve" aria-labelledby="curve-title">
            <h2 id="curve-title">"Learning curve"</h2>
            <p class="hint">"Agreement with your marks on the validation answers after each epoch; epoch 0 is the untrained grader."</p>
            {keyed(move || points.with(Vec::len) as u32, move |_| learning_curve(points.get_untracked()))}
            <div class="table-wrap">
                <table class="table compact" data-testid="epochs">
                    <caption class="visually-hidden">"Epochs"</caption>
                    <thead>
                        <tr>
                            <th scope="col" class="num">"Epoch"</th>
                            <th scope="col">"Change tried"</th>
                            <th scope="col">"Outcome"</th>
                            <th scope="col" class="num">"QWK"</th>
                            <th scope="col" class="num">"MAE"</th>
                            <th scope="col" class="num">"Exact"</th>
                            <th scope="col" class="num">"Tokens"</th>
                        </tr>
                    </thead>
                    <tbody>{keyed(move || points.with(Vec::len) as u32, move |_| rows())}</tbody>
                </table>
            </div>
        </section>
    }
}
