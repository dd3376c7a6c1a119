//! `/training`: start a training job (its cost estimate is shown first) and the list of
//! training jobs.

use std::sync::Arc;

use leptos::{ev, prelude::*, task::spawn_local};
use wasm_bindgen::JsCast;
use web_sys::{FormData, HtmlFormElement};

use crate::api::training::{self, Engine, Estimate, GuideChoice, Plan, TrainingJob};
use crate::components::{
    badge::Badge,
    form_error::FormError,
    format,
    keyed::keyed,
    list::CollectAny,
    loaded::Loaded,
    loading::{load_failed, loading},
    page_title::set_page_title,
    progress::ProgressBar,
};
use crate::router;

/// Reads the plan from the form's fields.
fn read_plan(data: &FormData) -> Result<Plan, String> {
    let field = |name: &str| data.get(name).as_string().unwrap_or_default();
    let whole = |name: &str, what: &str| -> Result<Option<i64>, String> {
        if field(name).trim().is_empty() {
            return Ok(None);
        }
        match format::parse_number(&field(name)) {
            Some(n) if n >= 0.0 && n.fract() == 0.0 => Ok(Some(n as i64)),
            _ => Err(format!("{what} must be a whole number, 0 or more.")),
        }
    };
    let guide_id = field("guide");
    if guide_id.is_empty() {
        return Err("Choose the guide whose scored answers train the grader.".to_owned());
    }
    let budget_usd = match field("budget_usd").trim() {
        "" => None,
        text => match format::parse_number(text) {
            Some(usd) if usd >= 0.0 => Some(usd),
            _ => return Err("The cost budget must be an amount in dollars.".to_owned()),
        },
    };
    Ok(Plan {
        guide_id,
        engine: Engine::from_key(&field("engine")),
        epochs: whole("epochs", "Epochs")?.unwrap_or(5),
        patience: whole("patience", "Patience")?.unwrap_or(3),
        budget_tokens: whole("budget_tokens", "The token budget")?,
        budget_usd,
    })
}

/// The training page.
#[component]
pub fn TrainingPage() -> impl IntoView {
    set_page_title("Training");
    let loaded = Loaded::new();
    spawn_local(async move {
        let overview = training::overview().await;
        loaded.set(overview);
    });
    let body = move |_| match loaded.get::<(Vec<TrainingJob>, Vec<GuideChoice>)>() {
        None => loading("Loading…"),
        Some(Err(error)) => load_failed("training-error", error.message),
        Some(Ok((jobs, guides))) => view! {
            <NewTraining guides=guides />
            {job_list(jobs)}
        }
        .into_any(),
    };
    view! {
        <main class="content" id="main" tabindex="-1" data-testid="training-page">
            <h1>"Training"</h1>
            <p class="lead">
                "A training job calibrates a grader on answers you have scored, epoch by epoch, "
                "and keeps a change only when it agrees better with you on the validation answers."
            </p>
            <div class="stack">{keyed(move || loaded.version(), body)}</div>
        </main>
    }
}

