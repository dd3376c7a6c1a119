//! The error line of a form or section, announced to screen readers.

use leptos::prelude::*;

/// Renders the message, if any, in a `role="alert"` paragraph.
///
/// Every error line of the app goes through this one component: one copy of its code in
/// the wasm however many places show an error.
#[component]
pub fn FormError(
    #[prop(into)] message: Signal<Option<String>>,
    /// `data-testid` of the paragraph.
    #[prop(default = "form-error")]
    testid: &'static str,
) -> impl IntoView {
    move || {
        message.get().map(|message| {
            view! {
                <p class="form-error" role="alert" data-testid=testid>
                    {message}
                </p>
            }
        })
    }
}
