//! A guide's items: read, edit in place (label, question, model answer, maximum marks,
//! rubric criteria), add, delete and reorder.
//!
//! Written with the wasm budget in mind: one form at a time, forms read their fields
//! from the DOM on submit instead of binding a signal per input, and the buttons of the
//! list share one click handler (`data-act` says what a button does).

use leptos::{ev, prelude::*, task::spawn_local};
use wasm_bindgen::JsCast;
use web_sys::{Element, FormData, HtmlElement, HtmlFormElement};

use crate::api::guides::{self, Criterion, Item};
use crate::components::{
    badge::Badge, form_error::FormError, format, handler::Handler, list::CollectAny,
};

/// `editing` value while the new-item form is open.
const NEW: &str = "";

/// Parses a marks field: a finite, non-negative number.
fn parse_marks(text: &str, what: &str) -> Result<f64, String> {
    match format::parse_number(text) {
        Some(value) if value >= 0.0 => Ok(value),
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
        rev: 0,
    })
}

/// Focuses the first element matching `selector`, once it is in the page.
fn focus(selector: String) {
    request_animation_frame(move || {
        let element = document()
            .query_selector(&selector)
            .ok()
            .flatten()
            .and_then(|element| element.dyn_into::<HtmlElement>().ok());
        if let Some(element) = element {
            let _ = element.focus();
        }
    });
}

/// The item form, for a new item (`item.id` empty) and for editing one.
#[component]
fn ItemForm(
    item: Item,
    saving: RwSignal<bool>,
    error: RwSignal<Option<String>>,
    #[prop(into)] on_submit: Handler<Item>,
) -> impl IntoView {
    let prefix = if item.id.is_empty() {
        "new-item".to_owned()
    } else {
        format!("item-{}", item.id)
    };
    let marks = if item.id.is_empty() {
        String::new()
    } else {
        format::marks(item.max_marks)
    };
    // Criterion rows: (key, description, marks) as first shown; the inputs hold edits.
    let rows = RwSignal::new(
        item.rubric
            .iter()
            .enumerate()
            .map(|(key, c)| (key, c.description.clone(), format::marks(c.marks)))
            .collect::<Vec<_>>(),
    );
    let id = item.id.clone();
    let submit = move |event: ev::SubmitEvent| {
        event.prevent_default();
        let Some(data) = event
            .target()
            .and_then(|target| target.dyn_into::<HtmlFormElement>().ok())
            .and_then(|form| FormData::new_with_form(&form).ok())
        else {
            return;
        };
        let field = |name: &str| data.get(name).as_string().unwrap_or_default();
        let all = |name: &str| {
            data.get_all(name)
                .iter()
                .map(|value| value.as_string().unwrap_or_default())
                .collect::<Vec<_>>()
        };
        let criteria: Vec<_> = all("c-desc").into_iter().zip(all("c-marks")).collect();
        match read_form(
            id.clone(),
            &field("label"),
            &field("question"),
            &field("answer"),
            &field("marks"),
            &criteria,
        ) {
            Ok(item) => on_submit.run(item),
            Err(message) => error.set(Some(message)),
        }
    };
    let field_id = move |name: &str| format!("{prefix}-{name}");

    view! {
        <form class="item-form" data-testid="item-form" on:submit=submit>
            <div class="field-row">
                <div class="field narrow">
                    <label for=field_id("label")>"Label"</label>
                    <input id=field_id("label") name="label" type="text" value=item.label data-testid="edit-label" />
                </div>
                <div class="field narrow">
                    <label for=field_id("marks")>"Maximum marks"</label>
                    <input
                        id=field_id("marks")
                        name="marks"
                        type="number"
                        min="0"
                        step="any"
                        value=marks
                        data-testid="edit-marks"
                    />
                </div>
            </div>
            <div class="field">
                <label for=field_id("question")>"Question"</label>
                <textarea id=field_id("question") name="question" rows="3" data-testid="edit-question">
                    {item.question}
                </textarea>
            </div>
            <div class="field">
                <label for=field_id("answer")>"Model answer"</label>
                <textarea id=field_id("answer") name="answer" rows="3" data-testid="edit-answer">
                    {item.model_answer}
                </textarea>
            </div>
            <fieldset class="rubric-edit">
                <legend>"Rubric criteria"</legend>
                <For each=move || rows.get() key=|row| row.0.to_string() let:row>
                    <div class="criterion-row" data-testid="criterion-row">
                        <input
                            name="c-desc"
                            type="text"
                            aria-label="Criterion"
                            placeholder="What earns the marks"
                            value=row.1
                            data-testid="criterion-description"
                        />
                        <input
                            name="c-marks"
                            type="number"
                            min="0"
                            step="any"
                            class="criterion-marks"
                            aria-label="Criterion marks"
                            placeholder="Marks"
                            value=row.2
                            data-testid="criterion-marks"
                        />
                        <button
                            type="button"
                            class="button subtle"
                            data-testid="remove-criterion"
                            on:click=move |_| rows.update(|all| all.retain(|r| r.0 != row.0))
                        >
                            "Remove"
                        </button>
                    </div>
                </For>
                <button
                    type="button"
                    class="button subtle"
                    data-testid="add-criterion"
                    on:click=move |_| {
                        rows.update(|all| {
                            let key = all.iter().map(|r| r.0 + 1).max().unwrap_or(0);
                            all.push((key, String::new(), String::new()));
                        })
                    }
                >
                    "Add criterion"
                </button>
            </fieldset>
            <FormError message=error testid="item-error" />
            <div class="actions">
                <button type="submit" class="button primary" data-testid="save-item" disabled=saving>
                    "Save"
                </button>
                <button type="button" class="button subtle" data-act="cancel" data-testid="cancel-edit">
                    "Cancel"
                </button>
            </div>
        </form>
    }
}

