//! GraphQL over WebSocket (the `graphql-transport-ws` protocol): one shared connection
//! that multiplexes every subscription of the page.
//!
//! - The connection opens on the first subscription and closes after the last one ends.
//! - `connection_init` carries `{"token": …}`; subscriptions are sent once acknowledged.
//! - The server's pings are answered; the client pings too, and a connection that stops
//!   answering is closed.
//! - A dropped connection is reopened with backoff, and every live subscription is sent
//!   again with a payload built afresh, so a caller can resume where it stopped (the job
//!   events stream resumes with `afterSeq` = the last `seq` seen).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use leptos::prelude::{
    set_interval_with_handle, set_timeout_with_handle, ArcRwSignal, Get, IntervalHandle, Set,
    TimeoutHandle,
};
use serde_json::Value;
use wasm_bindgen::{closure::Closure, JsCast};
use web_sys::{CloseEvent, MessageEvent, WebSocket};

use super::http::{graphql_error, ErrorCode, ENDPOINT};
use super::{session, ApiError};

/// The WebSocket sub-protocol.
const PROTOCOL: &str = "graphql-transport-ws";
/// How often the client pings an open connection.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF_MS: f64 = 10_000.0;
/// Close code the client uses when the server stopped answering pings.
const CLOSE_UNRESPONSIVE: u16 = 4000;

/// The state of the shared connection, for a "live" indicator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkStatus {
    /// No subscription, no connection.
    Idle,
    /// Opening the connection.
    Connecting,
    /// Connected and acknowledged: events arrive live.
    Live,
    /// The connection dropped; trying again.
    Reconnecting,
}

/// A message from the server, as far as the client cares.
#[derive(Debug, PartialEq)]
enum Incoming {
    Ack,
    Next { id: u32, payload: Value },
    Error { id: u32, payload: Value },
    Complete { id: u32 },
    Ping,
    Pong,
    Other,
}

fn parse(text: &str) -> Incoming {
    let Some(mut message) = super::json::parse(text) else {
        return Incoming::Other;
    };
    let id = message
        .get("id")
        .and_then(Value::as_str)
        .and_then(|id| id.parse().ok());
    let payload = message.get_mut("payload").map(Value::take);
    match (message.get("type").and_then(Value::as_str), id) {
        (Some("connection_ack"), _) => Incoming::Ack,
        (Some("ping"), _) => Incoming::Ping,
        (Some("pong"), _) => Incoming::Pong,
        (Some("next"), Some(id)) => Incoming::Next {
            id,
            payload: payload.unwrap_or(Value::Null),
        },
        (Some("error"), Some(id)) => Incoming::Error {
            id,
            payload: payload.unwrap_or(Value::Null),
        },
        (Some("complete"), Some(id)) => Incoming::Complete { id },
        _ => Incoming::Other,
    }
}

/// The first GraphQL error of an `error` payload (a list) or a `next` payload (`errors`).
fn first_error(payload: &Value) -> Option<&Value> {
    payload.get("errors").unwrap_or(payload).get(0)
}

/// Backoff before reconnection attempt `attempt` (from 0): doubling from 0.5 s up to 10 s,
/// each with up to 30 % random jitter so many tabs do not reconnect in step.
fn backoff_ms(attempt: u32, jitter: f64) -> f64 {
    let base = (500.0 * 2f64.powi(attempt.min(8) as i32)).min(MAX_BACKOFF_MS);
    base * (1.0 + 0.3 * jitter.clamp(0.0, 1.0))
}

