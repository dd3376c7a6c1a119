//! Small status labels.

use std::sync::Arc;

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

/// A badge whose label and tone change: `status` gives `(label, tone)` (reactively).
///
/// A plain shared closure rather than a `Signal`: no signal code compiled for the pair.
#[component]
pub fn LiveBadge(
    status: Arc<dyn Fn() -> (&'static str, &'static str) + Send + Sync>,
    /// `data-testid`.
    testid: &'static str,
) -> impl IntoView {
    let label = status.clone();
    view! {
        <span class=move || format!("badge badge-{}", status().1) data-testid=testid>
            {move || label().0.to_owned()}
        </span>
    }
}
