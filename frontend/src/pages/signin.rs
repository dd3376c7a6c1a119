//! `/signin`: email and password; on success the guard moves on to the dashboard.

use leptos::{ev::SubmitEvent, prelude::*};
use leptos_router::components::A;

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

    let submit = Action::new_local(|(email, password): &(String, String)| {
        auth::sign_in(email.clone(), password.clone())
    });
    let pending = submit.pending();
    let error = Signal::derive(move || match submit.value().get() {
        Some(Err(error)) if !pending.get() => Some(error.message),
        _ => None,
    });
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        if !pending.get_untracked() {
            submit.dispatch((
                email.get_untracked().trim().to_owned(),
                password.get_untracked(),
            ));
        }
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
                    {move || if pending.get() { "Signing in…" } else { "Sign in" }}
                </button>
            </form>
            <p class="switch">"New to GradeLab? " <A href="/signup">"Create an account"</A></p>
        </AuthCard>
    }
}
