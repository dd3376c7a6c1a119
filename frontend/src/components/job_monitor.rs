//! A job followed live: status, progress bar, latest step, cancel, and its event log,
//! fed by the `jobEvents` subscription (which resumes after a dropped connection).

use std::sync::Arc;

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::jobs::{self, JobEvent, JobStatus, SeqCursor};
use crate::api::ws::{self, LinkStatus};
use crate::components::{
    badge::LiveBadge, form_error::FormError, format, handler::Handler, list::CollectAny,
    progress::ProgressBar,
};

/// "Live" / "Reconnecting…" for the shared WebSocket.
#[component]
pub fn LiveIndicator() -> impl IntoView {
    let state = move || match ws::link_status() {
        LinkStatus::Live => ("live", "Live"),
        LinkStatus::Connecting => ("connecting", "Connecting…"),
        LinkStatus::Reconnecting => ("reconnecting", "Reconnecting…"),
        LinkStatus::Idle => ("idle", ""),
    };
    view! {
        <span
            class=move || format!("live live-{}", state().0)
            data-testid="live-status"
            data-state=move || state().0.to_owned()
            hidden=move || ws::link_status() == LinkStatus::Idle
        >
            <span class="live-dot" aria-hidden="true"></span>
            {move || state().1.to_owned()}
        </span>
    }
}

/// Follows job `job_id`; `on_event` sees every event once, in order, and `on_finish` is
/// called when a job that was still running at mount ends.
#[component]
pub fn JobMonitor(
    /// The job.
    job_id: String,
    /// Status when the page loaded.
    status: JobStatus,
    /// Progress when the page loaded.
    progress: f64,
    /// What the job does, e.g. "Item extraction".
    label: &'static str,
    /// Every event, once.
    #[prop(optional, into)]
    on_event: Option<Handler<JobEvent>>,
    /// The job ended while watched.
    #[prop(into)]
    on_finish: Handler<JobStatus>,
) -> impl IntoView {
    let was_running = !status.is_finished();
    let status = RwSignal::new(status);
    let progress = RwSignal::new(progress);
    let events = RwSignal::new(Vec::<JobEvent>::new());
    let error = RwSignal::new(None::<String>);
    let cancelling = RwSignal::new(false);

    let subscription = jobs::watch(
        job_id.clone(),
        SeqCursor::after(0),
        move |event: JobEvent| {
            if let Some(fraction) = event.progress() {
                progress.set(fraction);
            }
            if let Some(next) = JobStatus::from_event(&event.kind) {
                status.set(next);
                if next == JobStatus::Succeeded {
                    progress.set(1.0);
                }
                if next == JobStatus::Failed {
                    error.set(Some(event.summary()));
                }
            }
            if let Some(on_event) = &on_event {
                on_event.run(event.clone());
            }
            events.update(|list| list.push(event));
        },
        move |stream_error| {
            if let Some(stream_error) = stream_error {
                error.set(Some(stream_error.message));
            }
            let end = status.get_untracked();
            if was_running && end.is_finished() {
                on_finish.run(end);
            }
        },
    );
    let subscription = StoredValue::new_local(Some(subscription));
    on_cleanup(move || subscription.update_value(|s| *s = None));

    let cancel_id = job_id.clone();
    let cancel = move |_| {
        cancelling.set(true);
        let id = cancel_id.clone();
        spawn_local(async move {
            if let Err(err) = jobs::cancel(id).await {
                error.set(Some(err.message));
                cancelling.set(false);
            }
        });
    };

    let message = move || {
        let percent = format::percent(progress.get());
        let latest = events.with(|list| {
            list.iter()
                .rev()
                .find(|e| e.kind != "chunk")
                .map(JobEvent::summary)
        });
        match latest {
            Some(text) => format!("{percent}% · {text}"),
            None => format!("{percent}%"),
        }
    };

    view! {
        <div
            class="job"
            data-testid="job-monitor"
            data-job-id=job_id
            data-status=move || status.get().label().to_lowercase()
        >
            <div class="job-head">
                <span class="job-label">{label}</span>
                <LiveBadge status=Arc::new(move || { let s = status.get(); (s.label(), s.tone()) }) testid="job-status" />
                <LiveIndicator />
                <span class="spacer"></span>
                <button
                    type="button"
                    class="button subtle"
                    data-testid="cancel-job"
                    hidden=move || status.get().is_finished()
                    disabled=cancelling
                    on:click=cancel
                >
                    "Cancel"
                </button>
            </div>
            <ProgressBar value=Arc::new(move || progress.get()) label=label testid="job-progress" />
            <p class="job-message" data-testid="job-message" aria-live="polite">{move || message()}</p>
            <FormError message=error testid="job-error" />
            <details class="log">
                <summary>
                    {move || format!("Activity ({})", format::plural(events.with(Vec::len) as i64, "event", "events"))}
                </summary>
                <ol data-testid="event-log">
                    {move || {
                        events
                            .get()
                            .into_iter()
                            .map(|event| {
                                view! {
                                    <li data-testid="event" data-seq=event.seq data-kind=event.kind.clone()>
                                        <time datetime=event.at.clone()>{format::time(&event.at)}</time>
                                        <span class="event-kind">{event.kind.clone()}</span>
                                        <span>{event.summary()}</span>
                                    </li>
                                }
                            })
                            .collect_any()
                    }}
                </ol>
            </details>
        </div>
    }
}
