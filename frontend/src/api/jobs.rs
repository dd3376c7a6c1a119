//! Background jobs: their live event stream (`queries/job_events.graphql`, over the
//! WebSocket client) and cancellation (`queries/cancel_job.graphql`).

use std::cell::Cell;
use std::rc::Rc;

use graphql_client::GraphQLQuery;
use serde_json::Value;

use super::json::Read;
use super::{http, ws, ApiError};

type DateTime = String;
#[expect(
    clippy::upper_case_acronyms,
    reason = "graphql_client names custom scalars after the schema"
)]
type JSON = Value;

#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "queries/job_events.graphql",
    response_derives = "Serialize"
)]
struct JobEvents;

#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "queries/cancel_job.graphql",
    response_derives = "Serialize"
)]
struct CancelJob;

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    /// Waiting for a worker.
    Queued,
    /// Running.
    Running,
    /// Done.
    Succeeded,
    /// Stopped by an error.
    Failed,
    /// Stopped by the user.
    Cancelled,
}

impl JobStatus {
    /// From its GraphQL name.
    pub fn from_name(name: &str) -> Self {
        match name {
            "RUNNING" => Self::Running,
            "SUCCEEDED" => Self::Succeeded,
            "FAILED" => Self::Failed,
            "CANCELLED" => Self::Cancelled,
            _ => Self::Queued,
        }
    }

    /// From a terminal event's kind (`succeeded`, `failed`, `cancelled`).
    pub fn from_event(kind: &str) -> Option<Self> {
        match kind {
            "started" | "progress" => Some(Self::Running),
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }

    /// Whether the job has stopped.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    /// Human label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Queued => "Queued",
            Self::Running => "Running",
            Self::Succeeded => "Done",
            Self::Failed => "Failed",
            Self::Cancelled => "Cancelled",
        }
    }

    /// Badge style (`badge-<tone>`).
    pub fn tone(self) -> &'static str {
        match self {
            Self::Queued => "neutral",
            Self::Running => "info",
            Self::Succeeded => "ok",
            Self::Failed => "bad",
            Self::Cancelled => "warn",
        }
    }
}

/// One entry of a job's event log.
#[derive(Clone, Debug, PartialEq)]
pub struct JobEvent {
    /// Position in the log, from 1.
    pub seq: i64,
    /// `queued`, `started`, `progress`, `epoch`, `succeeded`, …
    pub kind: String,
    /// Data; its shape depends on `kind`.
    pub payload: Value,
    /// When it happened (RFC 3339).
    pub at: String,
}

impl JobEvent {
    fn read(event: Option<Value>) -> Self {
        let mut event = event.unwrap_or_default();
        Self {
            seq: event.int("seq"),
            kind: event.text("kind"),
            at: event.text("at"),
            payload: event
                .get_mut("payload")
                .map(Value::take)
                .unwrap_or_default(),
        }
    }

    /// The progress fraction a `progress` event carries.
    pub fn progress(&self) -> Option<f64> {
        self.payload.get("progress").and_then(Value::as_f64)
    }

    /// A one-line description for the event log.
    pub fn summary(&self) -> String {
        let text = |key: &str| self.payload.get(key).and_then(Value::as_str);
        match self.kind.as_str() {
            "queued" => "Queued".to_owned(),
            "started" => {
                if self.payload.get("resumed").and_then(Value::as_bool) == Some(true) {
                    "Resumed".to_owned()
                } else {
                    "Started".to_owned()
                }
            }
            "succeeded" => "Finished".to_owned(),
            "failed" => format!("Failed: {}", text("error").unwrap_or("unknown error")),
            "cancelled" => "Cancelled".to_owned(),
            "chunk" => {
                let number = |key: &str| self.payload.get(key).and_then(Value::as_i64).unwrap_or(0);
                format!(
                    "Part {} of {}: {} items",
                    number("index") + 1,
                    number("total"),
                    number("items")
                )
            }
            _ => text("message").map_or_else(|| self.kind.clone(), str::to_owned),
        }
    }
}

