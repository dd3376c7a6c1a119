//! GradeLab's web app: a Leptos client-side app served by the GradeLab server.

mod api;
mod app;
mod components;
mod pages;

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
