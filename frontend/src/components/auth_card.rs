//! The centred card that frames the sign-in and sign-up forms.

use leptos::prelude::*;

use super::logo::Brand;

/// Page frame for the account forms.
#[component]
pub fn AuthCard(
    /// The page heading.
    title: &'static str,
    /// One sentence under the heading.
    lead: &'static str,
    children: Children,
) -> impl IntoView {
    view! {
        <main class="auth" id="main">
            <div class="auth-panel">
                <Brand />
                <div class="card auth-card">
                    <h1>{title}</h1>
                    <p class="lead">{lead}</p>
                    {children()}
                </div>
                <p class="footnote">"Self-hosted AI grading, calibrated on your own marking."</p>
            </div>
        </main>
    }
}
