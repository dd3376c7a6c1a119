//! Small status labels.

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

/// A badge whose label and tone change: `status` gives `(label, tone)`.
#[component]
pub fn LiveBadge(
    #[prop(into)] status: Signal<(&'static str, &'static str)>,
    /// `data-testid`.
    testid: &'static str,
) -> impl IntoView {
    view! {
        <span class=move || format!("badge badge-{}", status.get().1) data-testid=testid>
            {move || status.get().0}
        </span>
    }
}
