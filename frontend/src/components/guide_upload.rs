//! Adding a guide: drop a file, pick one, or paste the text; with upload progress and
//! the server's refusal (a duplicate names the existing guide) shown in place.

use std::sync::Arc;

use leptos::{ev, prelude::*, task::spawn_local};
use wasm_bindgen::JsCast;
use web_sys::{File, HtmlInputElement};

use crate::api::guides::{self, Method};
use crate::api::http::ErrorCode;
use crate::api::ApiError;
use crate::components::{form_error::FormError, format, list::CollectAny, progress::ProgressBar};
use crate::router;

/// File types the server reads.
const ACCEPT: &str = ".pdf,.docx,.txt,.md,.markdown,application/pdf,text/plain,text/markdown,\
application/vnd.openxmlformats-officedocument.wordprocessingml.document";

/// The `<option>`s of an extraction-method `<select>`.
pub fn method_options() -> impl IntoView {
    Method::ALL
        .into_iter()
        .map(|m| view! { <option value=m.key()>{m.label()}</option> })
        .collect_any()
}

/// The id in a duplicate message's "(guide 12)".
fn existing_guide_id(message: &str) -> Option<String> {
    let start = message.rfind("(guide ")? + "(guide ".len();
    let digits: String = message[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (!digits.is_empty()).then_some(digits)
}

/// The "Add a guide" card.
#[component]
pub fn GuideUpload() -> impl IntoView {
    let paste_mode = RwSignal::new(false);
    let dragging = RwSignal::new(false);
    // What is being sent (a file name, or "the pasted text") and the fraction sent.
    let sending = RwSignal::new(None::<(String, f64)>);
    // Why the last send failed: a duplicate (it names the existing guide), or otherwise.
    let duplicate_error = RwSignal::new(None::<String>);
    let other_error = RwSignal::new(None::<String>);
    let clear_failure = move || {
        duplicate_error.set(None);
        other_error.set(None);
    };

    let busy = move || sending.with(Option::is_some);
    let options = move || {
        // The `value` of the input or select with id `id` (both have one).
        let value = |id: &str| {
            document()
                .get_element_by_id(id)
                .map(|field| field.unchecked_into::<HtmlInputElement>().value())
        };
        let title = value("guide-title")
            .map(|title| title.trim().to_owned())
            .unwrap_or_default();
        let method = value("guide-method").map_or(Method::Auto, |method| Method::from_key(&method));
        (title, method)
    };
    let finish = move |result: Result<guides::Created, ApiError>| {
        sending.set(None);
        match result {
            Ok(created) => router::navigate(&format!("/guides/{}", created.guide_id)),
            Err(error) if error.code == ErrorCode::Duplicate => {
                duplicate_error.set(Some(error.message))
            }
            Err(error) => other_error.set(Some(error.message)),
        }
    };

    let send_file = {
        move |file: File| {
            if busy() {
                return;
            }
            let name = file.name();
            clear_failure();
            sending.set(Some((name.clone(), 0.0)));
            let (title, method) = options();
            spawn_local(async move {
                let title = Some(title).filter(|t| !t.is_empty());
                let result = guides::upload(&file, title, method, move |p| {
                    sending.set(Some((name.clone(), p.fraction())));
                })
                .await;
                finish(result);
            });
        }
    };
    let on_pick = {
        move |event: ev::Event| {
            let Some(input) = event
                .target()
                .and_then(|target| target.dyn_into::<HtmlInputElement>().ok())
            else {
                return;
            };
            if let Some(file) = input.files().and_then(|files| files.get(0)) {
                send_file(file);
            }
            // Picking the same file again must fire `change` again.
            input.set_value("");
        }
    };
    let on_drop = move |event: ev::DragEvent| {
        event.prevent_default();
        dragging.set(false);
        if let Some(file) = event
            .data_transfer()
            .and_then(|transfer| transfer.files())
            .and_then(|files| files.get(0))
        {
            send_file(file);
        }
    };
    let on_drag_over = move |event: ev::DragEvent| {
        event.prevent_default();
        dragging.set(true);
    };
    let on_paste = move |event: ev::SubmitEvent| {
        event.prevent_default();
        if busy() {
            return;
        }
        let text = event
            .target()
            .and_then(|target| target.dyn_into::<web_sys::HtmlFormElement>().ok())
            .and_then(|form| web_sys::FormData::new_with_form(&form).ok())
            .and_then(|data| data.get("text").as_string())
            .unwrap_or_default();
        let (title, method) = options();
        clear_failure();
        sending.set(Some(("the pasted text".to_owned(), 1.0)));
        spawn_local(async move {
            finish(guides::create_from_text(title, text, method).await);
        });
    };

    let tab = move |paste: bool, label: &'static str, testid: &'static str| {
        view! {
            <button
                type="button"
                role="tab"
                class="tab"
                aria-selected=move || (paste_mode.get() == paste).to_string()
                aria-controls="add-guide-panel"
                data-testid=testid
                on:click=move |_| paste_mode.set(paste)
            >
                {label}
            </button>
        }
    };
    let status_text = move || {
        sending
            .get()
            .map(|(name, fraction)| {
                if fraction < 1.0 {
                    format!("Uploading {name}… {}%", format::percent(fraction))
                } else {
                    format!("Reading {name}…")
                }
            })
            .unwrap_or_default()
    };
    let duplicate = move || {
        duplicate_error.get().map(|message| {
            let existing = existing_guide_id(&message);
            view! {
                <div class="notice notice-warn" role="alert" data-testid="duplicate-error">
                    <p class="notice-title">"You already have this guide"</p>
                    <p>{message}</p>
                    {existing.map(|id| view! {
                        <a href=format!("/guides/{id}") data-testid="duplicate-link">
                            "Open the existing guide"
                        </a>
                    }.into_any())}
                </div>
            }
            .into_any()
        })
    };

    view! {
        <section class="card" data-testid="guide-upload" aria-labelledby="add-guide-title">
            <h2 id="add-guide-title">"Add a guide"</h2>
            <div class="tabs" role="tablist" aria-label="How to add the guide">
                {tab(false, "Upload a file", "tab-upload")}
                {tab(true, "Paste text", "tab-paste")}
            </div>
            <div id="add-guide-panel" role="tabpanel" class="form">
                <div class="field-row">
                    <div class="field">
                        <label for="guide-title">"Title (optional when uploading a file)"</label>
                        <input id="guide-title" type="text" maxlength="200" />
                    </div>
                    <div class="field">
                        <label for="guide-method">"Item extraction"</label>
                        <select id="guide-method" data-testid="method">
                            {method_options()}
                        </select>
                    </div>
                </div>
                <div
                    class=move || format!("dropzone{}", if dragging.get() { " dragging" } else { "" })
                    data-testid="dropzone"
                    hidden=paste_mode
                    on:dragenter=on_drag_over
                    on:dragover=on_drag_over
                    on:dragleave=move |_| dragging.set(false)
                    on:drop=on_drop
                >
                    <svg viewBox="0 0 24 24" width="36" height="36" aria-hidden="true">
                        <path
                            d="M12 16V4m0 0l-4.5 4.5M12 4l4.5 4.5M4 15v3a2 2 0 002 2h12a2 2 0 002-2v-3"
                            fill="none"
                            stroke="currentColor"
                            stroke-width="1.8"
                            stroke-linecap="round"
                            stroke-linejoin="round"
                        />
                    </svg>
                    <p class="dropzone-title">"Drag and drop a marking guide here"</p>
                    <p class="hint">"PDF, DOCX, TXT or Markdown"</p>
                    <label for="guide-file" class="button primary file-button">
                        "Choose a file"
                    </label>
                    <input
                        id="guide-file"
                        class="visually-hidden"
                        type="file"
                        accept=ACCEPT
                        data-testid="file-input"
                        disabled=busy
                        on:change=on_pick
                    />
                </div>
                <form class="form" hidden=move || !paste_mode.get() on:submit=on_paste>
                    <div class="field">
                        <label for="guide-text">"Guide text"</label>
                        <textarea
                            id="guide-text"
                            name="text"
                            rows="10"
                            required=true
                            placeholder="Question 1 … [5 marks]"
                        ></textarea>
                    </div>
                    <button type="submit" class="button primary" data-testid="paste-submit" disabled=busy>
                        "Create guide"
                    </button>
                </form>
                <div class="upload-status" aria-live="polite" hidden=move || !busy()>
                    <p data-testid="upload-status">{move || status_text()}</p>
                    <ProgressBar
                        value=Arc::new(move || sending.get().map_or(0.0, |(_, f)| f))
                        label="Upload progress"
                        testid="upload-progress"
                    />
                </div>
                {move || duplicate()}
                <FormError message=other_error testid="upload-error" />
            </div>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_existing_guide_in_a_duplicate_message() {
        let message =
            "This guide was already uploaded as “Biology (mock)” on 2026-05-30 (guide 12).";
        assert_eq!(existing_guide_id(message), Some("12".to_owned()));
        assert_eq!(existing_guide_id("This guide was already uploaded."), None);
    }
}
