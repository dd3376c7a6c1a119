//! The browser tab's title.

/// Sets `document.title` to "<page> · GradeLab".
pub fn set_page_title(page: &str) {
    if let Some(document) = web_sys::window().and_then(|window| window.document()) {
        document.set_title(&format!("{page} · GradeLab"));
    }
}
