//! Guide text → items (`gradelab::ingest::parser`), plus the text decoder in front of it
//! (`gradelab::ingest::text`) and the script splitter behind it
//! (`gradelab::service::scripts::split_by_labels`), for any bytes.
//!
//! The bytes are decoded as an uploaded TXT/Markdown guide is; when the decoder refuses
//! them, the parser still gets the lossy UTF-8 text (it must not panic on any string).
//! The labels the parser finds become guide items, and the same text is split as a
//! student's script against them.
#![no_main]

use gradelab::ingest::{check_text, parser, text, Limits};
use gradelab::service::scripts::split_by_labels;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let text = match text::decode(data) {
        Ok(decoded) => check_text(&decoded.text, &limits).unwrap_or(decoded.text),
        Err(_) => String::from_utf8_lossy(data).into_owned(),
    };
    let items = parser::parse(&text);
    let _ = parser::chunks(&text, 2_000);

    let now = chrono::Utc::now();
    let models: Vec<entity::guide_items::Model> = items
        .iter()
        .zip(1..)
        .map(|(item, id)| entity::guide_items::Model {
            id,
            guide_id: 1,
            position: id - 1,
            label: item.label.clone(),
            question: item.question.clone(),
            model_answer: item.model_answer.clone(),
            max_marks: item.max_marks,
            rubric: serde_json::Value::Array(Vec::new()),
            edited: false,
            created_at: now,
            updated_at: now,
        })
        .collect();
    let _ = split_by_labels(&text, &models);
});
