//! The error line of a form or section, announced to screen readers.

use std::sync::Arc;

use leptos::prelude::*;

/// The message to show, read reactively: from a signal, a fixed value or a closure.
/// A shared closure rather than a `Signal`: no signal code compiled for it.
pub struct Message(Arc<dyn Fn() -> Option<String> + Send + Sync>);

impl Message {
    /// The message `read` gives.
    pub fn new(read: impl Fn() -> Option<String> + Send + Sync + 'static) -> Self {
        Self(Arc::new(read))
    }
}

impl From<RwSignal<Option<String>>> for Message {
    fn from(signal: RwSignal<Option<String>>) -> Self {
        Self::new(move || signal.get())
    }
}

impl From<Option<String>> for Message {
    fn from(message: Option<String>) -> Self {
        Self::new(move || message.clone())
    }
}

/// Renders the message, if any, in a `role="alert"` paragraph.
///
/// Every error line of the app goes through this one component: one copy of its code in
/// the wasm however many places show an error.
#[component]
pub fn FormError(
    #[prop(into)] message: Message,
    /// `data-testid` of the paragraph.
    #[prop(default = "form-error")]
    testid: &'static str,
) -> impl IntoView {
    let Message(message) = message;
    move || {
        message().map(|message| {
            view! {
                <p class="form-error" role="alert" data-testid=testid>
                    {message}
                </p>
            }
        })
    }
}
