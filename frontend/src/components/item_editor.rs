//! A guide's items: read, edit in place (label, question, model answer, maximum marks,
//! rubric criteria), add, delete and reorder.

use leptos::{ev, html, prelude::*, task::spawn_local};

use crate::api::guides::{self, Criterion, Item};
use crate::components::{badge::Badge, format};

/// One editable rubric row; `key` keeps rows apart while they are added and removed.
#[derive(Clone, Copy)]
struct Row {
    key: u32,
    description: RwSignal<String>,
    marks: RwSignal<String>,
}

/// Parses a marks field: a finite, non-negative number.
fn parse_marks(text: &str, what: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        _ => Err(format!("{what} must be a number of marks, 0 or more.")),
    }
}

/// Builds an item from the form's fields, or says what to fix.
fn read_form(
    id: String,
    label: &str,
    question: &str,
    model_answer: &str,
    max_marks: &str,
    rows: &[(String, String)],
) -> Result<Item, String> {
    let label = label.trim();
    if label.is_empty() {
        return Err("Give the item a label, such as 1(a).".to_owned());
    }
    if question.trim().is_empty() {
        return Err("The question cannot be empty.".to_owned());
    }
    let max_marks = parse_marks(max_marks, "Maximum marks")?;
    let mut rubric = Vec::new();
    for (index, (description, marks)) in rows.iter().enumerate() {
        let description = description.trim();
        if description.is_empty() && marks.trim().is_empty() {
            continue;
        }
        if description.is_empty() {
            return Err(format!("Criterion {} needs a description.", index + 1));
        }
        rubric.push(Criterion {
            description: description.to_owned(),
            marks: parse_marks(marks, &format!("Criterion {}", index + 1))?,
        });
    }
    Ok(Item {
        id,
        label: label.to_owned(),
        question: question.trim().to_owned(),
        model_answer: model_answer.trim().to_owned(),
        max_marks,
        rubric,
        edited: true,
    })
}

