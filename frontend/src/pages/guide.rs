//! `/guides/:id`: one guide: its extraction (live), its items (editable), re-extraction,
//! renaming and deletion.

use std::sync::Arc;

use leptos::{ev, prelude::*, task::spawn_local};
use wasm_bindgen::JsCast;
use web_sys::{FormData, HtmlFormElement};

use crate::api::guides::{self, GuideDetail, GuideStatus, Method};
use crate::api::http::ErrorCode;
use crate::api::jobs::JobStatus;
use crate::components::{
    badge::LiveBadge, form_error::FormError, format, guide_upload::method_options,
    handler::Handler, item_editor::ItemsEditor, job_monitor::JobMonitor, keyed::keyed,
    loaded::Loaded, loading::loading, page_title::set_page_title,
};
use crate::router;

/// The guide page, for guide `id` (from the address).
#[component]
pub fn GuidePage(id: String) -> impl IntoView {
    set_page_title("Guide");
    // The latest answer, numbered so that each one redraws the page.
    let loaded = Loaded::new();
    let id = StoredValue::new(id);
    let load = move || {
        let id = id.get_value();
        spawn_local(async move {
            let guide = guides::get(id).await;
            loaded.set(guide);
        });
    };
    load();

    let body = move |_| match loaded.get::<GuideDetail>() {
        None => loading("Loading the guide…"),
        Some(Err(error)) => {
            let missing = error.code == ErrorCode::NotFound;
            view! {
                <div class="empty" role="alert" data-testid=if missing { "guide-missing" } else { "guide-error" }>
                    <p class="empty-title">{if missing { "Guide not found" } else { "The guide could not be loaded" }}</p>
                    <p class="empty-detail">
                        {if missing {
                            "It does not exist, or it belongs to someone else.".to_owned()
                        } else {
                            error.message
                        }}
                    </p>
                    <a href="/guides">"Back to your guides"</a>
                </div>
            }
            .into_any()
        }
        Some(Ok(detail)) => {
            set_page_title(&detail.title);
            view! { <GuideView detail=detail reload=move |()| load() /> }.into_any()
        }
    };

    view! {
        <main class="content" id="main" tabindex="-1" data-testid="guide-page">
            <nav class="breadcrumb" aria-label="Breadcrumb">
                <a href="/guides">"Guides"</a>
            </nav>
            {keyed(move || loaded.version(), body)}
        </main>
    }
}

/// Reads one text field of the form that sent `event`.
fn form_field(event: &ev::SubmitEvent, name: &str) -> String {
    event
        .target()
        .and_then(|target| target.dyn_into::<HtmlFormElement>().ok())
        .and_then(|form| FormData::new_with_form(&form).ok())
        .and_then(|data| data.get(name).as_string())
        .unwrap_or_default()
}

