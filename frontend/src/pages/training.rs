//! `/training`: calibrating graders. A placeholder until the server's training API is in
//! `schema.graphql`.

use leptos::prelude::*;

use crate::components::page_title::set_page_title;

/// The training page (not available yet).
#[component]
pub fn TrainingPage() -> impl IntoView {
    set_page_title("Training");
    view! {
        <main class="content" id="main" tabindex="-1" data-testid="training-page">
            <h1>"Training"</h1>
            <p class="lead">
                "A training job calibrates a grader on answers you have scored, epoch by epoch, "
                "and keeps a change only when it agrees better with you on answers it was not trained on."
            </p>
            <div class="card">
                <div class="empty" data-testid="training-unavailable">
                    <p class="empty-title">"Not available yet"</p>
                    <p class="empty-detail">
                        "Importing scored answers and training graders will appear here in a coming version. "
                        "Meanwhile, get your marking guides ready."
                    </p>
                    <a href="/guides" class="button primary">"Go to your guides"</a>
                </div>
            </div>
        </main>
    }
}
