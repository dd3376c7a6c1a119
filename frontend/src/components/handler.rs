//! Event-handler props: a shared closure.
//!
//! Leptos' `Callback<T>` keeps its closure in the reactive arena, which compiles a copy of
//! the arena code for every argument type; [`Handler`] is only an `Arc<dyn Fn(T)>`.

use std::sync::Arc;

/// A handler a component calls with a `T`; any `Fn(T)` converts into one.
pub struct Handler<T>(Arc<dyn Fn(T) + Send + Sync>);

impl<T> Handler<T> {
    /// Calls the handler.
    pub fn run(&self, value: T) {
        (self.0)(value)
    }
}

impl<T> Clone for Handler<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T, F> From<F> for Handler<T>
where
    F: Fn(T) + Send + Sync + 'static,
{
    fn from(handler: F) -> Self {
        Self(Arc::new(handler))
    }
}
