//! `/signup`: creates an account and signs it in; the app then moves on to the dashboard.

use leptos::{ev::SubmitEvent, prelude::*, task::spawn_local};

use crate::api::auth;
use crate::components::{
    auth_card::AuthCard, field::Field, form_error::FormError, page_title::set_page_title,
};

/// What the sign-up form sends.
struct NewAccount {
    email: String,
    password: String,
    display_name: String,
}

/// The sign-up form.
#[component]
pub fn SignUpPage() -> impl IntoView {
    set_page_title("Create account");
    let display_name = RwSignal::new(String::new());
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
        let account = NewAccount {
            email: email.get_untracked().trim().to_owned(),
            password: password.get_untracked(),
            display_name: display_name.get_untracked().trim().to_owned(),
        };
        spawn_local(async move {
            // On success the session signal changes and the app leaves this page.
            if let Err(failure) =
                auth::sign_up(account.email, account.password, account.display_name).await
            {
                error.set(Some(failure.message));
            }
            pending.set(false);
        });
    };

    view! {
        <AuthCard
            title="Create your account"
            lead="Turn your marking guide into a grader you can check against your own marks."
        >
            <form class="form" on:submit=on_submit>
                <Field id="display-name" label="Your name" autocomplete="name" value=display_name />
                <Field id="email" label="Email" kind="email" autocomplete="email" value=email />
                <Field
                    id="password"
                    label="Password"
                    kind="password"
                    autocomplete="new-password"
                    value=password
                    hint="Use a long password that you do not use anywhere else."
                />
                <FormError message=error />
                <button type="submit" class="button primary" disabled=pending>
                    {move || String::from(if pending.get() { "Creating account…" } else { "Create account" })}
                </button>
            </form>
            <p class="switch">"Already have an account? " <a href="/signin">"Sign in"</a></p>
        </AuthCard>
    }
}
