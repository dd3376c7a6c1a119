//! A labelled progress bar.

use std::sync::Arc;

use leptos::prelude::*;

use super::format;

/// A determinate bar (`role="progressbar"`) for a fraction from 0 to 1.
#[component]
pub fn ProgressBar(
    /// Fraction done, 0 to 1 (reactively; a shared closure: no signal code compiled for it).
    value: Arc<dyn Fn() -> f64 + Send + Sync>,
    /// Accessible name, e.g. "Upload progress".
    label: &'static str,
    /// `data-testid`.
    testid: &'static str,
) -> impl IntoView {
    let fill = value.clone();
    view! {
        <div
            class="progress"
            role="progressbar"
            aria-label=label
            aria-valuemin="0"
            aria-valuemax="100"
            aria-valuenow=move || format::percent(value()).to_string()
            data-testid=testid
        >
            <div class="progress-fill" style=move || format!("width: {}%", format::percent(fill()))></div>
        </div>
    }
}