/// Items of guide `guide_id`: the list, reordering, editing and adding.
#[component]
pub fn ItemsEditor(guide_id: String, items: RwSignal<Vec<Item>>) -> impl IntoView {
    // The item whose form is open (`NEW` for the new-item form), and the one asking
    // "delete?".
    let editing = RwSignal::new(None::<String>);
    let confirming = RwSignal::new(None::<String>);
    let saving = RwSignal::new(false);
    let form_error = RwSignal::new(None::<String>);
    let list_error = RwSignal::new(None::<String>);

    let open = move |id: String| {
        form_error.set(None);
        confirming.set(None);
        focus(if id.is_empty() {
            "#new-item-label".to_owned()
        } else {
            format!("#item-{id}-label")
        });
        editing.set(Some(id));
    };
    let close = move || {
        let back = match editing.get_untracked() {
            Some(id) if !id.is_empty() => format!("[data-act=edit][data-id=\"{id}\"]"),
            _ => "[data-act=new]".to_owned(),
        };
        editing.set(None);
        focus(back);
    };

    let reorder_guide = guide_id.clone();
    let move_item = move |id: String, step: isize| {
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
                Ok(()) => list_error.set(None),
                Err(err) => {
                    items.set(before);
                    list_error.set(Some(err.message));
                }
            }
        });
    };
    let delete = move |id: String| {
        spawn_local(async move {
            match guides::delete_item(id.clone()).await {
                Ok(()) => {
                    list_error.set(None);
                    items.update(|all| all.retain(|i| i.id != id));
                }
                Err(err) => list_error.set(Some(err.message)),
            }
            confirming.set(None);
        });
    };
    let save = move |item: Item| {
        saving.set(true);
        let guide = guide_id.clone();
        spawn_local(async move {
            let result = if item.id.is_empty() {
                guides::add_item(guide, item).await
            } else {
                guides::update_item(item).await
            };
            match result {
                Ok(saved) => {
                    form_error.set(None);
                    items.update(|all| match all.iter_mut().find(|i| i.id == saved.id) {
                        // A new `rev` rebuilds the item's card with the saved values.
                        Some(slot) => {
                            *slot = Item {
                                rev: slot.rev + 1,
                                ..saved
                            }
                        }
                        None => all.push(saved),
                    });
                    close();
                }
                Err(err) => form_error.set(Some(err.message)),
            }
            saving.set(false);
        });
    };
    let save = Handler::from(save);

    // One handler for every button of the list (see the module comment).
    let on_click = move |event: ev::MouseEvent| {
        let Some(button) = event
            .target()
            .and_then(|target| target.dyn_into::<Element>().ok())
            .and_then(|element| element.closest("button[data-act]").ok().flatten())
        else {
            return;
        };
        let id = button.get_attribute("data-id").unwrap_or_default();
        match button.get_attribute("data-act").as_deref() {
            Some("edit") => open(id),
            Some("new") => open(NEW.to_owned()),
            Some("cancel") => close(),
            Some("up") => move_item(id, -1),
            Some("down") => move_item(id, 1),
            Some("delete") => confirming.set(Some(id)),
            Some("keep") => confirming.set(None),
            Some("confirm-delete") => delete(id),
            _ => {}
        }
    };

    let summary = move || {
        items.with(|all| {
            format!(
                "{} · {} marks in all",
                format::plural(all.len() as i64, "item", "items"),
                format::marks(all.iter().map(|i| i.max_marks).sum()),
            )
        })
    };
    let card_save = save.clone();
    let card = move |item: Item| {
        let save = card_save.clone();
        let id = item.id.clone();
        let (edit_id, confirm_id, delete_id, up_id, down_id, form_id) = (
            id.clone(),
            id.clone(),
            id.clone(),
            id.clone(),
            id.clone(),
            id.clone(),
        );
        let marks = format!(
            "{} {}",
            format::marks(item.max_marks),
            if item.max_marks == 1.0 {
                "mark"
            } else {
                "marks"
            }
        );
        let form_item = item.clone();
        view! {
            <li class="item" data-testid="item" data-item-id=id.clone() data-label=item.label.clone()>
                <div class="item-view" hidden=move || editing.with(|e| e.as_ref() == Some(&edit_id))>
                    <div class="item-head">
                        <h3 class="item-label" data-testid="item-label">{item.label.clone()}</h3>
                        <span class="item-marks" data-testid="item-marks">{marks}</span>
                        {item.edited.then(|| view! { <Badge label="Edited" tone="neutral" /> })}
                    </div>
                    <p class="item-question" data-testid="item-question">{item.question}</p>
                    {(!item.model_answer.is_empty()).then(|| view! {
                        <div class="item-answer">
                            <span class="item-caption">"Model answer"</span>
                            <p data-testid="item-answer">{item.model_answer}</p>
                        </div>
                    }.into_any())}
                    {(!item.rubric.is_empty()).then(|| view! {
                        <ul class="rubric" data-testid="item-rubric" aria-label="Rubric">
                            {item.rubric.into_iter().map(|c| view! {
                                <li>
                                    <span>{c.description}</span>
                                    <span class="rubric-marks">{format::marks(c.marks)}</span>
                                </li>
                            }).collect_any()}
                        </ul>
                    }.into_any())}
                    <div class="item-actions">
                        <button type="button" class="button subtle" data-act="edit" data-id=id.clone() data-testid="edit-item">
                            "Edit"
                        </button>
                        <button
                            type="button"
                            class="button subtle"
                            data-act="up"
                            data-id=id.clone()
                            data-testid="move-up"
                            aria-label=format!("Move {} up", item.label)
                            disabled=move || items.with(|all| all.first().is_some_and(|i| i.id == up_id))
                        >
                            "↑"
                        </button>
                        <button
                            type="button"
                            class="button subtle"
                            data-act="down"
                            data-id=id.clone()
                            data-testid="move-down"
                            aria-label=format!("Move {} down", item.label)
                            disabled=move || items.with(|all| all.last().is_some_and(|i| i.id == down_id))
                        >
                            "↓"
                        </button>
                        <span class="spacer"></span>
                        <span class="confirm" hidden=move || confirming.with(|c| c.as_ref() != Some(&confirm_id))>
                            "Delete this item?"
                            <button type="button" class="button danger" data-act="confirm-delete" data-id=id.clone() data-testid="confirm-delete-item">
                                "Delete"
                            </button>
                            <button type="button" class="button subtle" data-act="keep">
                                "Keep"
                            </button>
                        </span>
                        <button
                            type="button"
                            class="button subtle danger"
                            data-act="delete"
                            data-id=id.clone()
                            data-testid="delete-item"
                            hidden=move || confirming.with(|c| c.as_ref() == Some(&delete_id))
                        >
                            "Delete"
                        </button>
                    </div>
                </div>
                {move || {
                    (editing.with(|e| e.as_ref() == Some(&form_id))).then(|| view! {
                        <ItemForm item=form_item.clone() saving=saving error=form_error on_submit=save.clone() />
                    })
                }}
            </li>
        }
    };

    view! {
        <section class="items-section" data-testid="items" aria-labelledby="items-title" on:click=on_click>
            <div class="section-head">
                <h2 id="items-title">"Items"</h2>
                <span class="muted" data-testid="items-summary">{move || summary()}</span>
            </div>
            <FormError message=list_error testid="items-error" />
            <div class="empty" data-testid="items-empty" hidden=move || !items.with(Vec::is_empty)>
                <p class="empty-title">"No items yet"</p>
                <p class="empty-detail">"They appear here when extraction finishes, or add them yourself."</p>
            </div>
            <ol class="items">
                <For each=move || items.get() key=|item| format!("{}:{}", item.id, item.rev) children=card />
            </ol>
            {move || {
                (editing.with(|e| e.as_deref() == Some(NEW))).then(|| view! {
                    <div class="item new-item">
                        <h3>"New item"</h3>
                        <ItemForm item=Item::default() saving=saving error=form_error on_submit=save.clone() />
                    </div>
                }.into_any())
            }}
            <button
                type="button"
                class="button subtle"
                data-act="new"
                data-testid="add-item"
                hidden=move || editing.with(|e| e.as_deref() == Some(NEW))
            >
                "Add an item"
            </button>
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
        let item =
            read_form("7".into(), " 1(a) ", "Why?", "Because.", "1.5", &rows).expect("valid form");
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
        let marks =
            read_form(String::new(), "1", "Q", "", "lots", &none).expect_err("not a number");
        assert!(marks.contains("Maximum marks"), "{marks}");
        let rows = vec![("Names it".to_owned(), "-2".to_owned())];
        let criterion =
            read_form(String::new(), "1", "Q", "", "2", &rows).expect_err("negative marks");
        assert!(criterion.contains("Criterion 1"), "{criterion}");
    }
}
