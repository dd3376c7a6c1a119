//! The GradeLab mark and word, as used in headers.

use leptos::prelude::*;

/// The logo: a tick in a rounded square, followed by the name.
#[component]
pub fn Brand() -> impl IntoView {
    view! {
        <span class="brand">
            <svg class="brand-mark" viewBox="0 0 24 24" width="28" height="28" aria-hidden="true">
                <rect width="24" height="24" rx="6" fill="currentColor" />
                <path
                    d="M6.5 12.5l3.5 3.5 7.5-8"
                    fill="none"
                    stroke="#fff"
                    stroke-width="2.4"
                    stroke-linecap="round"
                    stroke-linejoin="round"
                />
            </svg>
            <span class="brand-name">"GradeLab"</span>
        </span>
    }
}