/// The item form, for a new item and for editing one.
#[component]
fn ItemForm(
    /// Starting values (`id` is empty for a new item).
    initial: Item,
    /// Prefix of the inputs' ids, unique on the page.
    prefix: String,
    /// The submit button's text.
    submit_label: &'static str,
    /// Whether a save is under way.
    #[prop(into)]
    saving: Signal<bool>,
    /// The server's refusal, if any.
    #[prop(into)]
    error: Signal<Option<String>>,
    /// Called with the validated item.
    #[prop(into)]
    on_submit: Callback<Item>,
    /// Called on "Cancel".
    #[prop(into)]
    on_cancel: Callback<()>,
) -> impl IntoView {
    let label = RwSignal::new(initial.label.clone());
    let question = RwSignal::new(initial.question.clone());
    let answer = RwSignal::new(initial.model_answer.clone());
    let max_marks = RwSignal::new(if initial.id.is_empty() && initial.max_marks == 0.0 {
        String::new()
    } else {
        format::marks(initial.max_marks)
    });
    let next_key = StoredValue::new(0u32);
    let new_row = move |description: String, marks: String| {
        let key = next_key.get_value();
        next_key.set_value(key + 1);
        Row {
            key,
            description: RwSignal::new(description),
            marks: RwSignal::new(marks),
        }
    };
    let rows = RwSignal::new(
        initial
            .rubric
            .iter()
            .map(|c| new_row(c.description.clone(), format::marks(c.marks)))
            .collect::<Vec<_>>(),
    );
    let invalid = RwSignal::new(None::<String>);
    let first_input = NodeRef::<html::Input>::new();
    Effect::new(move || {
        if let Some(input) = first_input.get() {
            let _ = input.focus();
        }
    });

    let id = initial.id.clone();
    let submit = move |event: ev::SubmitEvent| {
        event.prevent_default();
        let criteria: Vec<(String, String)> = rows
            .get_untracked()
            .iter()
            .map(|row| (row.description.get_untracked(), row.marks.get_untracked()))
            .collect();
        match read_form(
            id.clone(),
            &label.get_untracked(),
            &question.get_untracked(),
            &answer.get_untracked(),
            &max_marks.get_untracked(),
            &criteria,
        ) {
            Ok(item) => {
                invalid.set(None);
                on_submit.run(item);
            }
            Err(message) => invalid.set(Some(message)),
        }
    };
    let field_id = move |name: &str| format!("{prefix}-{name}");
    let message = move || invalid.get().or_else(|| error.get());

    view! {
        <form class="item-form" on:submit=submit data-testid="item-form">
            <div class="field-row">
                <div class="field narrow">
                    <label for=field_id("label")>"Label"</label>
                    <input
                        id=field_id("label")
                        type="text"
                        data-testid="edit-label"
                        node_ref=first_input
                        bind:value=label
                    />
                </div>
                <div class="field narrow">
                    <label for=field_id("marks")>"Maximum marks"</label>
                    <input
                        id=field_id("marks")
                        type="number"
                        min="0"
                        step="any"
                        inputmode="decimal"
                        data-testid="edit-marks"
                        bind:value=max_marks
                    />
                </div>
            </div>
            <div class="field">
                <label for=field_id("question")>"Question"</label>
                <textarea id=field_id("question") rows="3" data-testid="edit-question" bind:value=question></textarea>
            </div>
            <div class="field">
                <label for=field_id("answer")>"Model answer"</label>
                <textarea id=field_id("answer") rows="3" data-testid="edit-answer" bind:value=answer></textarea>
            </div>
            <fieldset class="rubric-edit">
                <legend>"Rubric criteria"</legend>
                <For each=move || rows.get() key=|row| row.key let:row>
                    {
                        let number = move || {
                            rows.with(|all| all.iter().position(|r| r.key == row.key).unwrap_or(0) + 1)
                        };
                        view! {
                            <div class="criterion-row" data-testid="criterion-row">
                                <input
                                    type="text"
                                    aria-label=move || format!("Criterion {} description", number())
                                    placeholder="What earns the marks"
                                    data-testid="criterion-description"
                                    bind:value=row.description
                                />
                                <input
                                    type="number"
                                    min="0"
                                    step="any"
                                    class="criterion-marks"
                                    aria-label=move || format!("Criterion {} marks", number())
                                    placeholder="Marks"
                                    data-testid="criterion-marks"
                                    bind:value=row.marks
                                />
                                <button
                                    type="button"
                                    class="button subtle"
                                    aria-label=move || format!("Remove criterion {}", number())
                                    data-testid="remove-criterion"
                                    on:click=move |_| rows.update(|all| all.retain(|r| r.key != row.key))
                                >
                                    "Remove"
                                </button>
                            </div>
                        }
                    }
                </For>
                <button
                    type="button"
                    class="button subtle"
                    data-testid="add-criterion"
                    on:click=move |_| {
                        let row = new_row(String::new(), String::new());
                        rows.update(|all| all.push(row));
                    }
                >
                    "Add criterion"
                </button>
            </fieldset>
            {move || message().map(|text| view! { <p class="form-error" role="alert" data-testid="item-error">{text}</p> })}
            <div class="actions">
                <button type="submit" class="button primary" data-testid="save-item" disabled=saving>
                    {move || if saving.get() { "Saving…" } else { submit_label }}
                </button>
                <button type="button" class="button subtle" data-testid="cancel-edit" on:click=move |_| on_cancel.run(())>
                    "Cancel"
                </button>
            </div>
        </form>
    }
}

