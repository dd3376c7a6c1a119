//! `/settings`: the language model the teacher's calls use — provider, endpoint, model,
//! temperature — and an API key that can be entered or removed but is never shown again.

use leptos::{ev, prelude::*, task::spawn_local};
use wasm_bindgen::JsCast;
use web_sys::{FormData, HtmlFormElement};

use crate::api::settings::{self, Change, Preset, Settings, Status, PROVIDERS};
use crate::components::{
    form_error::FormError,
    format,
    keyed::keyed,
    loaded::Loaded,
    loading::{load_failed, loading},
    page_title::set_page_title,
};

/// The settings page.
#[component]
pub fn SettingsPage() -> impl IntoView {
    set_page_title("Settings");
    let loaded = Loaded::new();
    spawn_local(async move { loaded.set(settings::load().await) });
    let body = move |_| match loaded.get::<(Settings, Vec<Preset>)>() {
        None => loading("Loading…"),
        Some(Err(error)) => load_failed("settings-error", error.message),
        Some(Ok((current, presets))) => view! {
            <ModelForm current=current presets=presets />
            <Connection />
        }
        .into_any(),
    };
    view! {
        <main class="content" id="main" tabindex="-1" data-testid="settings-page">
            <h1>"Settings"</h1>
            <p class="lead">
                "GradeLab talks to any OpenAI-compatible endpoint. These settings apply to your "
                "own extraction, grading and report calls."
            </p>
            <div class="stack">{keyed(move || loaded.version(), body)}</div>
        </main>
    }
}

