//! GradeLab's web app: a Leptos client-side app served by the GradeLab server.

mod api;
mod app;
mod components;
mod pages;
mod router;

fn main() {
    // No panic hook: release builds abort on panic without a message (see .cargo/config.toml).
    router::start();
    leptos::mount::mount_to_body(app::App);
}
