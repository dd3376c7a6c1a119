//! Adding a guide: drop a file, pick one, or paste the text; with upload progress and
//! the server's refusal (a duplicate names the existing guide) shown in place.

use leptos::{ev, prelude::*, task::spawn_local};
use leptos_router::{components::A, hooks::use_navigate, NavigateOptions};
use wasm_bindgen::JsCast;
use web_sys::{File, HtmlInputElement};

use crate::api::guides::{self, Method};
use crate::api::http::ErrorCode;
use crate::api::ApiError;
use crate::components::progress::ProgressBar;

/// File types the server reads.
const ACCEPT: &str = ".pdf,.docx,.txt,.md,.markdown,application/pdf,text/plain,text/markdown,\
application/vnd.openxmlformats-officedocument.wordprocessingml.document";

/// Where an upload is.
#[derive(Clone, Debug, PartialEq)]
enum Stage {
    Idle,
    /// Bytes going up: name and fraction sent.
    Sending(String, f64),
    /// All sent; the server is reading the file.
    Reading(String),
    Failed(ApiError),
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
    let title = RwSignal::new(String::new());
    let text = RwSignal::new(String::new());
    let method = RwSignal::new(Method::Auto);
    let stage = RwSignal::new(Stage::Idle);
    let dragging = RwSignal::new(false);
    let navigate = use_navigate();

    let busy = move || matches!(stage.get(), Stage::Sending(..) | Stage::Reading(_));
    let optional_title = move || Some(title.get_untracked().trim().to_owned()).filter(|t| !t.is_empty());

    let open_guide = move |result: Result<guides::Created, ApiError>| match result {
        Ok(created) => {
            stage.set(Stage::Idle);
            navigate(&format!("/guides/{}", created.guide_id), NavigateOptions::default());
        }
        Err(error) => stage.set(Stage::Failed(error)),
    };

    let send_file = {
        let open_guide = open_guide.clone();
        move |file: File| {
            if busy() {
                return;
            }
            let name = file.name();
            stage.set(Stage::Sending(name.clone(), 0.0));
            let open_guide = open_guide.clone();
            spawn_local(async move {
                let progress_name = name.clone();
                let result = guides::upload(&file, optional_title(), method.get_untracked(), move |p| {
                    // Once every byte is sent the server still has to read the file.
                    stage.set(if p.fraction() >= 1.0 {
                        Stage::Reading(progress_name.clone())
                    } else {
                        Stage::Sending(progress_name.clone(), p.fraction())
                    });
                })
                .await;
                open_guide(result);
            });
        }
    };

    let on_pick = {
        let send_file = send_file.clone();
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

    let on_paste_submit = move |event: ev::SubmitEvent| {
        event.prevent_default();
        if busy() {
            return;
        }
        let (title, text) = (title.get_untracked(), text.get_untracked());
        stage.set(Stage::Reading("the pasted text".to_owned()));
        let open_guide = open_guide.clone();
        spawn_local(async move {
            let result = guides::create_from_text(
                title.trim().to_owned(),
                text,
                method.get_untracked(),
            )
            .await;
            open_guide(result);
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
                on:click=move |_| {
                    paste_mode.set(paste);
                    if !busy() {
                        stage.set(Stage::Idle);
                    }
                }
            >
                {label}
            </button>
        }
    };

    let status = move || match stage.get() {
        Stage::Idle => None,
        Stage::Sending(name, fraction) => Some(
            view! {
                <div class="upload-status" aria-live="polite">
                    <p>{format!("Uploading {name}… {}%", (fraction * 100.0).round())}</p>
                    <ProgressBar value=fraction label="Upload progress" testid="upload-progress" />
                </div>
            }
            .into_any(),
        ),
        Stage::Reading(name) => Some(
            view! {
                <div class="upload-status" aria-live="polite">
                    <p>{format!("Reading {name}…")}</p>
                    <ProgressBar value=1.0 label="Upload progress" testid="upload-progress" />
                </div>
            }
            .into_any(),
        ),
        Stage::Failed(error) if error.code == ErrorCode::Duplicate => {
            let existing = existing_guide_id(&error.message);
            Some(
                view! {
                    <div class="notice notice-warn" role="alert" data-testid="duplicate-error">
                        <p class="notice-title">"You already have this guide"</p>
                        <p>{error.message}</p>
                        {existing.map(|id| {
                            view! {
                                <A href=format!("/guides/{id}") attr:data-testid="duplicate-link">
                                    "Open the existing guide"
                                </A>
                            }
                        })}
                    </div>
                }
                .into_any(),
            )
        }
        Stage::Failed(error) => Some(
            view! {
                <p class="form-error" role="alert" data-testid="upload-error">
                    {error.message}
                </p>
            }
            .into_any(),
        ),
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
                        <label for="guide-title">
                            {move || if paste_mode.get() { "Title" } else { "Title (optional)" }}
                        </label>
                        <input
                            id="guide-title"
                            type="text"
                            maxlength="200"
                            required=paste_mode
                            form="paste-form"
                            placeholder=move || {
                                if paste_mode.get() { "" } else { "Taken from the guide when left empty" }
                            }
                            bind:value=title
                        />
                    </div>
                    <div class="field">
                        <label for="guide-method">"Item extraction"</label>
                        <select
                            id="guide-method"
                            data-testid="method"
                            on:change=move |event| method.set(Method::from_key(&event_target_value(&event)))
                        >
                            {Method::ALL
                                .map(|m| {
                                    view! {
                                        <option value=m.key() selected=move || method.get() == m>
                                            {m.label()}
                                        </option>
                                    }
                                })}
                        </select>
                    </div>
                </div>
                <Show
                    when=move || paste_mode.get()
                    fallback=move || {
                        view! {
                            <div
                                class="dropzone"
                                class:dragging=dragging
                                data-testid="dropzone"
                                on:dragenter=on_drag_over
                                on:dragover=on_drag_over
                                on:dragleave=move |_| dragging.set(false)
                                on:drop=on_drop.clone()
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
                                    on:change=on_pick.clone()
                                />
                            </div>
                        }
                    }
                >
                    <form id="paste-form" class="form" on:submit=on_paste_submit.clone()>
                        <div class="field">
                            <label for="guide-text">"Guide text"</label>
                            <textarea
                                id="guide-text"
                                rows="10"
                                required=true
                                placeholder="Question 1 … [5 marks]"
                                bind:value=text
                            ></textarea>
                        </div>
                        <button
                            type="submit"
                            class="button primary"
                            data-testid="paste-submit"
                            disabled=busy
                        >
                            "Create guide"
                        </button>
                    </form>
                </Show>
                {status}
            </div>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_existing_guide_in_a_duplicate_message() {
        let message = "This guide was already uploaded as “Biology (mock)” on 2026-05-30 (guide 12).";
        assert_eq!(existing_guide_id(message), Some("12".to_owned()));
        assert_eq!(existing_guide_id("This guide was already uploaded."), None);
    }
}
