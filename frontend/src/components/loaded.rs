//! What a page loaded, in one signal type shared by every page.
//!
//! Each page's data used to live in its own `RwSignal<(u32, Option<Result<T, ApiError>>)>`,
//! and every such type compiled its own copy of the signal code. [`Loaded`] keeps the data
//! type-erased (`Arc<dyn Any>`), so all pages share one copy; [`Loaded::get`] hands it
//! back typed.

use std::any::Any;
use std::sync::Arc;

use leptos::prelude::*;

use crate::api::ApiError;

/// A load's outcome, type-erased.
type Outcome = Result<Arc<dyn Any + Send + Sync>, ApiError>;

/// The latest outcome of a page's load, numbered: sections keyed on
/// [`version`](Self::version) redraw when a load lands.
#[derive(Clone, Copy)]
pub struct Loaded(RwSignal<(u32, Option<Outcome>)>);

impl Loaded {
    /// Nothing loaded yet (version 0).
    pub fn new() -> Self {
        Self(RwSignal::new((0, None)))
    }

    /// Stores a load's outcome, one version up.
    pub fn set<T: Send + Sync + 'static>(self, outcome: Result<T, ApiError>) {
        self.store(outcome.map(|value| Arc::new(value) as Arc<dyn Any + Send + Sync>));
    }

    fn store(self, outcome: Outcome) {
        self.0.update(|(version, value)| {
            *version += 1;
            *value = Some(outcome);
        });
    }

    /// Forgets the outcome (as before the first load), one version up.
    pub fn clear(self) {
        self.0.update(|(version, value)| {
            *version += 1;
            *value = None;
        });
    }

    /// The latest value if the latest outcome was one, tracked.
    pub fn value<T: Clone + 'static>(self) -> Option<T> {
        self.read().and_then(Result::ok)
    }

    /// How many loads have landed (reactive).
    pub fn version(self) -> u32 {
        self.0.with(|(version, _)| *version)
    }

    /// The latest outcome (`None` before the first), tracked.
    pub fn read<T: Clone + 'static>(self) -> Option<Result<T, ApiError>> {
        self.version();
        self.get()
    }

    /// The latest outcome (`None` before the first), not tracked.
    pub fn get<T: Clone + 'static>(self) -> Option<Result<T, ApiError>> {
        self.0.with_untracked(|(_, outcome)| {
            outcome.as_ref().map(|outcome| match outcome {
                Ok(value) => value
                    .downcast_ref::<T>()
                    .cloned()
                    .ok_or_else(ApiError::unexpected),
                Err(error) => Err(error.clone()),
            })
        })
    }
}
