//! Swapping whole views when what they show changes.
//!
//! A closure view (`move || …`) normally diffs its new output against the old one,
//! and tachys compiles the diffing code (`rebuild`) for every element of the view.
//! Pages and loaded sections are replaced wholesale anyway, so [`keyed`] builds the new
//! view and drops the old one instead: the same behaviour, far less wasm. The view is
//! type-erased and the key memo built per key type, so every caller shares the same
//! reactive view code instead of compiling its own copy.

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
    let key = memo(Box::new(key));
    swapped(Box::new(move || render(key.get()).into_any()))
}

/// `key()` as a memo: compiled once per key type rather than once per caller.
fn memo<K>(key: Box<dyn Fn() -> K + Send + Sync>) -> Memo<K>
where
    K: PartialEq + Send + Sync + 'static,
{
    Memo::new(move |_| key())
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
