//! A small status label.

use leptos::prelude::*;

/// A coloured badge; `tone` is one of `neutral`, `info`, `ok`, `warn`, `bad`.
#[component]
pub fn Badge(
    /// Text.
    label: &'static str,
    /// Colour family.
    tone: &'static str,
    /// `data-testid`.
    #[prop(optional)]
    testid: Option<&'static str>,
) -> impl IntoView {
    view! {
        <span class=format!("badge badge-{tone}") data-testid=testid>
            {label}
        </span>
    }
}
