//! `/guides/:id/answers`: import teacher-scored answers (CSV or JSONL, file or pasted)
//! with bad rows listed by line, and the guide's answers per split and item.

use std::sync::Arc;

use leptos::{ev, prelude::*, task::spawn_local};
use wasm_bindgen::JsCast;
use web_sys::{FormData, HtmlFormElement, HtmlInputElement};

use crate::api::answers::{self, Imported, Summary};
use crate::api::ApiError;
use crate::components::{
    form_error::FormError, format, keyed::keyed, list::CollectAny, loaded::Loaded,
    loading::load_failed, page_title::set_page_title, progress::ProgressBar,
};

/// Column headings of the split counts, in `Summary::splits` order.
const SPLITS: [&str; 4] = ["Train", "Validation", "Test", "No split"];

/// The answers page of guide `id`.
#[component]
pub fn AnswersPage(id: String) -> impl IntoView {
    set_page_title("Scored answers");
    let guide_id = StoredValue::new(id.clone());
    // The latest summary, numbered so that each one redraws the section.
    let summary = Loaded::new();
    let load = move || {
        let id = guide_id.get_value();
        spawn_local(async move {
            let loaded = answers::summary(id).await;
            summary.set(loaded);
        });
    };
    load();

    // What is being sent and the fraction sent; the outcome of the last import.
    let sending = RwSignal::new(None::<(String, f64)>);
    let result = Loaded::new();
    let failure = RwSignal::new(None::<String>);
    let skip_bad = RwSignal::new(false);
    let skip_bad_rows = move || skip_bad.get_untracked();
    let finish = move |outcome: Result<Imported, ApiError>| {
        sending.set(None);
        match outcome {
            Ok(imported) => {
                failure.set(None);
                result.set(Ok(imported));
                load();
            }
            Err(error) => {
                result.clear();
                failure.set(Some(error.message));
            }
        }
    };
    let on_file = move |event: ev::Event| {
        let Some(input) = event
            .target()
            .and_then(|target| target.dyn_into::<HtmlInputElement>().ok())
        else {
            return;
        };
        let Some(file) = input.files().and_then(|files| files.get(0)) else {
            return;
        };
        input.set_value("");
        let name = file.name();
        sending.set(Some((name.clone(), 0.0)));
        let skip = skip_bad_rows();
        spawn_local(async move {
            let outcome = answers::import_file(guide_id.get_value(), &file, skip, move |p| {
                sending.set(Some((name.clone(), p.fraction())));
            })
            .await;
            finish(outcome);
        });
    };
    let on_paste = move |event: ev::SubmitEvent| {
        event.prevent_default();
        let text = event
            .target()
            .and_then(|target| target.dyn_into::<HtmlFormElement>().ok())
            .and_then(|form| FormData::new_with_form(&form).ok())
            .and_then(|data| data.get("text").as_string())
            .unwrap_or_default();
        sending.set(Some(("the pasted rows".to_owned(), 1.0)));
        let skip = skip_bad_rows();
        spawn_local(async move {
            finish(answers::import_text(guide_id.get_value(), text, skip).await);
        });
    };

    let status_text = move || {
        sending
            .get()
            .map(|(name, fraction)| {
                if fraction < 1.0 {
                    format!("Uploading {name}… {}%", format::percent(fraction))
                } else {
                    format!("Importing {name}…")
                }
            })
            .unwrap_or_default()
    };
    let outcome = move || {
        result.value::<Imported>().map(|imported| {
            let bad_rows = (!imported.skipped.is_empty()).then(|| {
                view! {
                    <table class="table compact" data-testid="bad-rows">
                        <caption>
                            {format!(
                                "{} left out",
                                format::plural(imported.skipped_count, "row was", "rows were")
                            )}
                        </caption>
                        <thead>
                            <tr>
                                <th scope="col" class="num">"Line"</th>
                                <th scope="col">"Problem"</th>
                            </tr>
                        </thead>
                        <tbody>
                            {imported.skipped.into_iter().map(|row| view! {
                                <tr data-testid="bad-row">
                                    <td class="num">{row.line}</td>
                                    <td>{row.message}</td>
                                </tr>
                            }).collect_any()}
                        </tbody>
                    </table>
                }
            });
            view! {
                <div class="import-result" role="status" data-testid="import-result">
                    <p>
                        {format!(
                            "Imported {} from {}.",
                            format::plural(imported.imported, "answer", "answers"),
                            imported.filename
                        )}
                    </p>
                    {bad_rows}
                </div>
            }
            .into_any()
        })
    };

    view! {
        <main class="content" id="main" tabindex="-1" data-testid="answers-page">
            <nav class="breadcrumb" aria-label="Breadcrumb">
                <a href=format!("/guides/{id}")>"Back to the guide"</a>
            </nav>
            <h1>"Scored answers"</h1>
            <p class="lead">
                "Answers you have already marked teach and test the grader: train answers choose its examples, "
                "validation answers decide what it keeps, and test answers are held back for test runs."
            </p>
            <div class="stack">
                <section class="card" data-testid="answer-import" aria-labelledby="import-title">
                    <h2 id="import-title">"Import scored answers"</h2>
                    <p class="hint">
                        "A CSV (comma, semicolon or tab separated, with a header row) or JSONL file with the columns "
                        <code>"item"</code> ", " <code>"student_ref"</code> ", " <code>"answer"</code> ", "
                        <code>"score"</code> " and, optionally, " <code>"split"</code> "."
                    </p>
                    <div class="form">
                        <div class="field">
                            <label for="answers-file">"File"</label>
                            <input
                                id="answers-file"
                                type="file"
                                accept=".csv,.tsv,.jsonl,.json,.txt,text/csv"
                                data-testid="answers-file"
                                disabled=move || sending.with(Option::is_some)
                                on:change=on_file
                            />
                        </div>
                        <form class="form" on:submit=on_paste>
                            <div class="field">
                                <label for="answers-text">"Or paste the rows"</label>
                                <textarea
                                    id="answers-text"
                                    name="text"
                                    rows="6"
                                    required=true
                                    data-testid="answers-text"
                                    placeholder="item,student_ref,answer,score"
                                ></textarea>
                            </div>
                            <button
                                type="submit"
                                class="button subtle"
                                data-testid="answers-paste-submit"
                                disabled=move || sending.with(Option::is_some)
                            >
                                "Import pasted rows"
                            </button>
                        </form>
                        <label class="check">
                            <input
                                type="checkbox"
                                data-testid="skip-bad-rows"
                                on:change=move |event| skip_bad.set(event_target_checked(&event))
                            />
                            "Import the good rows and list the bad ones (otherwise a file with a bad row imports nothing)"
                        </label>
                        <div class="upload-status" aria-live="polite" hidden=move || sending.with(Option::is_none)>
                            <p>{move || status_text()}</p>
                            <ProgressBar
                                value=Arc::new(move || sending.get().map_or(0.0, |(_, f)| f))
                                label="Import progress"
                                testid="import-progress"
                            />
                        </div>
                        <FormError message=failure testid="import-error" />
                        {move || outcome()}
                    </div>
                </section>
                <section class="card" data-testid="split-summary" aria-labelledby="splits-title">
                    <h2 id="splits-title">"Answers by split"</h2>
                    {keyed(move || summary.version(), move |_| split_summary(summary.get::<Summary>()))}
                    <a href="/training" class="button primary train-link" data-testid="train-link">
                        "Train a grader"
                    </a>
                </section>
            </div>
        </main>
    }
}

