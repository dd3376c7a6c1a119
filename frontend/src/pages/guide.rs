//! `/guides/:id`: one guide: its extraction (live), its items (editable), re-extraction,
//! renaming and deletion.

use leptos::{ev, prelude::*, task::spawn_local};
use leptos_router::{
    components::A,
    hooks::{use_navigate, use_params_map},
    NavigateOptions,
};

use crate::api::guides::{self, GuideDetail, GuideStatus, Method};
use crate::api::http::ErrorCode;
use crate::api::jobs::JobStatus;
use crate::components::{
    badge::Badge, format, item_editor::ItemsEditor, job_monitor::JobMonitor,
    page_title::set_page_title, shell::AppShell,
};

/// The guide page.
#[component]
pub fn GuidePage() -> impl IntoView {
    set_page_title("Guide");
    let params = use_params_map();
    let id = move || params.with(|p| p.get("id").unwrap_or_default());
    let guide = RwSignal::new(None);
    let load = move || {
        let id = id();
        spawn_local(async move { guide.set(Some(guides::get(id).await)) });
    };
    // Again whenever the address names another guide.
    Effect::new(load);

    let body = move || match guide.get() {
        None => view! { <p class="muted" aria-live="polite">"Loading the guide…"</p> }.into_any(),
        Some(Err(error)) if error.code == ErrorCode::NotFound => view! {
            <div class="empty" role="alert" data-testid="guide-missing">
                <p class="empty-title">"Guide not found"</p>
                <p class="empty-detail">"It does not exist, or it belongs to someone else."</p>
                <A href="/guides">"Back to your guides"</A>
            </div>
        }
        .into_any(),
        Some(Err(error)) => view! {
            <div class="banner" role="alert" data-testid="guide-error">
                <span>{error.message}</span>
                <button type="button" class="button subtle" on:click=move |_| load()>
                    "Try again"
                </button>
            </div>
        }
        .into_any(),
        Some(Ok(detail)) => {
            set_page_title(&detail.title);
            view! { <GuideView detail=detail reload=move |()| load() /> }.into_any()
        }
    };

    view! {
        <AppShell testid="guide-page">
            <nav class="breadcrumb" aria-label="Breadcrumb">
                <A href="/guides">"Guides"</A>
            </nav>
            {body}
        </AppShell>
    }
}

#[component]
fn GuideView(
    detail: GuideDetail,
    /// Loads the guide again (after an extraction ends).
    #[prop(into)]
    reload: Callback<()>,
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
    let method = RwSignal::new(Method::Auto);
    let action_error = RwSignal::new(None::<String>);
    let starting = RwSignal::new(false);

    let reextract = {
        let id = id.clone();
        move |_| {
            starting.set(true);
            let id = id.clone();
            spawn_local(async move {
                match guides::reextract(id, method.get_untracked()).await {
                    Ok(job_id) => {
                        action_error.set(None);
                        status.set(GuideStatus::Extracting);
                        job.set(Some((job_id, JobStatus::Queued, 0.0)));
                    }
                    Err(err) => action_error.set(Some(err.message)),
                }
                starting.set(false);
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
                    on_finish=move |_| reload.run(())
                />
            }
        })
    };

    view! {
        <header class="page-head">
            <TitleEditor id=id.clone() title=title />
            <p class="meta">
                {move || {
                    let s = status.get();
                    view! { <Badge label=s.label() tone=s.tone() testid="guide-status" /> }
                }}
                {filename.map(|name| view! { <span>{name}</span> })}
                <span>"Added " <time datetime=created_at.clone()>{format::date_time(&created_at)}</time></span>
            </p>
        </header>
        {error
            .filter(|_| status.get_untracked() == GuideStatus::Failed)
            .map(|text| view! { <p class="form-error" role="alert" data-testid="extraction-error">{text}</p> })}
        <section class="card" data-testid="extraction" aria-labelledby="extraction-title">
            <div class="card-head">
                <h2 id="extraction-title">"Extraction"</h2>
            </div>
            {monitor}
            <div class="reextract">
                <div class="field">
                    <label for="reextract-method">"Extract the items again with"</label>
                    <select
                        id="reextract-method"
                        on:change=move |event| method.set(Method::from_key(&event_target_value(&event)))
                    >
                        {Method::ALL.map(|m| view! { <option value=m.key()>{m.label()}</option> })}
                    </select>
                </div>
                <button
                    type="button"
                    class="button subtle"
                    data-testid="reextract"
                    disabled=move || starting.get() || status.get().is_busy()
                    on:click=reextract
                >
                    "Re-extract"
                </button>
                <p class="hint">"Items you edited or added are kept."</p>
            </div>
            {move || action_error.get().map(|text| view! { <p class="form-error" role="alert">{text}</p> })}
        </section>
        <ItemsEditor guide_id=id.clone() items=items />
        <DeleteGuide id=id />
    }
}

