//! The root component: the route table, with the sign-in guard.

use leptos::{either::EitherOf14, prelude::*};

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

fn page(route: Route) -> impl IntoView {
    match route {
        Route::SignIn => EitherOf14::A(view! { <SignInPage /> }),
        Route::SignUp => EitherOf14::B(view! { <SignUpPage /> }),
        Route::Dashboard => EitherOf14::C(view! { <DashboardPage /> }),
        Route::Guides => EitherOf14::D(view! { <GuidesPage /> }),
        Route::Guide(id) => EitherOf14::E(view! { <GuidePage id=id /> }),
        Route::Answers(id) => EitherOf14::F(view! { <AnswersPage id=id /> }),
        Route::Training => EitherOf14::G(view! { <TrainingPage /> }),
        Route::TrainingJob(id) => EitherOf14::H(view! { <TrainingJobPage id=id /> }),
        Route::Settings => EitherOf14::I(view! { <SettingsPage /> }),
        Route::TestRun(id) => EitherOf14::J(view! { <TestRunPage id=id /> }),
        Route::Reports => EitherOf14::K(view! { <ReportsPage /> }),
        Route::Report(id) => EitherOf14::L(view! { <ReportPage id=id /> }),
        Route::NotFound => EitherOf14::M(view! { <NotFoundPage /> }),
        Route::Redirect(to) => {
            // After this render: the new path renders its own page.
            queue_microtask(move || router::redirect(to));
            EitherOf14::N(())
        }
    }
}

/// The whole app: the header while signed in, then the page for the address.
#[component]
pub fn App() -> impl IntoView {
    view! {
        {keyed(session::signed_in, |member| member.then(|| view! { <TopBar /> }))}
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
