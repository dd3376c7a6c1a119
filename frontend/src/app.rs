//! The root component: the route table.

use leptos::prelude::*;
use leptos_router::{
    components::{Route, Router, Routes},
    path,
};

use crate::components::guard::{RequireAuth, RequireGuest};
use crate::pages::{
    dashboard::DashboardPage, guide::GuidePage, guides::GuidesPage, not_found::NotFoundPage,
    signin::SignInPage, signup::SignUpPage, training::TrainingPage,
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
                    path=path!("/guides")
                    view=|| view! { <RequireAuth><GuidesPage /></RequireAuth> }
                />
                <Route
                    path=path!("/guides/:id")
                    view=|| view! { <RequireAuth><GuidePage /></RequireAuth> }
                />
                <Route
                    path=path!("/training")
                    view=|| view! { <RequireAuth><TrainingPage /></RequireAuth> }
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
