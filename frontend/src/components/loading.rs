//! The two states of a section before its data shows: still loading, or failed.
//!
//! Every page's loading line and load error go through these two functions (type-erased
//! views, not a branch type per page): one copy of their code in the wasm.

use leptos::prelude::*;

/// `text` (say "Loading…") in a muted paragraph read out politely.
pub fn loading(text: &'static str) -> AnyView {
    view! { <p class="muted" aria-live="polite">{text}</p> }.into_any()
}

/// Why the section could not load, in a `role="alert"` paragraph with `data-testid`
/// `testid`.
pub fn load_failed(testid: &'static str, message: String) -> AnyView {
    view! { <p class="form-error" role="alert" data-testid=testid>{message}</p> }.into_any()
}