/// Remembers the last event delivered so that a resumed stream neither loses nor repeats one.
#[derive(Clone, Debug, Default)]
pub struct SeqCursor(Rc<Cell<i64>>);

impl SeqCursor {
    /// A cursor after `seq` (0: before the first event).
    pub fn after(seq: i64) -> Self {
        Self(Rc::new(Cell::new(seq)))
    }

    /// The last sequence number delivered.
    pub fn last(&self) -> i64 {
        self.0.get()
    }

    /// Whether `seq` is new, recording it if so.
    pub fn accept(&self, seq: i64) -> bool {
        if seq > self.0.get() {
            self.0.set(seq);
            true
        } else {
            false
        }
    }
}

/// Follows a job's events from `after` on: first the logged ones, then live ones. After a
/// dropped connection the subscription resumes after the last event delivered. `on_end`
/// is called once the stream ends (after the job's final event, or on an error).
pub fn watch(
    job_id: String,
    after: SeqCursor,
    on_event: impl Fn(JobEvent) + 'static,
    on_end: impl Fn(Option<ApiError>) + 'static,
) -> ws::Subscription {
    let resume = after.clone();
    ws::subscribe(
        move || {
            let variables = job_events::Variables {
                job_id: job_id.clone(),
                after_seq: resume.last(),
            };
            serde_json::to_string(&JobEvents::build_query(variables)).unwrap_or_default()
        },
        move |mut data| {
            let event = JobEvent::read(data.get_mut("jobEvents").map(Value::take));
            if after.accept(event.seq) {
                on_event(event);
            }
        },
        on_end,
    )
}

/// Asks a job to stop; it says so with a `cancelled` event.
pub async fn cancel(id: String) -> Result<(), ApiError> {
    http::post::<CancelJob>(cancel_job::Variables { id }).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::json::typed;
    use serde_json::json;

    #[test]
    fn a_cursor_drops_repeats_and_old_events() {
        let cursor = SeqCursor::after(2);
        assert!(!cursor.accept(1));
        assert!(!cursor.accept(2));
        assert!(cursor.accept(3));
        assert!(!cursor.accept(3));
        assert!(cursor.accept(5));
        assert_eq!(cursor.last(), 5);
        // Clones share the position: the resubscribe payload reads what the handler wrote.
        assert_eq!(cursor.clone().last(), 5);
    }

    #[test]
    fn events_read_as_sentences() {
        let event = |kind: &str, payload: Value| JobEvent {
            seq: 1,
            kind: kind.to_owned(),
            payload,
            at: String::new(),
        };
        assert_eq!(
            event(
                "progress",
                json!({ "progress": 0.5, "message": "parsing the guide" })
            )
            .summary(),
            "parsing the guide"
        );
        assert_eq!(
            event("chunk", json!({ "index": 0, "total": 2, "items": 3 })).summary(),
            "Part 1 of 2: 3 items"
        );
        assert_eq!(
            event("failed", json!({ "error": "model down" })).summary(),
            "Failed: model down"
        );
        assert_eq!(
            event("started", json!({ "resumed": true })).summary(),
            "Resumed"
        );
    }

    #[test]
    fn reads_an_event() {
        let mut data = typed::<JobEvents>(json!({ "jobEvents": {
            "seq": 3, "kind": "progress", "payload": { "progress": 0.25, "message": "part 1 of 4 done" },
            "at": "2026-05-30T10:00:00Z",
        }}));
        let event = JobEvent::read(data.get_mut("jobEvents").map(Value::take));
        assert_eq!((event.seq, event.kind.as_str()), (3, "progress"));
        assert_eq!(event.progress(), Some(0.25));
        assert_eq!(event.summary(), "part 1 of 4 done");
        typed::<CancelJob>(json!({ "cancelJob": { "id": "3" } }));
    }

    #[test]
    fn statuses_read_from_graphql_names() {
        assert_eq!(JobStatus::from_name("RUNNING"), JobStatus::Running);
        assert_eq!(JobStatus::from_name("CANCELLED"), JobStatus::Cancelled);
        assert!(JobStatus::Failed.is_finished());
        assert!(!JobStatus::Queued.is_finished());
    }
}
