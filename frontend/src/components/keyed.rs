//! Swapping whole views when what they show changes.
//!
//! A closure view (`move || …`) normally diffs its new output against the old one,
//! and tachys compiles the diffing code (`rebuild`) for every element of the view.
//! Pages and loaded sections are replaced wholesale anyway, so [`keyed`] builds the new
//! view and drops the old one instead: the same behaviour, far less wasm. The view is
//! type-erased and the key memo counts key changes (one `Memo<u32>` for every key type),
//! so every caller shares the same reactive view and memo code instead of compiling its
//! own copy.

use std::sync::{Arc, Mutex, PoisonError};

use leptos::{
    attr::{any_attribute::AnyAttribute, Attribute},
    prelude::*,
    tachys::{
        hydration::Cursor,
        ssr::StreamBuilder,
        view::{add_attr::AddAnyAttr, Position, PositionState},
    },
};

/// Renders `render(k)` for the current `key()`; when the key changes, the old view is
/// dropped and a new one built.
pub fn keyed<K, V>(
    key: impl Fn() -> K + Send + Sync + 'static,
    render: impl Fn(K) -> V + Send + Sync + 'static,
) -> impl IntoView
where
    K: PartialEq + Clone + Send + Sync + 'static,
    V: IntoView + 'static,
{
    // The latest key, and how many times it changed: the memo below follows that count,
    // so every key type shares one memo type (`Memo<u32>`) and its code.
    let latest = Arc::new(Mutex::new((0u32, None::<K>)));
    let seen = latest.clone();
    let changes = memo(Box::new(move || {
        let next = key();
        let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.1.as_ref() != Some(&next) {
            seen.0 += 1;
            seen.1 = Some(next);
        }
        seen.0
    }));
    swapped(Box::new(move || {
        // `get`, not `track`: a memo is lazy, and only reading it runs `key()` (and
        // subscribes the memo to what `key()` reads).
        changes.get();
        let key = latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone();
        key.map_or_else(|| ().into_any(), |key| render(key).into_any())
    }))
}

/// How many times a key changed, as a memo: one memo type for every caller.
fn memo(changes: Box<dyn Fn() -> u32 + Send + Sync>) -> Memo<u32> {
    Memo::new(move |_| changes())
}

/// The part of [`keyed`] that does not depend on its caller: every caller shares one
/// reactive view type (a closure per caller would compile tachys' effect and view code
/// once each).
fn swapped(render: Box<dyn Fn() -> AnyView + Send + Sync>) -> impl IntoView {
    move || Fresh(render())
}

/// A view that is rebuilt by building anew, never by diffing.
struct Fresh<V>(V);

impl<V: Render> Render for Fresh<V> {
    type State = V::State;

    fn build(self) -> Self::State {
        self.0.build()
    }

    fn rebuild(self, state: &mut Self::State) {
        let mut new = self.0.build();
        state.insert_before_this(&mut new);
        state.unmount();
        *state = new;
    }
}

impl<V: AddAnyAttr> AddAnyAttr for Fresh<V> {
    type Output<SomeNewAttr: Attribute> = Fresh<V::Output<SomeNewAttr>>;

    fn add_any_attr<NewAttr: Attribute>(self, attr: NewAttr) -> Self::Output<NewAttr>
    where
        Self::Output<NewAttr>: RenderHtml,
    {
        Fresh(self.0.add_any_attr(attr))
    }
}

impl<V: RenderHtml> RenderHtml for Fresh<V> {
    type AsyncOutput = Fresh<V::AsyncOutput>;
    type Owned = Fresh<V::Owned>;

    const MIN_LENGTH: usize = V::MIN_LENGTH;

    fn dry_resolve(&mut self) {
        self.0.dry_resolve();
    }

    async fn resolve(self) -> Self::AsyncOutput {
        Fresh(self.0.resolve().await)
    }

    fn to_html_with_buf(
        self,
        buf: &mut String,
        position: &mut Position,
        escape: bool,
        mark_branches: bool,
        extra_attrs: Vec<AnyAttribute>,
    ) {
        self.0
            .to_html_with_buf(buf, position, escape, mark_branches, extra_attrs);
    }

    fn to_html_async_with_buf<const OUT_OF_ORDER: bool>(
        self,
        buf: &mut StreamBuilder,
        position: &mut Position,
        escape: bool,
        mark_branches: bool,
        extra_attrs: Vec<AnyAttribute>,
    ) where
        Self: Sized,
    {
        self.0.to_html_async_with_buf::<OUT_OF_ORDER>(
            buf,
            position,
            escape,
            mark_branches,
            extra_attrs,
        );
    }

    fn hydrate<const FROM_SERVER: bool>(
        self,
        cursor: &Cursor,
        position: &PositionState,
    ) -> Self::State {
        self.0.hydrate::<FROM_SERVER>(cursor, position)
    }

    fn into_owned(self) -> Self::Owned {
        Fresh(self.0.into_owned())
    }
}