/// What the form asks to change: everything typed, and the key only when one was typed
/// (or removal was asked for).
fn read_change(data: &FormData) -> Result<Change, String> {
    let field = |name: &str| {
        data.get(name)
            .as_string()
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let some = |text: String| (!text.is_empty()).then_some(text);
    let temperature = match format::parse_number(&field("temperature")) {
        Some(t) if (0.0..=2.0).contains(&t) => t,
        _ => return Err("The temperature must be a number from 0 to 2.".to_owned()),
    };
    let key = field("api_key");
    let api_key = if !key.is_empty() {
        Some(key)
    } else if data.has("remove_key") {
        Some(String::new())
    } else {
        None
    };
    Ok(Change {
        provider: some(field("provider")),
        base_url: some(field("base_url")),
        model: some(field("model")),
        temperature: Some(temperature),
        api_key,
    })
}

#[component]
fn ModelForm(current: Settings, presets: Vec<Preset>) -> impl IntoView {
    let saved = RwSignal::new(current);
    let provider = RwSignal::new(saved.get_untracked().provider);
    let error = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let presets = StoredValue::new(presets);
    let preset = move || {
        let name = provider.get();
        presets.with_value(|all| all.iter().find(|p| p.provider == name).cloned())
    };

    let on_submit = move |event: ev::SubmitEvent| {
        event.prevent_default();
        let Some(form) = event
            .target()
            .and_then(|target| target.dyn_into::<HtmlFormElement>().ok())
        else {
            return;
        };
        let change = FormData::new_with_form(&form)
            .map_err(|_| "The form could not be read.".to_owned())
            .and_then(|data| read_change(&data));
        let mut change = match change {
            Ok(change) => change,
            Err(message) => {
                error.set(Some(message));
                return;
            }
        };
        // An empty URL or model means the provider's usual one.
        let name = provider.get_untracked();
        if let Some(usual) =
            presets.with_value(|all| all.iter().find(|p| p.provider == name).cloned())
        {
            change.base_url = change.base_url.or(usual.base_url);
            change.model = change.model.or(usual.model);
        }
        busy.set(true);
        notice.set(None);
        spawn_local(async move {
            match settings::save(change).await {
                Ok(now) => {
                    error.set(None);
                    // The key field empties: a key is never shown again once saved.
                    form.reset();
                    provider.set(now.provider.clone());
                    saved.set(now);
                    notice.set(Some("Saved.".to_owned()));
                }
                Err(failure) => error.set(Some(failure.message)),
            }
            busy.set(false);
        });
    };

    // Rebuilt after each save, so the inputs show what the server now uses.
    let fields = move |_| {
        let now = saved.get_untracked();
        let key_state = if now.has_api_key {
            "A key is stored. It is never shown again; type a new one to replace it."
        } else {
            "No key is stored."
        };
        let has_key = now.has_api_key;
        view! {
            <div class="field">
                <label for="llm-provider">"Provider"</label>
                <select
                    id="llm-provider"
                    name="provider"
                    data-testid="llm-provider"
                    on:change=move |event| provider.set(event_target_value(&event))
                >
                    {PROVIDERS.map(|(value, label)| view! {
                        <option value=value selected=now.provider == value>{label}</option>
                    })}
                </select>
            </div>
            <div class="field">
                <label for="llm-base-url">"Base URL"</label>
                <input
                    id="llm-base-url"
                    name="base_url"
                    type="url"
                    data-testid="llm-base-url"
                    value=now.base_url
                    placeholder=move || preset().and_then(|p| p.base_url)
                    aria-describedby="llm-base-url-hint"
                />
                <p class="hint" id="llm-base-url-hint">"Including /v1. Leave empty for the provider's usual address."</p>
            </div>
            <div class="field">
                <label for="llm-model">"Model"</label>
                <input
                    id="llm-model"
                    name="model"
                    data-testid="llm-model"
                    value=now.model
                    placeholder=move || preset().and_then(|p| p.model)
                />
            </div>
            <div class="field">
                <label for="llm-temperature">"Temperature"</label>
                <input
                    id="llm-temperature"
                    name="temperature"
                    type="number"
                    min="0"
                    max="2"
                    step="0.1"
                    value=format::decimal(now.temperature, 2)
                    aria-describedby="llm-temperature-hint"
                />
                <p class="hint" id="llm-temperature-hint">"0 is deterministic, and lets answers be reused from the cache."</p>
            </div>
            <div class="field">
                <label for="llm-api-key">"API key"</label>
                <input
                    id="llm-api-key"
                    name="api_key"
                    type="password"
                    autocomplete="off"
                    data-testid="llm-api-key"
                    aria-describedby="llm-api-key-state"
                />
                <p class="hint" id="llm-api-key-state" data-testid="llm-key-state">
                    {key_state}
                    {move || preset().filter(|p| p.requires_api_key).map(|_| " This provider needs one.".to_owned())}
                </p>
                <label class="check" hidden=!has_key>
                    <input type="checkbox" name="remove_key" data-testid="llm-remove-key" />
                    "Remove the stored key"
                </label>
            </div>
        }
    };

    view! {
        <section class="card" data-testid="llm-settings" aria-labelledby="llm-settings-title">
            <h2 id="llm-settings-title">"Language model"</h2>
            <form class="form" on:submit=on_submit on:input=move |_| notice.set(None)>
                {keyed(move || saved.with(|s| (s.provider.clone(), s.base_url.clone(), s.model.clone(), format::decimal(s.temperature, 2), s.has_api_key)), fields)}
                <FormError message=error testid="llm-error" />
                <div class="actions">
                    <button type="submit" class="button primary" data-testid="llm-save" disabled=busy>
                        "Save"
                    </button>
                    <span class="muted" role="status" data-testid="llm-saved">{move || notice.get()}</span>
                </div>
            </form>
        </section>
    }
}

/// "Check the connection": whether the endpoint answers, and which models it lists.
#[component]
fn Connection() -> impl IntoView {
    let result = Loaded::new();
    let busy = RwSignal::new(false);
    let check = move |_| {
        busy.set(true);
        spawn_local(async move {
            result.set(settings::status().await);
            busy.set(false);
        });
    };
    let outcome = move || {
        result.read::<Status>().map(|found| {
            let (tone, text) = match found {
                Ok(status) if status.reachable => (
                    "notice",
                    format!(
                        "Connected. {} {}",
                        status.message,
                        if status.models.is_empty() {
                            String::new()
                        } else {
                            format!("Models: {}.", status.models.join(", "))
                        }
                    ),
                ),
                Ok(status) => ("notice notice-warn", status.message),
                Err(error) => ("notice notice-warn", error.message),
            };
            view! { <p class=tone role="status" data-testid="llm-status">{text}</p> }.into_any()
        })
    };
    view! {
        <section class="card" aria-labelledby="llm-check-title">
            <h2 id="llm-check-title">"Connection"</h2>
            <p class="hint">"Asks the endpoint for its models, with the settings saved above."</p>
            <div class="actions">
                <button type="button" class="button subtle" data-testid="llm-check" disabled=busy on:click=check>
                    {move || String::from(if busy.get() { "Checking…" } else { "Check the connection" })}
                </button>
            </div>
            {move || outcome()}
        </section>
    }
}
