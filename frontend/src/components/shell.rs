//! The header of the signed-in pages: the navigation and the account.

use leptos::{prelude::*, task::spawn_local};

use super::loaded::Loaded;
use super::logo::Brand;
use crate::api::auth::{self, User};
use crate::router;

/// A link of the main navigation, marked as the current page when it is (or contains it).
fn nav_link(href: &'static str, label: &'static str, testid: &'static str) -> impl IntoView {
    let current = move || {
        let path = router::path();
        let here = if href == "/" {
            path == "/"
        } else {
            path == href || path.starts_with(&format!("{href}/"))
        };
        // An owned string: attribute closures giving `Option<String>` are compiled anyway.
        here.then(|| "page".to_owned())
    };
    view! {
        <a href=href aria-current=current data-testid=testid>
            {label}
        </a>
    }
}

/// Skip link, header with navigation, user name and sign-out; pages follow in `<main>`.
#[component]
pub fn TopBar() -> impl IntoView {
    let me = Loaded::new();
    let load_me = move || spawn_local(async move { me.set(auth::me().await) });
    load_me();
    let signing_out = RwSignal::new(false);
    // Signing out clears the token whatever the server says; the app then shows /signin.
    let sign_out = move |_| {
        signing_out.set(true);
        spawn_local(async move {
            let _ = auth::sign_out().await;
        });
    };

    let user = move || me.read::<User>().and_then(Result::ok);
    let load_error = move || {
        me.read::<User>().and_then(Result::err).map(|error| {
            view! {
                <div class="banner content" role="alert" data-testid="page-error">
                    <span>{error.message}</span>
                    <button type="button" class="button subtle" on:click=move |_| load_me()>
                        "Try again"
                    </button>
                </div>
            }
            .into_any()
        })
    };

    view! {
        <a class="skip-link" href="#main">
            "Skip to content"
        </a>
        <header class="topbar">
            <div class="topbar-inner">
                <a href="/" class="brand-link" aria-label="GradeLab dashboard">
                    <Brand />
                </a>
                <nav class="nav" aria-label="Main">
                    {nav_link("/", "Dashboard", "nav-dashboard")}
                    {nav_link("/guides", "Guides", "nav-guides")}
                    {nav_link("/training", "Training", "nav-training")}
                    {nav_link("/reports", "Reports", "nav-reports")}
                    {nav_link("/settings", "Settings", "nav-settings")}
                </nav>
                <div class="account">
                    <span
                        class="user-name"
                        data-testid="user-name"
                        title=move || user().map(|u| u.email)
                    >
                        {move || user().map(|u| u.display_name)}
                    </span>
                    <button
                        type="button"
                        class="button subtle"
                        data-testid="sign-out"
                        disabled=signing_out
                        on:click=sign_out
                    >
                        "Sign out"
                    </button>
                </div>
            </div>
        </header>
        {move || load_error()}
    }
}
