//! The error line of a form, announced to screen readers.

use leptos::prelude::*;

/// Renders the message, if any, in a `role="alert"` region.
#[component]
pub fn FormError(#[prop(into)] message: Signal<Option<String>>) -> impl IntoView {
    move || {
        message.get().map(|message| {
            view! {
                <p class="form-error" role="alert" data-testid="form-error">
                    {message}
                </p>
            }
        })
    }
}
