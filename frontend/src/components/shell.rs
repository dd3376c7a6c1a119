//! The signed-in frame: a header with the navigation and the account, then the page.

use leptos::{prelude::*, task::spawn_local};
use leptos_router::components::A;

use super::logo::Brand;
use crate::api::auth;

/// Header, navigation and `<main>`; `testid` marks the page for browser tests.
#[component]
pub fn AppShell(
    /// `data-testid` of the page's root.
    testid: &'static str,
    children: Children,
) -> impl IntoView {
    let me = RwSignal::new(None);
    let load_me = move || spawn_local(async move { me.set(Some(auth::me().await)) });
    load_me();
    // Signing out clears the token whatever the server says; the guard then leaves.
    let sign_out = Action::new_local(|_: &()| auth::sign_out());
    let signing_out = sign_out.pending();

    let user_name = move || {
        me.get().and_then(Result::ok).map(|user| {
            view! {
                <span class="user-name" data-testid="user-name" title=user.email>
                    {user.display_name}
                </span>
            }
        })
    };
    let load_error = move || {
        me.get().and_then(Result::err).map(|error| {
            view! {
                <div class="banner" role="alert" data-testid="page-error">
                    <span>{error.message}</span>
                    <button type="button" class="button subtle" on:click=move |_| load_me()>
                        "Try again"
                    </button>
                </div>
            }
        })
    };

    view! {
        <div class="app" data-testid=testid>
            <a class="skip-link" href="#main">
                "Skip to content"
            </a>
            <header class="topbar">
                <div class="topbar-inner">
                    <A href="/" attr:class="brand-link" attr:aria-label="GradeLab dashboard">
                        <Brand />
                    </A>
                    <nav class="nav" aria-label="Main">
                        <A href="/" exact=true attr:data-testid="nav-dashboard">
                            "Dashboard"
                        </A>
                        <A href="/guides" attr:data-testid="nav-guides">
                            "Guides"
                        </A>
                        <A href="/training" attr:data-testid="nav-training">
                            "Training"
                        </A>
                    </nav>
                    <div class="account">
                        {user_name}
                        <button
                            type="button"
                            class="button subtle"
                            data-testid="sign-out"
                            disabled=signing_out
                            on:click=move |_| {
                                sign_out.dispatch(());
                            }
                        >
                            {move || if signing_out.get() { "Signing out…" } else { "Sign out" }}
                        </button>
                    </div>
                </div>
            </header>
            <main class="content" id="main" tabindex="-1">
                {load_error}
                {children()}
            </main>
        </div>
    }
}