/// `connection_init`, with the session token when signed in.
fn init_message(token: Option<&str>) -> String {
    let token = token
        .and_then(|token| serde_json::to_string(token).ok())
        .map(|quoted| format!(r#"{{"token":{quoted}}}"#))
        .unwrap_or_else(|| "{}".to_owned());
    format!(r#"{{"type":"connection_init","payload":{token}}}"#)
}

fn socket_url() -> Option<String> {
    let location = web_sys::window()?.location();
    let scheme = if location.protocol().ok()? == "https:" {
        "wss"
    } else {
        "ws"
    };
    Some(format!("{scheme}://{}{ENDPOINT}", location.host().ok()?))
}

/// What one subscription does with the stream.
struct Handlers {
    /// Builds the `subscribe` payload (`{query, variables}` as JSON text); called on every
    /// (re)subscribe.
    payload: Box<dyn Fn() -> String>,
    /// Receives each result's `data`.
    next: Box<dyn Fn(Value)>,
    /// Called once when the stream ends: `None` when the server completed it.
    end: Box<dyn Fn(Option<ApiError>)>,
}

/// One open socket and the closures the browser calls.
struct Connection {
    socket: WebSocket,
    generation: u32,
    acked: bool,
    awaiting_pong: bool,
    keepalive: Option<IntervalHandle>,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Connection {
    fn send(&self, message: &str) {
        // A failed send means the socket is closing; its close handler reconnects.
        let _ = self.socket.send_with_str(message);
    }

    /// Detaches the handlers and closes the socket.
    fn shut(self, code: u16) {
        if let Some(keepalive) = self.keepalive {
            keepalive.clear();
        }
        self.socket.set_onopen(None);
        self.socket.set_onmessage(None);
        self.socket.set_onclose(None);
        let _ = self.socket.close_with_code(code);
        // Dropped on a later turn: this may run inside one of these closures.
        let closures = (self._on_open, self._on_message, self._on_close);
        let _ = set_timeout_with_handle(move || drop(closures), Duration::ZERO);
    }
}

/// The open subscriptions by id, oldest first: a few at a time, so a list (a map type
/// here would add its own code to the wasm).
#[derive(Clone, Default)]
struct Subscriptions(Vec<(u32, Rc<Handlers>)>);

impl Subscriptions {
    fn insert(&mut self, id: u32, handlers: Rc<Handlers>) {
        self.0.push((id, handlers));
    }

    fn get(&self, id: &u32) -> Option<&Rc<Handlers>> {
        self.0
            .iter()
            .find(|(key, _)| key == id)
            .map(|(_, handlers)| handlers)
    }

    fn remove(&mut self, id: &u32) -> Option<Rc<Handlers>> {
        let index = self.0.iter().position(|(key, _)| key == id)?;
        Some(self.0.remove(index).1)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = (&u32, &Rc<Handlers>)> {
        self.0.iter().map(|(id, handlers)| (id, handlers))
    }

    fn values(&self) -> impl Iterator<Item = &Rc<Handlers>> {
        self.0.iter().map(|(_, handlers)| handlers)
    }
}

#[derive(Default)]
struct Client {
    connection: Option<Connection>,
    subscriptions: Subscriptions,
    next_id: u32,
    generation: u32,
    attempts: u32,
    reconnect: Option<TimeoutHandle>,
}

thread_local! {
    static CLIENT: RefCell<Client> = RefCell::new(Client::default());
    static STATUS: ArcRwSignal<LinkStatus> = ArcRwSignal::new(LinkStatus::Idle);
}

/// The connection's state; reactive.
pub fn link_status() -> LinkStatus {
    STATUS.with(|status| status.get())
}

fn set_status(value: LinkStatus) {
    STATUS.with(|status| status.set(value));
}

/// Runs `f` on the client; never call page code from inside.
fn with_client<T>(f: impl FnOnce(&mut Client) -> T) -> T {
    CLIENT.with(|client| f(&mut client.borrow_mut()))
}

/// A live subscription; dropping it unsubscribes.
pub struct Subscription {
    id: u32,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let id = self.id;
        let removed = with_client(|client| {
            let removed = client.subscriptions.remove(&id);
            if removed.is_some() {
                if let Some(connection) = client.connection.as_ref().filter(|c| c.acked) {
                    connection.send(&format!(r#"{{"id":"{id}","type":"complete"}}"#));
                }
            }
            close_if_unused(client);
            removed
        });
        drop(removed);
    }
}

/// Starts a subscription. `payload` builds the `{query, variables}` to send, as JSON text
/// (again after each reconnection), `next` gets each result's `data`, and `end` is called once when the
/// stream ends (`None`: completed by the server; `Some`: an error).
pub fn subscribe(
    payload: impl Fn() -> String + 'static,
    next: impl Fn(Value) + 'static,
    end: impl Fn(Option<ApiError>) + 'static,
) -> Subscription {
    let handlers = Rc::new(Handlers {
        payload: Box::new(payload),
        next: Box::new(next),
        end: Box::new(end),
    });
    let id = with_client(|client| {
        client.next_id += 1;
        let id = client.next_id;
        client.subscriptions.insert(id, handlers.clone());
        id
    });
    let acked = with_client(|client| client.connection.as_ref().map(|c| c.acked));
    match acked {
        Some(true) => {
            let message = subscribe_message(id, &handlers);
            with_client(|client| {
                if let Some(connection) = &client.connection {
                    connection.send(&message);
                }
            });
        }
        Some(false) => {} // Sent when the connection is acknowledged.
        None => {
            let waiting = with_client(|client| client.reconnect.is_some());
            if !waiting {
                connect();
            }
        }
    }
    Subscription { id }
}

fn subscribe_message(id: u32, handlers: &Handlers) -> String {
    format!(
        r#"{{"id":"{id}","type":"subscribe","payload":{}}}"#,
        (handlers.payload)()
    )
}

fn close_if_unused(client: &mut Client) {
    if !client.subscriptions.is_empty() {
        return;
    }
    if let Some(reconnect) = client.reconnect.take() {
        reconnect.clear();
    }
    client.attempts = 0;
    if let Some(connection) = client.connection.take() {
        connection.shut(1000);
    }
    set_status(LinkStatus::Idle);
}

fn connect() {
    let Some(url) = socket_url() else {
        end_all(Some(ApiError::network()));
        return;
    };
    let Ok(socket) = WebSocket::new_with_str(&url, PROTOCOL) else {
        schedule_reconnect();
        return;
    };
    set_status(LinkStatus::Connecting);
    let generation = with_client(|client| {
        client.generation += 1;
        client.generation
    });

    let init_socket = socket.clone();
    let on_open = Closure::<dyn FnMut()>::new(move || {
        let _ = init_socket.send_with_str(&init_message(session::token().as_deref()));
    });
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        if let Some(text) = event.data().as_string() {
            on_message(generation, &text);
        }
    });
    let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
        on_close(generation, event.code(), &event.reason());
    });
    socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));

    let previous = with_client(|client| {
        client.connection.replace(Connection {
            socket,
            generation,
            acked: false,
            awaiting_pong: false,
            keepalive: None,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        })
    });
    if let Some(previous) = previous {
        previous.shut(1000);
    }
}

