//! Any unknown path.

use leptos::prelude::*;

use crate::components::{auth_card::AuthCard, page_title::set_page_title};

/// "Page not found", with a way back.
#[component]
pub fn NotFoundPage() -> impl IntoView {
    set_page_title("Page not found");
    view! {
        <AuthCard title="Page not found" lead="There is nothing at this address.">
            <a href="/" class="button primary">
                "Go to the dashboard"
            </a>
        </AuthCard>
    }
}
