//! `/guides`: add a guide (file, drag and drop, or pasted text) and the list of guides.

use leptos::prelude::*;
use leptos_router::components::A;

use crate::api::guides::{self, GuideSummary};
use crate::components::{
    badge::Badge, format, guide_upload::GuideUpload, page_title::set_page_title, shell::AppShell,
};

/// Guides per page of the list.
const PAGE: i64 = 25;

/// The guides page.
#[component]
pub fn GuidesPage() -> impl IntoView {
    set_page_title("Guides");
    view! {
        <AppShell testid="guides-page">
            <h1>"Marking guides"</h1>
            <p class="lead">
                "Upload a marking guide and GradeLab extracts its questions, model answers and rubric. "
                "Check and edit every item before you train a grader."
            </p>
            <div class="stack">
                <GuideUpload />
                <GuideList />
            </div>
        </AppShell>
    }
}

/// One row of the guide table.
pub fn guide_row(guide: GuideSummary) -> impl IntoView {
    let href = format!("/guides/{}", guide.id);
    let created = guide.created_at.clone();
    view! {
        <tr data-testid="guide-row" data-guide-id=guide.id>
            <th scope="row">
                <A href=href attr:data-testid="guide-link">
                    {guide.title}
                </A>
                {guide.filename.map(|name| view! { <span class="sub">{name}</span> })}
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

/// The table header shared with the dashboard.
pub fn guide_table(rows: impl IntoView, caption: &'static str) -> impl IntoView {
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
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
}

#[component]
fn GuideList() -> impl IntoView {
    let pages = RwSignal::new(Vec::<GuideSummary>::new());
    let total = RwSignal::new(None::<i64>);
    let next = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<String>);
    let loading = RwSignal::new(false);

    let load = move |after: Option<String>| {
        loading.set(true);
        leptos::task::spawn_local(async move {
            match guides::list(PAGE, after.clone()).await {
                Ok(page) => {
                    error.set(None);
                    total.set(Some(page.total));
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

    let body = move || {
        if let Some(message) = error.get() {
            return view! {
                <div class="banner" role="alert" data-testid="guides-error">
                    <span>{message}</span>
                    <button type="button" class="button subtle" on:click=move |_| load(None)>
                        "Try again"
                    </button>
                </div>
            }
            .into_any();
        }
        match total.get() {
            None => view! { <p class="muted" aria-live="polite">"Loading guides…"</p> }.into_any(),
            Some(0) => view! {
                <div class="empty" data-testid="guides-empty">
                    <p class="empty-title">"No marking guides yet"</p>
                    <p class="empty-detail">"Upload one above to get started."</p>
                </div>
            }
            .into_any(),
            Some(_) => guide_table(
                move || pages.get().into_iter().map(guide_row).collect_view(),
                "Your marking guides, newest first",
            )
            .into_any(),
        }
    };

    view! {
        <section class="card" data-testid="guide-list" aria-labelledby="guide-list-title">
            <div class="card-head">
                <h2 id="guide-list-title">"Your guides"</h2>
                {move || total.get().map(|n| view! { <span class="muted">{format::plural(n, "guide", "guides")}</span> })}
            </div>
            {body}
            <Show when=move || next.get().is_some()>
                <button
                    type="button"
                    class="button subtle more"
                    disabled=loading
                    on:click=move |_| load(next.get_untracked())
                >
                    {move || if loading.get() { "Loading…" } else { "Show more" }}
                </button>
            </Show>
        </section>
    }
}
