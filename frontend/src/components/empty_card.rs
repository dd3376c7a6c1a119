//! A dashboard card for something that does not exist yet.

use leptos::prelude::*;

/// A titled card with an empty-state message.
#[component]
pub fn EmptyCard(
    /// The card heading, e.g. "Guides".
    title: &'static str,
    /// What is missing, e.g. "No marking guides yet".
    message: &'static str,
    /// What to do about it.
    detail: &'static str,
    /// `data-testid` of the card, and prefix of its heading id.
    testid: &'static str,
) -> impl IntoView {
    let heading_id = format!("{testid}-title");
    let labelled_by = heading_id.clone();
    view! {
        <section class="card" data-testid=testid aria-labelledby=labelled_by>
            <h2 id=heading_id>{title}</h2>
            <div class="empty">
                <p class="empty-title">{message}</p>
                <p class="empty-detail">{detail}</p>
            </div>
        </section>
    }
}
