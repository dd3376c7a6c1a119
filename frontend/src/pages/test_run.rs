//! `/test-runs/:id`: a grader version graded answers it never saw. While the run's job
//! works, its progress is followed live; then the agreement metrics, the confusion
//! heat-map, the predicted-against-teacher scatter, the review queue, exports and a report.

use leptos::{prelude::*, task::spawn_local};
use wasm_bindgen::JsCast;

use crate::api::testing::{self, Graded, Run};
use crate::components::{
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

/// Saves `content` as a file named `name` (a `data:` link, clicked).
pub fn save_file(name: &str, content_type: &str, content: &str) {
    let Some(document) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
    let Ok(link) = document.create_element("a") else {
        return;
    };
    let href = format!(
        "data:{content_type};charset=utf-8,{}",
        String::from(js_sys::encode_uri_component(content))
    );
    let _ = link.set_attribute("href", &href);
    let _ = link.set_attribute("download", name);
    if let Ok(link) = link.dyn_into::<web_sys::HtmlElement>() {
        link.click();
    }
}

/// The page of test run `id`.
#[component]
pub fn TestRunPage(id: String) -> impl IntoView {
    set_page_title("Test run");
    let loaded = Loaded::new();
    let run_id = StoredValue::new(id.clone());
    let load = move || {
        spawn_local(async move {
            let run = testing::run(run_id.get_value()).await;
            loaded.set(run);
        })
    };
    load();
    let body = move |_| match loaded.get::<Run>() {
        None => loading("Loading…"),
        Some(Err(error)) => load_failed("test-run-missing", error.message),
        Some(Ok(run)) => results(run_id.get_value(), run, load).into_any(),
    };
    view! {
        <main class="content" id="main" tabindex="-1" data-testid="test-run-page">
            <nav class="breadcrumb" aria-label="Breadcrumb">
                <a href="/reports">"Reports"</a>
            </nav>
            <h1>{format!("Test run {id}")}</h1>
            <div class="stack">{keyed(move || loaded.version(), body)}</div>
        </main>
    }
}

fn results(
    id: String,
    run: Run,
    reload: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let finished = run.status.is_finished();
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let export = {
        let id = id.clone();
        move |csv: bool| {
            let id = id.clone();
            spawn_local(async move {
                match testing::export(id, csv).await {
                    Ok((name, kind, content)) => save_file(&name, &kind, &content),
                    Err(failure) => error.set(Some(failure.message)),
                }
            });
        }
    };
    let export_json = export.clone();
    let report_id = id.clone();
    let make_report = move |_| {
        busy.set(true);
        let id = report_id.clone();
        spawn_local(async move {
            match testing::generate_report(id).await {
                Ok(report) => router::navigate(&format!("/reports/{report}")),
                Err(failure) => {
                    error.set(Some(failure.message));
                    busy.set(false);
                }
            }
        });
    };
    let show = |v: Option<f64>| v.map_or("–".to_owned(), |v| format::decimal(v, 3));
    view! {
        <p class="meta">
            "Started " <time datetime=run.created_at.clone()>{format::date_time(&run.created_at)}</time>
            " · " <a href=format!("/guides/{}", run.guide_id)>"Open the guide"</a>
        </p>
        <section class="card" aria-label="Progress">
            <JobMonitor
                job_id=run.job_id
                status=run.status
                progress=run.progress
                label="Grading the test answers"
                on_finish=move |_| reload()
            />
        </section>
        <section class="card" data-testid="test-metrics" aria-labelledby="metrics-title" hidden=!finished>
            <h2 id="metrics-title">"Agreement with your marks"</h2>
            <p class="hint">{format!("{} answers compared; {} to review.", run.n, run.review_count)}</p>
            {(!run.ungraded.is_empty()).then(|| view! {
                <div class="notice notice-warn" role="status" data-testid="ungraded">
                    <p class="notice-title">{format!(
                        "{} {} could not be graded and {} left out of these figures",
                        run.ungraded.len(),
                        if run.ungraded.len() == 1 { "answer" } else { "answers" },
                        if run.ungraded.len() == 1 { "is" } else { "are" },
                    )}</p>
                    <ul>
                        {run.ungraded.iter().map(|(item, student, error)| view! {
                            <li>{format!("{student}, question {item}: {error}")}</li>
                        }).collect_any()}
                    </ul>
                </div>
            })}
            <dl class="stats">
                {run.metrics.into_iter().map(|(label, value)| view! {
                    <div><dt>{label}</dt><dd data-testid="metric">{show(value)}</dd></div>
                }).collect_any()}
            </dl>
            <div class="actions">
                <button type="button" class="button primary" data-testid="generate-report" disabled=busy on:click=make_report>
                    "Write a report"
                </button>
                <button type="button" class="button subtle" data-testid="export-csv" on:click=move |_| export(true)>
                    "Download gradings (CSV)"
                </button>
                <button type="button" class="button subtle" on:click=move |_| export_json(false)>
                    "Download gradings (JSON)"
                </button>
            </div>
            <FormError message=error testid="test-run-error" />
        </section>
        <div class="cards" hidden=!finished>
            <section class="card" data-testid="confusion" aria-labelledby="confusion-title">
                <h2 id="confusion-title">"Confusion"</h2>
                {heat_map(run.labels, run.counts)}
            </section>
            <section class="card" aria-labelledby="scatter-title">
                <h2 id="scatter-title">"Grader against teacher"</h2>
                {scatter(&run.answers)}
            </section>
        </div>
        <section class="card" data-testid="review-queue" aria-labelledby="review-title" hidden=!finished>
            <h2 id="review-title">"To review"</h2>
            <p class="muted" hidden=!run.review.is_empty()>"Nothing needs a second look."</p>
            <ul class="job-list">
                {run.review.into_iter().map(review_row).collect_any()}
            </ul>
        </section>
    }
}

/// Teacher's bins down, grader's across; each cell shaded by its share of the largest.
fn heat_map(labels: Vec<f64>, counts: Vec<Vec<i64>>) -> impl IntoView {
    let most = counts.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    let head = labels.clone();
    view! {
        <div class="table-wrap">
            <table class="table compact heat" data-testid="heat-map">
                <caption class="hint">"Rows: your mark. Columns: the grader's mark (share of full marks)."</caption>
                <thead>
                    <tr>
                        <td></td>
                        {head.into_iter().map(|l| view! { <th scope="col" class="num">{format::decimal(l, 2)}</th> }).collect_any()}
                    </tr>
                </thead>
                <tbody>
                    {counts.into_iter().zip(labels).map(|(row, label)| view! {
                        <tr>
                            <th scope="row" class="num">{format::decimal(label, 2)}</th>
                            {row.into_iter().map(|n| {
                                let share = n as f64 / most;
                                let class = if share > 0.5 { "num hot" } else { "num" };
                                view! {
                                    <td
                                        class=class
                                        style=format!("--heat:{}", format::decimal(share, 2))
                                        data-testid="heat-cell"
                                    >
                                        {n}
                                    </td>
                                }
                            }).collect_any()}
                        </tr>
                    }).collect_any()}
                </tbody>
            </table>
        </div>
    }
}

/// Each answer as a dot: the teacher's share of full marks across, the grader's up.
fn scatter(answers: &[Graded]) -> impl IntoView {
    const SIZE: f64 = 240.0;
    const PAD: f64 = 28.0;
    let at = |share: f64| format::decimal(PAD + (SIZE - 2.0 * PAD) * share.clamp(0.0, 1.0), 1);
    let up =
        |share: f64| format::decimal(SIZE - PAD - (SIZE - 2.0 * PAD) * share.clamp(0.0, 1.0), 1);
    let dots = answers
        .iter()
        .filter_map(|a| {
            let teacher = a.teacher? / a.max.max(f64::MIN_POSITIVE);
            let grader = a.score / a.max.max(f64::MIN_POSITIVE);
            Some(view! {
                <circle class="dot qwk" cx=at(teacher) cy=up(grader) r="4" data-testid="scatter-point">
                    <title>{format!("{} {}: teacher {}, grader {}", a.item, a.student, format::marks(a.teacher.unwrap_or(0.0)), format::marks(a.score))}</title>
                </circle>
            })
        })
        .collect_any();
    view! {
        <figure class="chart">
            <svg viewBox="0 0 240 240" role="img" aria-label="Grader's marks against the teacher's, as shares of full marks">
                <line class="grid" x1=at(0.0) y1=up(0.0) x2=at(1.0) y2=up(1.0) />
                <line class="grid" x1=at(0.0) y1=up(0.0) x2=at(1.0) y2=up(0.0) />
                <line class="grid" x1=at(0.0) y1=up(0.0) x2=at(0.0) y2=up(1.0) />
                {dots}
            </svg>
            <figcaption class="hint">"On the diagonal the grader agrees with you."</figcaption>
        </figure>
    }
}

/// What a review-queue reason code means to a teacher.
fn reason_label(code: &str) -> String {
    match code {
        "disagreement" => "far from your mark".to_owned(),
        "variance" => "marks differ between gradings".to_owned(),
        "low_confidence" => "the grader was unsure".to_owned(),
        "instructions_to_marker" => "speaks to the marker".to_owned(),
        other => other.replace('_', " "),
    }
}

fn review_row(item: Graded) -> impl IntoView {
    view! {
        <li class="job-row" data-testid="review-item">
            <div class="job-row-head">
                <strong>{format!("{} · {}", item.item, item.student)}</strong>
                <span class="badge badge-warn">
                    {item.reasons.iter().map(|r| reason_label(r)).collect::<Vec<_>>().join(", ")}
                </span>
            </div>
            <p>{item.text}</p>
            <p class="sub">
                {format!(
                    "Teacher {} · grader {} of {}. {}",
                    item.teacher.map_or("–".to_owned(), format::marks),
                    format::marks(item.score),
                    format::marks(item.max),
                    item.feedback
                )}
            </p>
        </li>
    }
}

#[cfg(test)]
mod tests {
    use super::reason_label;

    #[test]
    fn review_reasons_read_as_words() {
        assert_eq!(reason_label("low_confidence"), "the grader was unsure");
        assert_eq!(reason_label("some_new_reason"), "some new reason");
    }
}