/// Runs `f` on the connection if it is still the one numbered `generation`.
fn with_current<T>(generation: u32, f: impl FnOnce(&mut Connection) -> T) -> Option<T> {
    with_client(|client| {
        client
            .connection
            .as_mut()
            .filter(|connection| connection.generation == generation)
            .map(f)
    })
}

fn on_message(generation: u32, text: &str) {
    match parse(text) {
        Incoming::Ack => {
            let subscriptions = with_client(|client| {
                client.attempts = 0;
                client.subscriptions.clone()
            });
            // Payloads are built outside the borrow: they run caller code.
            let messages: Vec<String> = subscriptions
                .iter()
                .map(|(id, handlers)| subscribe_message(*id, handlers))
                .collect();
            let keepalive = set_interval_with_handle(move || keepalive(generation), KEEPALIVE).ok();
            let current = with_current(generation, |connection| {
                connection.acked = true;
                connection.keepalive = keepalive;
                for message in &messages {
                    connection.send(message);
                }
            });
            if current.is_some() {
                set_status(LinkStatus::Live);
            } else if let Some(keepalive) = keepalive {
                keepalive.clear();
            }
        }
        Incoming::Next { id, payload } => {
            let Some(handlers) = handlers(id) else { return };
            let data = payload.get("data").cloned().unwrap_or(Value::Null);
            match first_error(&payload) {
                Some(error) if data.is_null() => finish(id, Some(graphql_error(error, true))),
                _ => (handlers.next)(data),
            }
        }
        Incoming::Error { id, payload } => {
            let error = first_error(&payload)
                .map_or_else(ApiError::unexpected, |error| graphql_error(error, true));
            finish(id, Some(error));
        }
        Incoming::Complete { id } => finish(id, None),
        Incoming::Ping => {
            with_current(generation, |connection| {
                connection.send(r#"{"type":"pong"}"#);
            });
        }
        Incoming::Pong => {
            with_current(generation, |connection| connection.awaiting_pong = false);
        }
        Incoming::Other => {}
    }
}

fn handlers(id: u32) -> Option<Rc<Handlers>> {
    with_client(|client| client.subscriptions.get(&id).cloned())
}

/// Ends one subscription and tells its owner.
fn finish(id: u32, error: Option<ApiError>) {
    let removed = with_client(|client| {
        let removed = client.subscriptions.remove(&id);
        close_if_unused(client);
        removed
    });
    if let Some(handlers) = removed {
        (handlers.end)(error);
    }
}

/// Ends every subscription with `error`.
fn end_all(error: Option<ApiError>) {
    let all = with_client(|client| {
        let all = std::mem::take(&mut client.subscriptions);
        close_if_unused(client);
        all
    });
    for handlers in all.values() {
        (handlers.end)(error.clone());
    }
}

fn keepalive(generation: u32) {
    with_current(generation, |connection| {
        if connection.awaiting_pong {
            // No answer to the last ping: the close handler reconnects.
            let _ = connection
                .socket
                .close_with_code_and_reason(CLOSE_UNRESPONSIVE, "no pong");
        } else {
            connection.awaiting_pong = true;
            connection.send(r#"{"type":"ping"}"#);
        }
    });
}

fn on_close(generation: u32, code: u16, reason: &str) {
    let Some(connection) = with_client(|client| {
        if client
            .connection
            .as_ref()
            .is_some_and(|connection| connection.generation == generation)
        {
            client.connection.take()
        } else {
            None
        }
    }) else {
        return;
    };
    let acked = connection.acked;
    connection.shut(1000);
    if refused(code, acked) {
        // The server turned the connection down (a bad token, say): retrying cannot help.
        let message = if reason.is_empty() {
            "The server refused the live connection. Please reload the page."
        } else {
            reason
        };
        end_all(Some(ApiError::new(ErrorCode::Unauthenticated, message)));
    } else {
        schedule_reconnect();
    }
}

/// Whether a close code means "do not come back": graphql-transport-ws uses 4400–4499 for
/// refusals, and async-graphql closes with 1002 when `connection_init` is refused.
fn refused(code: u16, acked: bool) -> bool {
    (4400..4500).contains(&code) || (code == 1002 && !acked)
}

fn schedule_reconnect() {
    let attempt = with_client(|client| {
        if client.subscriptions.is_empty() {
            return None;
        }
        client.attempts += 1;
        Some(client.attempts - 1)
    });
    let Some(attempt) = attempt else {
        set_status(LinkStatus::Idle);
        return;
    };
    set_status(LinkStatus::Reconnecting);
    let delay = backoff_ms(attempt, js_sys::Math::random());
    let handle = set_timeout_with_handle(
        || {
            with_client(|client| client.reconnect = None);
            connect();
        },
        Duration::from_millis(delay as u64),
    )
    .ok();
    with_client(|client| {
        if let Some(old) = std::mem::replace(&mut client.reconnect, handle) {
            old.clear();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_protocol_messages() {
        assert_eq!(parse(r#"{"type":"connection_ack"}"#), Incoming::Ack);
        assert_eq!(parse(r#"{"type":"ping","payload":{}}"#), Incoming::Ping);
        assert_eq!(
            parse(r#"{"id":"3","type":"next","payload":{"data":{"x":1}}}"#),
            Incoming::Next {
                id: 3,
                payload: json!({ "data": { "x": 1 } })
            }
        );
        assert_eq!(
            parse(r#"{"id":"4","type":"complete"}"#),
            Incoming::Complete { id: 4 }
        );
        assert_eq!(parse("not json"), Incoming::Other);
        assert_eq!(parse(r#"{"type":"next","payload":{}}"#), Incoming::Other);
    }

    #[test]
    fn reads_errors_from_both_message_shapes() {
        let listed =
            json!([{ "message": "job 9 not found", "extensions": { "code": "NOT_FOUND" } }]);
        assert_eq!(
            first_error(&listed).and_then(|e| e["message"].as_str()),
            Some("job 9 not found")
        );
        let result = json!({ "data": null, "errors": [{ "message": "boom" }] });
        assert_eq!(
            first_error(&result).and_then(|e| e["message"].as_str()),
            Some("boom")
        );
        assert!(first_error(&json!({ "data": { "x": 1 } })).is_none());
    }

    #[test]
    fn builds_protocol_messages() {
        let init: Value = serde_json::from_str(&init_message(Some("a\"b"))).expect("JSON");
        assert_eq!(
            init,
            json!({ "type": "connection_init", "payload": { "token": "a\"b" } })
        );
        let anonymous: Value = serde_json::from_str(&init_message(None)).expect("JSON");
        assert_eq!(
            anonymous,
            json!({ "type": "connection_init", "payload": {} })
        );
        let handlers = Handlers {
            payload: Box::new(|| r#"{"query":"subscription { x }"}"#.to_owned()),
            next: Box::new(|_| {}),
            end: Box::new(|_| {}),
        };
        let message: Value = serde_json::from_str(&subscribe_message(7, &handlers)).expect("JSON");
        assert_eq!(
            message,
            json!({ "id": "7", "type": "subscribe", "payload": { "query": "subscription { x }" } })
        );
    }

    #[test]
    fn refusals_are_not_retried() {
        assert!(refused(4403, true));
        assert!(refused(1002, false));
        assert!(!refused(1006, true));
        assert!(!refused(1001, false));
        assert!(!refused(CLOSE_UNRESPONSIVE, true));
    }

    #[test]
    fn backoff_doubles_up_to_a_ceiling() {
        assert!((backoff_ms(0, 0.0) - 500.0).abs() < 1e-9);
        assert!((backoff_ms(1, 0.0) - 1000.0).abs() < 1e-9);
        assert!((backoff_ms(30, 0.0) - MAX_BACKOFF_MS).abs() < 1e-9);
        assert!(backoff_ms(0, 1.0) <= 650.0 + 1e-9);
    }
}
