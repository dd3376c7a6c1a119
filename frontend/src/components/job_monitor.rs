//! A job followed live: status, progress bar, latest step, cancel, and its event log,
//! fed by the `jobEvents` subscription (which resumes after a dropped connection).

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::jobs::{self, JobEvent, JobStatus, SeqCursor};
use crate::api::ws::{self, LinkStatus};
use crate::components::{badge::Badge, format, progress::ProgressBar};

/// "Live" / "Reconnecting…" for the shared WebSocket.
#[component]
pub fn LiveIndicator() -> impl IntoView {
    let text = move || match ws::link_status() {
        LinkStatus::Live => Some(("live", "Live")),
        LinkStatus::Connecting => Some(("connecting", "Connecting…")),
        LinkStatus::Reconnecting => Some(("reconnecting", "Reconnecting…")),
        LinkStatus::Idle => None,
    };
    move || {
        text().map(|(state, label)| {
            view! {
                <span class=format!("live live-{state}") data-testid="live-status" data-state=state>
                    <span class="live-dot" aria-hidden="true"></span>
                    {label}
                </span>
            }
        })
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
    on_event: Option<Callback<JobEvent>>,
    /// The job ended while watched.
    #[prop(into)]
    on_finish: Callback<JobStatus>,
) -> impl IntoView {
    let was_running = !status.is_finished();
    let status = RwSignal::new(status);
    let progress = RwSignal::new(progress);
    let events = RwSignal::new(Vec::<JobEvent>::new());
    let stream_error = RwSignal::new(None::<String>);
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
            }
            if let Some(on_event) = on_event {
                on_event.run(event.clone());
            }
            events.update(|list| list.push(event));
        },
        move |error| {
            if let Some(error) = error {
                stream_error.set(Some(error.message));
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
            if let Err(error) = jobs::cancel(id).await {
                stream_error.set(Some(error.message));
                cancelling.set(false);
            }
        });
    };

    let latest = move || {
        events.with(|list| {
            list.iter()
                .rev()
                .find(|e| e.kind != "chunk")
                .map(JobEvent::summary)
        })
    };
    let failure = move || {
        events.with(|list| {
            list.iter()
                .rev()
                .find(|e| e.kind == "failed" || e.kind == "warning")
                .map(JobEvent::summary)
        })
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
                {move || {
                    let s = status.get();
                    view! { <Badge label=s.label() tone=s.tone() testid="job-status" /> }
                }}
                <LiveIndicator />
                <span class="spacer"></span>
                <Show when=move || !status.get().is_finished()>
                    <button
                        type="button"
                        class="button subtle"
                        data-testid="cancel-job"
                        disabled=cancelling
                        on:click=cancel.clone()
                    >
                        {move || if cancelling.get() { "Stopping…" } else { "Cancel" }}
                    </button>
                </Show>
            </div>
            <ProgressBar value=progress label=label testid="job-progress" />
            <p class="job-message" data-testid="job-message" aria-live="polite">
                {move || {
                    let percent = (progress.get() * 100.0).round();
                    match latest() {
                        Some(text) => format!("{percent}% · {text}"),
                        None => format!("{percent}%"),
                    }
                }}
            </p>
            {move || {
                failure()
                    .filter(|_| status.get() == JobStatus::Failed)
                    .map(|text| view! { <p class="form-error" role="alert" data-testid="job-error">{text}</p> })
            }}
            {move || {
                stream_error
                    .get()
                    .map(|text| view! { <p class="form-error" role="alert" data-testid="stream-error">{text}</p> })
            }}
            <details class="log">
                <summary>
                    {move || format!("Activity ({})", format::plural(events.with(Vec::len) as i64, "event", "events"))}
                </summary>
                <ol data-testid="event-log">
                    <For each=move || events.get() key=|event| event.seq let:event>
                        <li data-testid="event" data-seq=event.seq data-kind=event.kind.clone()>
                            <time datetime=event.at.clone()>{format::time(&event.at)}</time>
                            <span class="event-kind">{event.kind.clone()}</span>
                            <span>{event.summary()}</span>
                        </li>
                    </For>
                </ol>
            </details>
        </div>
    }
}
