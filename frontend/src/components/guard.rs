//! Route guards: signed-in pages send guests to `/signin`, and the sign-in pages send members home.

use leptos::prelude::*;
use leptos_router::{components::Redirect, NavigateOptions};

use crate::api::session;

/// Replaces the history entry, so "back" does not bounce between guarded pages.
fn replace() -> NavigateOptions {
    NavigateOptions {
        replace: true,
        ..NavigateOptions::default()
    }
}

/// Shows its children only while signed in; otherwise goes to `/signin`.
#[component]
pub fn RequireAuth(children: ChildrenFn) -> impl IntoView {
    view! {
        <Show when=session::signed_in fallback=|| view! { <Redirect path="/signin" options=replace() /> }>
            {children()}
        </Show>
    }
}

/// Shows its children only while signed out; otherwise goes to the dashboard.
#[component]
pub fn RequireGuest(children: ChildrenFn) -> impl IntoView {
    view! {
        <Show when=|| !session::signed_in() fallback=|| view! { <Redirect path="/" options=replace() /> }>
            {children()}
        </Show>
    }
}