/// The guide's title, renamable in place.
#[component]
fn TitleEditor(id: String, title: RwSignal<String>) -> impl IntoView {
    let editing = RwSignal::new(false);
    let draft = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let save = move |event: ev::SubmitEvent| {
        event.prevent_default();
        let (id, new_title) = (id.clone(), draft.get_untracked());
        spawn_local(async move {
            match guides::rename(id, new_title.trim().to_owned()).await {
                Ok(saved) => {
                    title.set(saved);
                    error.set(None);
                    editing.set(false);
                }
                Err(err) => error.set(Some(err.message)),
            }
        });
    };
    view! {
        <Show
            when=move || editing.get()
            fallback=move || view! {
                <div class="title-row">
                    <h1 data-testid="guide-title">{move || title.get()}</h1>
                    <button
                        type="button"
                        class="button subtle"
                        data-testid="rename-guide"
                        on:click=move |_| {
                            draft.set(title.get_untracked());
                            editing.set(true);
                        }
                    >
                        "Rename"
                    </button>
                </div>
            }
        >
            <form class="title-row" on:submit=save.clone()>
                <label for="guide-new-title" class="visually-hidden">"Title"</label>
                <input id="guide-new-title" type="text" maxlength="200" required=true bind:value=draft />
                <button type="submit" class="button primary">"Save"</button>
                <button type="button" class="button subtle" on:click=move |_| editing.set(false)>"Cancel"</button>
            </form>
            {move || error.get().map(|text| view! { <p class="form-error" role="alert">{text}</p> })}
        </Show>
    }
}

/// Deletes the guide after a second click.
#[component]
fn DeleteGuide(id: String) -> impl IntoView {
    let confirming = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let navigate = use_navigate();
    let delete = move |_| {
        let (id, navigate) = (id.clone(), navigate.clone());
        spawn_local(async move {
            match guides::delete(id).await {
                Ok(()) => navigate("/guides", NavigateOptions::default()),
                Err(err) => error.set(Some(err.message)),
            }
        });
    };
    view! {
        <section class="danger-zone" aria-label="Delete the guide">
            <Show
                when=move || confirming.get()
                fallback=move || view! {
                    <button
                        type="button"
                        class="button subtle danger"
                        data-testid="delete-guide"
                        on:click=move |_| confirming.set(true)
                    >
                        "Delete this guide"
                    </button>
                }
            >
                <span class="confirm">
                    "Delete the guide, its items and its jobs?"
                    <button type="button" class="button danger" data-testid="confirm-delete-guide" on:click=delete.clone()>
                        "Delete"
                    </button>
                    <button type="button" class="button subtle" on:click=move |_| confirming.set(false)>
                        "Keep"
                    </button>
                </span>
            </Show>
            {move || error.get().map(|text| view! { <p class="form-error" role="alert">{text}</p> })}
        </section>
    }
}
