//! A labelled text input bound to a signal.

use leptos::prelude::*;

/// One form field: a visible `<label>` and its `<input>`, both keyed by `id`.
#[component]
pub fn Field(
    /// Element id and form name; tests select inputs by it.
    id: &'static str,
    /// Visible label text.
    label: &'static str,
    /// The input's `type`.
    #[prop(default = "text")]
    kind: &'static str,
    /// The `autocomplete` token, for browsers and password managers.
    autocomplete: &'static str,
    /// The field's value.
    value: RwSignal<String>,
    /// Optional help shown under the input.
    #[prop(optional)]
    hint: Option<&'static str>,
) -> impl IntoView {
    let hint_id = hint.map(|_| format!("{id}-hint"));
    let described_by = hint_id.clone();
    view! {
        <div class="field">
            <label for=id>{label}</label>
            <input
                id=id
                name=id
                type=kind
                autocomplete=autocomplete
                required=true
                aria-describedby=described_by
                prop:value=value
                on:input=move |event| value.set(event_target_value(&event))
            />
            {hint.map(|hint| view! { <p class="hint" id=hint_id>{hint}</p> }.into_any())}
        </div>
    }
}