/// One item: shown, or edited in place.
#[component]
fn ItemCard(
    item: Item,
    /// The page's list, for position and reordering.
    items: RwSignal<Vec<Item>>,
    /// Moves the item by -1 or +1.
    #[prop(into)]
    on_move: Callback<(String, isize)>,
) -> impl IntoView {
    let id = item.id.clone();
    let current = RwSignal::new(item);
    let editing = RwSignal::new(false);
    let saving = RwSignal::new(false);
    let confirming = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let edit_button = NodeRef::<html::Button>::new();

    let position = {
        let id = id.clone();
        move || items.with(|all| all.iter().position(|i| i.id == id))
    };
    let count = move || items.with(Vec::len);
    let at_top = {
        let position = position.clone();
        move || position() == Some(0)
    };
    let at_bottom = {
        let position = position.clone();
        move || position().map(|p| p + 1) == Some(count())
    };

    let refocus_edit = move || {
        request_animation_frame(move || {
            if let Some(button) = edit_button.get_untracked() {
                let _ = button.focus();
            }
        });
    };
    let save = move |item: Item| {
        saving.set(true);
        spawn_local(async move {
            match guides::update_item(item).await {
                Ok(saved) => {
                    error.set(None);
                    items.update(|all| {
                        if let Some(slot) = all.iter_mut().find(|i| i.id == saved.id) {
                            *slot = saved.clone();
                        }
                    });
                    current.set(saved);
                    editing.set(false);
                    refocus_edit();
                }
                Err(err) => error.set(Some(err.message)),
            }
            saving.set(false);
        });
    };
    let delete = {
        let id = id.clone();
        move |_| {
            let id = id.clone();
            saving.set(true);
            spawn_local(async move {
                match guides::delete_item(id.clone()).await {
                    Ok(()) => items.update(|all| all.retain(|i| i.id != id)),
                    Err(err) => {
                        error.set(Some(err.message));
                        saving.set(false);
                        confirming.set(false);
                    }
                }
            });
        }
    };
    let (up_id, down_id) = (id.clone(), id.clone());

    let shown = move || {
        let item = current.get();
        let marks = format::marks(item.max_marks);
        view! {
            <div class="item-head">
                <h3 class="item-label" data-testid="item-label">{item.label.clone()}</h3>
                <span class="item-marks" data-testid="item-marks">
                    {format!("{marks} {}", if item.max_marks == 1.0 { "mark" } else { "marks" })}
                </span>
                {item.edited.then(|| view! { <Badge label="Edited" tone="neutral" /> })}
            </div>
            <p class="item-question" data-testid="item-question">{item.question.clone()}</p>
            {(!item.model_answer.is_empty()).then(|| view! {
                <div class="item-answer">
                    <span class="item-caption">"Model answer"</span>
                    <p data-testid="item-answer">{item.model_answer.clone()}</p>
                </div>
            })}
            {(!item.rubric.is_empty()).then(|| view! {
                <ul class="rubric" data-testid="item-rubric" aria-label="Rubric">
                    {item.rubric.iter().map(|c| view! {
                        <li>
                            <span>{c.description.clone()}</span>
                            <span class="rubric-marks">{format::marks(c.marks)}</span>
                        </li>
                    }).collect_view()}
                </ul>
            })}
        }
    };

    view! {
        <li class="item" data-testid="item" data-item-id=id.clone()>
            <Show
                when=move || editing.get()
                fallback=move || {
                    let delete = delete.clone();
                    let (up_id, down_id) = (up_id.clone(), down_id.clone());
                    let (at_top, at_bottom) = (at_top.clone(), at_bottom.clone());
                    view! {
                        {shown}
                        {move || error.get().map(|text| view! { <p class="form-error" role="alert" data-testid="item-error">{text}</p> })}
                        <div class="item-actions">
                            <button
                                type="button"
                                class="button subtle"
                                data-testid="edit-item"
                                node_ref=edit_button
                                on:click=move |_| {
                                    error.set(None);
                                    editing.set(true);
                                }
                            >
                                "Edit"
                            </button>
                            <button
                                type="button"
                                class="button subtle"
                                data-testid="move-up"
                                aria-label=move || format!("Move {} up", current.with(|i| i.label.clone()))
                                disabled=at_top.clone()
                                on:click={
                                    let id = up_id.clone();
                                    move |_| on_move.run((id.clone(), -1))
                                }
                            >
                                "↑"
                            </button>
                            <button
                                type="button"
                                class="button subtle"
                                data-testid="move-down"
                                aria-label=move || format!("Move {} down", current.with(|i| i.label.clone()))
                                disabled=at_bottom.clone()
                                on:click={
                                    let id = down_id.clone();
                                    move |_| on_move.run((id.clone(), 1))
                                }
                            >
                                "↓"
                            </button>
                            <span class="spacer"></span>
                            <Show
                                when=move || confirming.get()
                                fallback=move || view! {
                                    <button
                                        type="button"
                                        class="button subtle danger"
                                        data-testid="delete-item"
                                        on:click=move |_| confirming.set(true)
                                    >
                                        "Delete"
                                    </button>
                                }
                            >
                                <span class="confirm" role="group" aria-label="Confirm deletion">
                                    "Delete this item?"
                                    <button
                                        type="button"
                                        class="button danger"
                                        data-testid="confirm-delete-item"
                                        disabled=saving
                                        on:click=delete.clone()
                                    >
                                        "Delete"
                                    </button>
                                    <button type="button" class="button subtle" on:click=move |_| confirming.set(false)>
                                        "Keep"
                                    </button>
                                </span>
                            </Show>
                        </div>
                    }
                }
            >
                <ItemForm
                    initial=current.get_untracked()
                    prefix=format!("item-{}", current.with_untracked(|i| i.id.clone()))
                    submit_label="Save"
                    saving=saving
                    error=error
                    on_submit=save
                    on_cancel=move |()| {
                        error.set(None);
                        editing.set(false);
                        refocus_edit();
                    }
                />
            </Show>
        </li>
    }
}

