//! The root component: the route table, with the sign-in guard.

use leptos::prelude::*;

use crate::api::session;
use crate::components::{keyed::keyed, shell::TopBar};
use crate::pages::{
    answers::AnswersPage,
    dashboard::DashboardPage,
    guide::GuidePage,
    guides::GuidesPage,
    not_found::NotFoundPage,
    reports::{ReportPage, ReportsPage},
    settings::SettingsPage,
    signin::SignInPage,
    signup::SignUpPage,
    test_run::TestRunPage,
    training::TrainingPage,
    training_job::TrainingJobPage,
};
use crate::router;

/// Where a path leads, given whether someone is signed in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Route {
    SignIn,
    SignUp,
    Dashboard,
    Guides,
    Guide(String),
    Answers(String),
    Training,
    TrainingJob(String),
    Settings,
    TestRun(String),
    Reports,
    Report(String),
    NotFound,
    /// Somewhere else first: guests to `/signin`, members away from the sign-in pages.
    Redirect(&'static str),
}

fn route(path: &str, signed_in: bool) -> Route {
    let page = match router::segments(path).as_slice() {
        ["signin"] => Route::SignIn,
        ["signup"] => Route::SignUp,
        [] => Route::Dashboard,
        ["guides"] => Route::Guides,
        ["guides", id] => Route::Guide((*id).to_owned()),
        ["guides", id, "answers"] => Route::Answers((*id).to_owned()),
        ["training"] => Route::Training,
        ["training", id] => Route::TrainingJob((*id).to_owned()),
        ["settings"] => Route::Settings,
        ["test-runs", id] => Route::TestRun((*id).to_owned()),
        ["reports"] => Route::Reports,
        ["reports", id] => Route::Report((*id).to_owned()),
        _ => return Route::NotFound,
    };
    match (page, signed_in) {
        (Route::SignIn | Route::SignUp, true) => Route::Redirect("/"),
        (page @ (Route::SignIn | Route::SignUp), false) => page,
        (_, false) => Route::Redirect("/signin"),
        (page, true) => page,
    }
}

fn page(route: Route) -> AnyView {
    match route {
        Route::SignIn => view! { <SignInPage /> }.into_any(),
        Route::SignUp => view! { <SignUpPage /> }.into_any(),
        Route::Dashboard => view! { <DashboardPage /> }.into_any(),
        Route::Guides => view! { <GuidesPage /> }.into_any(),
        Route::Guide(id) => view! { <GuidePage id=id /> }.into_any(),
        Route::Answers(id) => view! { <AnswersPage id=id /> }.into_any(),
        Route::Training => view! { <TrainingPage /> }.into_any(),
        Route::TrainingJob(id) => view! { <TrainingJobPage id=id /> }.into_any(),
        Route::Settings => view! { <SettingsPage /> }.into_any(),
        Route::TestRun(id) => view! { <TestRunPage id=id /> }.into_any(),
        Route::Reports => view! { <ReportsPage /> }.into_any(),
        Route::Report(id) => view! { <ReportPage id=id /> }.into_any(),
        Route::NotFound => view! { <NotFoundPage /> }.into_any(),
        Route::Redirect(to) => {
            // After this render: the new path renders its own page.
            queue_microtask(move || router::redirect(to));
            ().into_any()
        }
    }
}

/// The whole app: the header while signed in, then the page for the address.
#[component]
pub fn App() -> impl IntoView {
    view! {
        {keyed(move || u32::from(session::signed_in()), |member| (member == 1).then(|| view! { <TopBar /> }))}
        {keyed(move || route(&router::path(), session::signed_in()), page)}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guests_are_sent_to_sign_in_and_members_home() {
        assert_eq!(route("/", false), Route::Redirect("/signin"));
        assert_eq!(route("/guides/4", false), Route::Redirect("/signin"));
        assert_eq!(route("/signin", false), Route::SignIn);
        assert_eq!(route("/signup", true), Route::Redirect("/"));
        assert_eq!(route("/guides/4", true), Route::Guide("4".to_owned()));
        assert_eq!(route("/guides/", true), Route::Guides);
        assert_eq!(route("/nope", false), Route::NotFound);
        assert_eq!(route("/guides/4/x", true), Route::NotFound);
        assert_eq!(
            route("/guides/4/answers", true),
            Route::Answers("4".to_owned())
        );
        assert_eq!(
            route("/training/9", true),
            Route::TrainingJob("9".to_owned())
        );
    }
}
