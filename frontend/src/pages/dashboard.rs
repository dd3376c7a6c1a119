//! `/`: the signed-in home: who is signed in, and what exists (nothing yet).

use leptos::prelude::*;

use crate::api::auth;
use crate::components::{empty_card::EmptyCard, logo::Brand, page_title::set_page_title};

/// The dashboard.
#[component]
pub fn DashboardPage() -> impl IntoView {
    set_page_title("Dashboard");
    let me = LocalResource::new(auth::me);
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
                    <button type="button" class="button subtle" on:click=move |_| me.refetch()>
                        "Try again"
                    </button>
                </div>
            }
        })
    };

    view! {
        <div class="app" data-testid="dashboard">
            <a class="skip-link" href="#main">
                "Skip to content"
            </a>
            <header class="topbar">
                <div class="topbar-inner">
                    <Brand />
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
            <main class="content" id="main">
                <h1>"Dashboard"</h1>
                <p class="lead">
                    "Upload a marking guide, calibrate a grader on answers you have scored, "
                    "then test it on answers it has never seen."
                </p>
                {load_error}
                <div class="cards">
                    <EmptyCard
                        title="Guides"
                        message="No marking guides yet"
                        detail="Upload a marking guide (PDF, DOCX, TXT or Markdown) to extract its questions and rubric."
                        testid="card-guides"
                    />
                    <EmptyCard
                        title="Training jobs"
                        message="No training jobs yet"
                        detail="Once a guide has scored answers, a training job calibrates a grader on them."
                        testid="card-jobs"
                    />
                    <EmptyCard
                        title="Reports"
                        message="No reports yet"
                        detail="Reports on training jobs and test runs will be listed here."
                        testid="card-reports"
                    />
                </div>
            </main>
        </div>
    }
}
