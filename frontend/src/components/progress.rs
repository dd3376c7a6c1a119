//! A labelled progress bar.

use leptos::prelude::*;

use super::format;

/// A determinate bar (`role="progressbar"`) for a fraction from 0 to 1.
#[component]
pub fn ProgressBar(
    /// Fraction done, 0 to 1.
    #[prop(into)]
    value: Signal<f64>,
    /// Accessible name, e.g. "Upload progress".
    label: &'static str,
    /// `data-testid`.
    testid: &'static str,
) -> impl IntoView {
    let percent = move || format::percent(value.get());
    view! {
        <div
            class="progress"
            role="progressbar"
            aria-label=label
            aria-valuemin="0"
            aria-valuemax="100"
            aria-valuenow=move || percent().to_string()
            data-testid=testid
        >
            <div class="progress-fill" style:width=move || format!("{}%", percent())></div>
        </div>
    }
}
