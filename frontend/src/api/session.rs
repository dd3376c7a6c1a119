//! The signed-in session: the bearer token, kept in `localStorage` and mirrored in a signal.
//!
//! The signal makes the route table reactive: clearing the token (sign-out, or
//! an `UNAUTHENTICATED` answer) sends the user back to the sign-in page.

use leptos::prelude::{ArcRwSignal, Get, GetUntracked, Set};

/// The `localStorage` key that holds the bearer token.
pub const TOKEN_KEY: &str = "gradelab.token";

thread_local! {
    static TOKEN: ArcRwSignal<Option<String>> = ArcRwSignal::new(stored_token());
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

fn stored_token() -> Option<String> {
    storage()?
        .get_item(TOKEN_KEY)
        .ok()
        .flatten()
        .filter(|token| !token.is_empty())
}

/// The current token, without subscribing the caller to changes.
pub fn token() -> Option<String> {
    TOKEN.with(|token| token.get_untracked())
}

/// Whether someone is signed in; reactive, for the route table and views.
pub fn signed_in() -> bool {
    TOKEN.with(|token| token.get().is_some())
}

/// Keeps a token returned by `signUp` / `signIn`.
pub fn set_token(token: &str) {
    if let Some(storage) = storage() {
        // Storage can be full or disabled; the session then lasts until reload.
        let _ = storage.set_item(TOKEN_KEY, token);
    }
    TOKEN.with(|signal| signal.set(Some(token.to_owned())));
}

/// Forgets the token; signed-in pages redirect to `/signin`.
pub fn clear_token() {
    if let Some(storage) = storage() {
        let _ = storage.remove_item(TOKEN_KEY);
    }
    TOKEN.with(|signal| signal.set(None));
}
