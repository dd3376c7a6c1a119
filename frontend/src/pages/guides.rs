//! `/guides`: add a guide (file, drag and drop, or pasted text) and the list of guides.

use std::sync::Arc;

use leptos::{prelude::*, task::spawn_local};

use crate::api::guides::{self, GuideSummary};
use crate::components::{
    badge::Badge, format, guide_upload::GuideUpload, keyed::keyed, list::CollectAny,
    loaded::Loaded, page_title::set_page_title,
};

/// Guides per page of the list.
const PAGE: i64 = 25;

/// The guides page.
#[component]
pub fn GuidesPage() -> impl IntoView {
    set_page_title("Guides");
    view! {
        <main class="content" id="main" tabindex="-1" data-testid="guides-page">
            <h1>"Marking guides"</h1>
            <p class="lead">
                "Upload a marking guide and GradeLab extracts its questions, model answers and rubric. "
                "Check and edit every item before you train a grader."
            </p>
            <div class="stack">
                <GuideUpload />
                <GuideList />
            </div>
        </main>
    }
}

/// One row of a guide table.
pub fn guide_row(guide: GuideSummary) -> impl IntoView {
    let href = format!("/guides/{}", guide.id);
    let created = guide.created_at.clone();
    view! {
        <tr data-testid="guide-row" data-guide-id=guide.id>
            <th scope="row">
                <a href=href data-testid="guide-link">
                    {guide.title}
                </a>
                {guide.filename.map(|name| view! { <span class="sub">{name}</span> }.into_any())}
            </th>
            <td>
                <Badge label=guide.status.label() tone=guide.status.tone() testid="guide-status" />
            </td>
            <td class="num" data-testid="guide-items">
                {guide.item_count}
            </td>
            <td class="num">{format::marks(guide.total_marks)}</td>
            <td>
                <time datetime=created.clone()>{format::date(&created)}</time>
            </td>
        </tr>
    }
}

/// A table of guides, one row per guide `guides()` gives, reactively (a shared closure, not
/// a generic one nor a `Signal`: one copy of the table's code for both callers, and no
/// signal code for the list).
pub fn guide_table(
    guides: Arc<dyn Fn() -> Vec<GuideSummary> + Send + Sync>,
    caption: &'static str,
) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table class="table">
                <caption class="visually-hidden">{caption}</caption>
                <thead>
                    <tr>
                        <th scope="col">"Title"</th>
                        <th scope="col">"Status"</th>
                        <th scope="col" class="num">"Items"</th>
                        <th scope="col" class="num">"Marks"</th>
                        <th scope="col">"Added"</th>
                    </tr>
                </thead>
                <tbody>
                    {move || guides().into_iter().map(guide_row).collect_any()}
                </tbody>
            </table>
        </div>
    }
}

/// Where the list is.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum ListState {
    Loading,
    Failed,
    Empty,
    Shown,
}

#[component]
fn GuideList() -> impl IntoView {
    let pages = RwSignal::new(Vec::<GuideSummary>::new());
    let total = Loaded::new();
    let next = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<String>);
    let loading = RwSignal::new(false);

    let load = move |after: Option<String>| {
        loading.set(true);
        spawn_local(async move {
            match guides::list(PAGE, after.clone()).await {
                Ok(page) => {
                    error.set(None);
                    total.set(Ok(page.total));
                    next.set(page.next);
                    pages.update(|list| {
                        if after.is_none() {
                            list.clear();
                        }
                        list.extend(page.guides);
                    });
                }
                Err(err) => error.set(Some(err.message)),
            }
            loading.set(false);
        });
    };
    load(None);

    let state = move || match (error.with(Option::is_some), total.value::<i64>()) {
        (true, _) => ListState::Failed,
        (false, None) => ListState::Loading,
        (false, Some(0)) => ListState::Empty,
        (false, Some(_)) => ListState::Shown,
    };
    let body = move |state| match state {
        ListState::Loading => crate::components::loading::loading("Loading guides…"),
        ListState::Failed => view! {
            <div class="banner" role="alert" data-testid="guides-error">
                <span>{error.get_untracked()}</span>
                <button type="button" class="button subtle" on:click=move |_| load(None)>
                    "Try again"
                </button>
            </div>
        }
        .into_any(),
        ListState::Empty => view! {
            <div class="empty" data-testid="guides-empty">
                <p class="empty-title">"No marking guides yet"</p>
                <p class="empty-detail">"Upload one above to get started."</p>
            </div>
        }
        .into_any(),
        ListState::Shown => guide_table(
            Arc::new(move || pages.get()),
            "Your marking guides, newest first",
        )
        .into_any(),
    };

    view! {
        <section class="card" data-testid="guide-list" aria-labelledby="guide-list-title">
            <div class="card-head">
                <h2 id="guide-list-title">"Your guides"</h2>
                <span class="muted">
                    {move || total.value::<i64>().map(|n| format::plural(n, "guide", "guides"))}
                </span>
            </div>
            {keyed(move || state() as u32, move |_| body(untrack(state)))}
            <button
                type="button"
                class="button subtle more"
                hidden=move || next.with(Option::is_none)
                disabled=loading
                on:click=move |_| load(next.get_untracked())
            >
                "Show more"
            </button>
        </section>
    }
}
