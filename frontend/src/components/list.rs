//! Lists of views built from data, for the lists that are built once and replaced
//! wholesale (in a [`keyed`](super::keyed::keyed) section or a static part of a page).

use leptos::prelude::*;

/// [`collect_view`](CollectView::collect_view) with each view type-erased: every list of
/// the app is then one type (`Vec<AnyView>`), instead of one list type per row type,
/// each with its own compiled list-diffing code.
pub trait CollectAny {
    /// The views, erased, in order.
    fn collect_any(self) -> Vec<AnyView>;
}

impl<I, V> CollectAny for I
where
    I: Iterator<Item = V>,
    V: IntoView,
{
    fn collect_any(self) -> Vec<AnyView> {
        self.map(IntoAny::into_any).collect()
    }
}