/// The "Train a grader" card: plan, estimate, start.
#[component]
fn NewTraining(guides: Vec<GuideChoice>) -> impl IntoView {
    let plan = StoredValue::new(None::<Plan>);
    let estimate = Loaded::new();
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let no_guides = guides.is_empty();

    let on_estimate = move |event: ev::SubmitEvent| {
        event.prevent_default();
        let read = event
            .target()
            .and_then(|target| target.dyn_into::<HtmlFormElement>().ok())
            .and_then(|form| FormData::new_with_form(&form).ok())
            .map_or_else(
                || Err("The form could not be read.".to_owned()),
                |data| read_plan(&data),
            );
        let chosen = match read {
            Ok(chosen) => chosen,
            Err(message) => {
                error.set(Some(message));
                return;
            }
        };
        plan.set_value(Some(chosen.clone()));
        busy.set(true);
        spawn_local(async move {
            match training::estimate(chosen).await {
                Ok(found) => {
                    error.set(None);
                    estimate.set(Ok(found));
                }
                Err(failure) => error.set(Some(failure.message)),
            }
            busy.set(false);
        });
    };
    let on_start = move |_| {
        let Some(chosen) = plan.get_value() else {
            return;
        };
        busy.set(true);
        spawn_local(async move {
            match training::start(chosen).await {
                Ok(job_id) => router::navigate(&format!("/training/{job_id}")),
                Err(failure) => {
                    error.set(Some(failure.message));
                    busy.set(false);
                }
            }
        });
    };
    let estimate_view = move || {
        estimate.value::<Estimate>().map(|found| {
            let cost = found.cost_usd.map_or_else(
                || "no price known for this model (free when it runs locally)".to_owned(),
                format::usd,
            );
            view! {
                <div class="estimate" data-testid="estimate-result" role="status">
                    <p class="estimate-title">"At most, this job will make:"</p>
                    <dl class="stats">
                        <div><dt>"Model calls"</dt><dd data-testid="estimate-calls">{format::count(found.calls)}</dd></div>
                        <div><dt>"Tokens"</dt><dd>{format::count(found.tokens)}</dd></div>
                        <div><dt>"Cost"</dt><dd data-testid="estimate-cost">{cost}</dd></div>
                        <div><dt>"Answers"</dt><dd>{format!("{} train, {} validation", found.train_answers, found.validation_answers)}</dd></div>
                    </dl>
                    <p class="hint">{format!("{} · {}", found.model, found.note)}</p>
                    <button type="button" class="button primary" data-testid="start-training" disabled=busy on:click=on_start>
                        "Start training"
                    </button>
                </div>
            }.into_any()
        })
    };

    view! {
        <section class="card" data-testid="new-training" aria-labelledby="new-training-title">
            <h2 id="new-training-title">"Train a grader"</h2>
            <p class="hint" hidden=!no_guides>
                "Add a guide and import scored answers first: " <a href="/guides">"go to your guides"</a> "."
            </p>
            // Any change makes the estimate stale: it must be asked for again.
            <form class="form" on:submit=on_estimate on:input=move |_| estimate.clear()>
                <div class="field-row">
                    <div class="field">
                        <label for="train-guide">"Guide"</label>
                        <select id="train-guide" name="guide" data-testid="train-guide" required=true>
                            {guides.into_iter().map(|g| view! { <option value=g.id>{g.title}</option> }).collect_any()}
                        </select>
                    </div>
                    <div class="field">
                        <label for="train-engine">"Engine"</label>
                        <select id="train-engine" name="engine" data-testid="train-engine">
                            {Engine::ALL.into_iter().map(|e| view! { <option value=e.key()>{e.label()}</option> }).collect_any()}
                        </select>
                    </div>
                </div>
                <div class="field-row">
                    <div class="field">
                        <label for="train-epochs">"Epochs after the baseline"</label>
                        <input id="train-epochs" name="epochs" type="number" min="0" max="50" value="5" data-testid="train-epochs" />
                    </div>
                    <div class="field">
                        <label for="train-patience">"Stop after epochs without improvement"</label>
                        <input id="train-patience" name="patience" type="number" min="1" max="50" value="3" />
                    </div>
                    <div class="field">
                        <label for="train-tokens">"Token budget (optional)"</label>
                        <input id="train-tokens" name="budget_tokens" type="number" min="0" step="1000" />
                    </div>
                    <div class="field">
                        <label for="train-usd">"Cost budget in $ (optional)"</label>
                        <input id="train-usd" name="budget_usd" type="number" min="0" step="any" />
                    </div>
                </div>
                <FormError message=error testid="train-error" />
                <div class="actions">
                    <button type="submit" class="button subtle" data-testid="estimate" disabled=move || busy.get() || no_guides>
                        "Estimate the cost"
                    </button>
                </div>
            </form>
            {move || estimate_view()}
        </section>
    }
}

fn job_list(jobs: Vec<TrainingJob>) -> impl IntoView {
    let empty = jobs.is_empty();
    view! {
        <section class="card" data-testid="training-jobs" aria-labelledby="training-jobs-title">
            <h2 id="training-jobs-title">"Training jobs"</h2>
            <p class="muted" hidden=!empty>"No training jobs yet."</p>
            <ul class="job-list" hidden=empty>
                {jobs.into_iter().map(|job| view! {
                    <li class="job-row" data-testid="training-job" data-job-id=job.id.clone()>
                        <div class="job-row-head">
                            <a href=format!("/training/{}", job.id)>
                                {job.guide.unwrap_or_else(|| "Deleted guide".to_owned())}
                            </a>
                            <Badge label=job.status.label() tone=job.status.tone() />
                        </div>
                        <ProgressBar value=Arc::new(move || job.progress) label="Training progress" testid="job-progress" />
                        <p class="sub">
                            <time datetime=job.created_at.clone()>{format::date_time(&job.created_at)}</time>
                            {job.epoch.map(|e| format!(" · epoch {e}"))}
                            {(job.cost_usd > 0.0).then(|| format!(" · {}", format::usd(job.cost_usd)))}
                        </p>
                    </li>
                }).collect_any()}
            </ul>
        </section>
    }
}