/// Items of guide `guide_id`: the list, reordering, and adding.
#[component]
pub fn ItemsEditor(guide_id: String, items: RwSignal<Vec<Item>>) -> impl IntoView {
    let error = RwSignal::new(None::<String>);
    let adding = RwSignal::new(false);
    let add_saving = RwSignal::new(false);
    let add_error = RwSignal::new(None::<String>);

    let reorder_guide = guide_id.clone();
    let on_move = move |(id, step): (String, isize)| {
        let before = items.get_untracked();
        let Some(from) = before.iter().position(|i| i.id == id) else {
            return;
        };
        let to = from as isize + step;
        if to < 0 || to as usize >= before.len() {
            return;
        }
        let mut after = before.clone();
        after.swap(from, to as usize);
        let ids = after.iter().map(|i| i.id.clone()).collect();
        items.set(after);
        let guide = reorder_guide.clone();
        spawn_local(async move {
            match guides::reorder(guide, ids).await {
                Ok(()) => error.set(None),
                Err(err) => {
                    items.set(before);
                    error.set(Some(err.message));
                }
            }
        });
    };
    let on_move = Callback::new(on_move);

    let add = move |item: Item| {
        add_saving.set(true);
        let guide = guide_id.clone();
        spawn_local(async move {
            match guides::add_item(guide, item).await {
                Ok(saved) => {
                    add_error.set(None);
                    items.update(|all| all.push(saved));
                    adding.set(false);
                }
                Err(err) => add_error.set(Some(err.message)),
            }
            add_saving.set(false);
        });
    };
    let total = move || items.with(|all| all.iter().map(|i| i.max_marks).sum::<f64>());

    view! {
        <section class="items-section" data-testid="items" aria-labelledby="items-title">
            <div class="section-head">
                <h2 id="items-title">"Items"</h2>
                <span class="muted" data-testid="items-summary">
                    {move || format!(
                        "{} · {} marks in all",
                        format::plural(items.with(Vec::len) as i64, "item", "items"),
                        format::marks(total()),
                    )}
                </span>
            </div>
            {move || error.get().map(|text| view! { <p class="form-error" role="alert" data-testid="items-error">{text}</p> })}
            <Show when=move || items.with(Vec::is_empty) && !adding.get()>
                <div class="empty" data-testid="items-empty">
                    <p class="empty-title">"No items yet"</p>
                    <p class="empty-detail">"They appear here when extraction finishes, or add them yourself."</p>
                </div>
            </Show>
            <ol class="items">
                <For each=move || items.get() key=|item| item.id.clone() let:item>
                    <ItemCard item=item items=items on_move=on_move />
                </For>
            </ol>
            <Show
                when=move || adding.get()
                fallback=move || view! {
                    <button
                        type="button"
                        class="button subtle"
                        data-testid="add-item"
                        on:click=move |_| {
                            add_error.set(None);
                            adding.set(true);
                        }
                    >
                        "Add an item"
                    </button>
                }
            >
                <div class="item new-item">
                    <h3>"New item"</h3>
                    <ItemForm
                        initial=Item::default()
                        prefix="new-item".to_owned()
                        submit_label="Add item"
                        saving=add_saving
                        error=add_error
                        on_submit=add.clone()
                        on_cancel=move |()| adding.set(false)
                    />
                </div>
            </Show>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_form_becomes_an_edited_item() {
        let rows = vec![
            ("Names chlorophyll".to_owned(), "1".to_owned()),
            (String::new(), String::new()),
            ("Mentions light".to_owned(), "0.5".to_owned()),
        ];
        let item = read_form("7".into(), " 1(a) ", "Why?", "Because.", "1.5", &rows)
            .expect("valid form");
        assert_eq!(item.label, "1(a)");
        assert_eq!(item.max_marks, 1.5);
        assert_eq!(item.rubric.len(), 2, "blank rows are dropped");
        assert!(item.edited);
    }

    #[test]
    fn invalid_forms_say_what_to_fix() {
        let none: Vec<(String, String)> = Vec::new();
        assert!(read_form(String::new(), "", "Q", "", "1", &none).is_err());
        assert!(read_form(String::new(), "1", " ", "", "1", &none).is_err());
        let marks = read_form(String::new(), "1", "Q", "", "lots", &none).expect_err("not a number");
        assert!(marks.contains("Maximum marks"), "{marks}");
        let rows = vec![("Names it".to_owned(), "-2".to_owned())];
        let criterion = read_form(String::new(), "1", "Q", "", "2", &rows).expect_err("negative marks");
        assert!(criterion.contains("Criterion 1"), "{criterion}");
    }
}