fn split_summary(summary: Option<Result<Summary, ApiError>>) -> AnyView {
    match summary {
        None => view! { <p class="muted">"Loading…"</p> }.into_any(),
        Some(Err(error)) => load_failed("summary-error", error.message),
        Some(Ok(summary)) => {
            set_page_title(&format!("Scored answers · {}", summary.title));
            let items = if summary.items.is_empty() {
                view! { <p class="muted">"The guide has no items yet."</p> }.into_any()
            } else {
                view! {
                    <div class="table-wrap">
                        <table class="table compact">
                            <caption class="visually-hidden">"Answers per item and split"</caption>
                            <thead>
                                <tr>
                                    <th scope="col">"Item"</th>
                                    {SPLITS.into_iter().map(|name| view! { <th scope="col" class="num">{name}</th> }).collect_any()}
                                    <th scope="col" class="num">"Scored"</th>
                                </tr>
                            </thead>
                            <tbody>
                                {summary.items.into_iter().map(|item| view! {
                                    <tr data-testid="split-row">
                                        <th scope="row">{item.label}</th>
                                        {item.splits.into_iter().map(|n| view! { <td class="num">{n}</td> }).collect_any()}
                                        <td class="num">{item.scored}</td>
                                    </tr>
                                }).collect_any()}
                            </tbody>
                        </table>
                    </div>
                }.into_any()
            };
            view! {
                <p data-testid="answers-total">
                    {format!(
                        "{}, {} scored.",
                        format::plural(summary.total, "answer", "answers"),
                        summary.scored
                    )}
                </p>
                <dl class="stats splits">
                    {SPLITS
                        .into_iter()
                        .zip(summary.splits)
                        .map(|(name, n)| view! {
                            <div>
                                <dt>{name}</dt>
                                <dd data-testid="split-count">{n}</dd>
                            </div>
                        })
                        .collect_any()}
                </dl>
                {items}
            }
            .into_any()
        }
    }
}
