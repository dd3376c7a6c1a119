//! `/signin`: email and password; on success the app moves on to the dashboard.

use leptos::{ev::SubmitEvent, prelude::*, task::spawn_local};

use crate::api::auth;
use crate::components::{
    auth_card::AuthCard, field::Field, form_error::FormError, page_title::set_page_title,
};

/// The sign-in form.
#[component]
pub fn SignInPage() -> impl IntoView {
    set_page_title("Sign in");
    let email = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());

    let pending = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        if pending.get_untracked() {
            return;
        }
        pending.set(true);
        error.set(None);
        let (email, password) = (
            email.get_untracked().trim().to_owned(),
            password.get_untracked(),
        );
        spawn_local(async move {
            // On success the session signal changes and the app leaves this page.
            if let Err(failure) = auth::sign_in(email, password).await {
                error.set(Some(failure.message));
            }
            pending.set(false);
        });
    };

    view! {
        <AuthCard title="Sign in" lead="Welcome back. Sign in to your graders, jobs and reports.">
            <form class="form" on:submit=on_submit>
                <Field id="email" label="Email" kind="email" autocomplete="username" value=email />
                <Field
                    id="password"
                    label="Password"
                    kind="password"
                    autocomplete="current-password"
                    value=password
                />
                <FormError message=error />
                <button type="submit" class="button primary" disabled=pending>
                    {move || String::from(if pending.get() { "Signing in…" } else { "Sign in" })}
                </button>
            </form>
            <p class="switch">"New to GradeLab? " <a href="/signup">"Create an account"</a></p>
        </AuthCard>
    }
}
