//! A small client-side router: the path lives in a signal, navigation uses the History
//! API, and one document-level click handler turns clicks on same-origin `<a href="/…">`
//! links into navigations (ctrl/⌘-click and `target` links keep the browser's meaning).
//!
//! It stands in for leptos_router, whose typed route tree cost more wasm than every
//! page of the app together; `app.rs` matches paths with a plain `match`.

use leptos::{ev, prelude::*};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{Element, FocusOptions, HtmlElement};

thread_local! {
    static PATH: ArcRwSignal<String> = ArcRwSignal::new(location_path());
}

fn location_path() -> String {
    window()
        .location()
        .pathname()
        .unwrap_or_else(|_| "/".to_owned())
}

/// The current path, e.g. `/guides/12`; reactive.
pub fn path() -> String {
    PATH.with(|path| path.get())
}

/// Goes to `to` (a path on this site), adding a history entry.
pub fn navigate(to: &str) {
    if let Ok(history) = window().history() {
        let _ = history.push_state_with_url(&JsValue::NULL, "", Some(to));
    }
    arrive(to);
}

/// Goes to `to`, replacing the current history entry (for redirects).
pub fn redirect(to: &str) {
    if let Ok(history) = window().history() {
        let _ = history.replace_state_with_url(&JsValue::NULL, "", Some(to));
    }
    arrive(to);
}

/// Shows the page at `to` from the top, and moves keyboard and screen-reader focus to
/// its content, as a full page load would.
fn arrive(to: &str) {
    PATH.with(|path| path.set(to.to_owned()));
    window().scroll_to_with_x_and_y(0.0, 0.0);
    request_animation_frame(|| {
        if let Some(main) = document()
            .get_element_by_id("main")
            .and_then(|main| main.dyn_into::<HtmlElement>().ok())
        {
            let options = FocusOptions::new();
            options.set_prevent_scroll(true);
            let _ = main.focus_with_options(&options);
        }
    });
}

/// The site path a click on `event` should open in-app, if any.
fn internal_link(event: &ev::MouseEvent) -> Option<String> {
    if event.default_prevented()
        || event.button() != 0
        || event.ctrl_key()
        || event.meta_key()
        || event.shift_key()
        || event.alt_key()
    {
        return None;
    }
    let anchor = event
        .target()?
        .dyn_into::<Element>()
        .ok()?
        .closest("a[href]")
        .ok()??;
    if anchor.has_attribute("target") || anchor.has_attribute("download") {
        return None;
    }
    let href = anchor.get_attribute("href")?;
    (href.starts_with('/') && !href.starts_with("//")).then_some(href)
}

/// Listens to link clicks and the back and forward buttons; call once at start-up.
pub fn start() {
    // The handles are dropped, not removed: the listeners last as long as the page.
    let _ = window_event_listener(ev::click, |event| {
        if let Some(href) = internal_link(&event) {
            event.prevent_default();
            navigate(&href);
        }
    });
    let _ = window_event_listener(ev::popstate, |_| {
        PATH.with(|path| path.set(location_path()));
    });
}

/// The segments of a path: `/guides/12/` → `["guides", "12"]`.
pub fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_paths() {
        assert_eq!(segments("/"), Vec::<&str>::new());
        assert_eq!(segments("/guides/12/"), vec!["guides", "12"]);
    }
}
