//! The root component: the route table.

use leptos::prelude::*;
use leptos_router::{
    components::{Route, Router, Routes},
    path,
};

use crate::components::guard::{RequireAuth, RequireGuest};
use crate::pages::{
    dashboard::DashboardPage, not_found::NotFoundPage, signin::SignInPage, signup::SignUpPage,
};

/// The whole app.
#[component]
pub fn App() -> impl IntoView {
    view! {
        <Router>
            <Routes fallback=|| view! { <NotFoundPage /> }>
                <Route
                    path=path!("/")
                    view=|| view! { <RequireAuth><DashboardPage /></RequireAuth> }
                />
                <Route
                    path=path!("/signin")
                    view=|| view! { <RequireGuest><SignInPage /></RequireGuest> }
                />
                <Route
                    path=path!("/signup")
                    view=|| view! { <RequireGuest><SignUpPage /></RequireGuest> }
                />
            </Routes>
        </Router>
    }
}