#[component]
fn GuideView(
    detail: GuideDetail,
    /// Loads the guide again (after an extraction ends).
    #[prop(into)]
    reload: Handler<()>,
) -> impl IntoView {
    let GuideDetail {
        id,
        title,
        filename,
        status,
        error,
        created_at,
        items,
        job,
    } = detail;
    let title = RwSignal::new(title);
    let items = RwSignal::new(items);
    let status = RwSignal::new(status);
    // The job shown: the latest extraction, or the one just started.
    let job = RwSignal::new(job.map(|job| (job.id, job.status, job.progress)));
    let action_error = RwSignal::new(None::<String>);
    let renaming = RwSignal::new(false);
    let confirming = RwSignal::new(false);

    let reextract = {
        let id = id.clone();
        move |event: ev::SubmitEvent| {
            event.prevent_default();
            let method = Method::from_key(&form_field(&event, "method"));
            let id = id.clone();
            status.set(GuideStatus::Pending);
            spawn_local(async move {
                match guides::reextract(id, method).await {
                    Ok(job_id) => {
                        action_error.set(None);
                        status.set(GuideStatus::Extracting);
                        job.set(Some((job_id, JobStatus::Queued, 0.0)));
                    }
                    Err(err) => {
                        status.set(GuideStatus::Ready);
                        action_error.set(Some(err.message));
                    }
                }
            });
        }
    };
    let rename = {
        let id = id.clone();
        move |event: ev::SubmitEvent| {
            event.prevent_default();
            let new_title = form_field(&event, "title").trim().to_owned();
            let id = id.clone();
            spawn_local(async move {
                match guides::rename(id, new_title).await {
                    Ok(saved) => {
                        title.set(saved);
                        action_error.set(None);
                        renaming.set(false);
                    }
                    Err(err) => action_error.set(Some(err.message)),
                }
            });
        }
    };
    let delete = {
        let id = id.clone();
        move |_| {
            let id = id.clone();
            spawn_local(async move {
                match guides::delete(id).await {
                    Ok(()) => router::navigate("/guides"),
                    Err(err) => action_error.set(Some(err.message)),
                }
            });
        }
    };

    let monitor = move || {
        job.get().map(|(job_id, job_status, progress)| {
            view! {
                <JobMonitor
                    job_id=job_id
                    status=job_status
                    progress=progress
                    label="Item extraction"
                    on_finish={
                        let reload = reload.clone();
                        move |_| reload.run(())
                    }
                />
            }
        })
    };
    let failed = error.filter(|_| status.get_untracked() == GuideStatus::Failed);

    view! {
        <header class="page-head">
            <div class="title-row" hidden=renaming>
                <h1 data-testid="guide-title">{title}</h1>
                <button type="button" class="button subtle" data-testid="rename-guide" on:click=move |_| renaming.set(true)>
                    "Rename"
                </button>
            </div>
            <form class="title-row" hidden=move || !renaming.get() on:submit=rename>
                <label for="guide-new-title" class="visually-hidden">"New title"</label>
                <input id="guide-new-title" name="title" type="text" maxlength="200" required=true prop:value=title />
                <button type="submit" class="button primary">"Save"</button>
                <button type="button" class="button subtle" on:click=move |_| renaming.set(false)>"Cancel"</button>
            </form>
            <p class="meta">
                <LiveBadge status=Arc::new(move || { let s = status.get(); (s.label(), s.tone()) }) testid="guide-status" />
                {filename.map(|name| view! { <span>{name}</span> }.into_any())}
                <span>"Added " <time datetime=created_at.clone()>{format::date_time(&created_at)}</time></span>
                <a href=format!("/guides/{id}/answers") data-testid="answers-link">"Scored answers"</a>
            </p>
        </header>
        <FormError message=action_error testid="guide-action-error" />
        <FormError message=failed testid="extraction-error" />
        <section class="card" data-testid="extraction" aria-labelledby="extraction-title">
            <h2 id="extraction-title">"Extraction"</h2>
            {move || monitor()}
            <form class="reextract" on:submit=reextract>
                <div class="field">
                    <label for="reextract-method">"Extract the items again with"</label>
                    <select id="reextract-method" name="method">{method_options()}</select>
                </div>
                <button type="submit" class="button subtle" data-testid="reextract" disabled=move || status.get().is_busy()>
                    "Re-extract"
                </button>
                <p class="hint">"Items you edited or added are kept."</p>
            </form>
        </section>
        <ItemsEditor guide_id=id items=items />
        <section class="danger-zone" aria-label="Delete the guide">
            <button
                type="button"
                class="button subtle danger"
                data-testid="delete-guide"
                hidden=confirming
                on:click=move |_| confirming.set(true)
            >
                "Delete this guide"
            </button>
            <span class="confirm" hidden=move || !confirming.get()>
                "Delete the guide, its items and its jobs?"
                <button type="button" class="button danger" data-testid="confirm-delete-guide" on:click=delete>
                    "Delete"
                </button>
                <button type="button" class="button subtle" on:click=move |_| confirming.set(false)>
                    "Keep"
                </button>
            </span>
        </section>
    }
}
