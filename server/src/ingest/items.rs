//! The items a guide is made of, as extracted (before they are stored as `guide_items`).

use serde::{Deserialize, Serialize};

/// One rubric criterion: what earns marks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Criterion {
    /// What the answer must contain or do.
    pub description: String,
    /// Marks it earns.
    pub marks: f64,
}

/// One question of a guide with its model answer, marks and rubric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtractedItem {
    /// Label as printed, e.g. `1`, `1(b)`.
    pub label: String,
    /// The question as the student sees it.
    pub question: String,
    /// The model answer (may be empty).
    pub model_answer: String,
    /// Marks available.
    pub max_marks: f64,
    /// Rubric criteria.
    pub criteria: Vec<Criterion>,
}

/// Longest label kept.
pub const MAX_LABEL_CHARS: usize = 32;
/// Longest question, model answer or criterion description kept.
pub const MAX_FIELD_CHARS: usize = 20_000;
/// Most marks one item may carry.
pub const MAX_MARKS: f64 = 1_000.0;

fn clip(text: &str, max: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max) {
        Some((at, _)) => text[..at].trim_end().to_owned(),
        None => text.to_owned(),
    }
}

fn clamp_marks(marks: f64) -> f64 {
    if marks.is_finite() {
        marks.clamp(0.0, MAX_MARKS)
    } else {
        0.0
    }
}

/// Canonical form of a label for comparisons: lower case, without spaces, brackets,
/// dots and a leading "question"/"q" (`Q1 (a).` and `1a` are the same label).
pub fn label_key(label: &str) -> String {
    let lower = label.trim().to_lowercase();
    let lower = lower
        .strip_prefix("question")
        .or_else(|| lower.strip_prefix("q"))
        .unwrap_or(&lower);
    lower.chars().filter(|c| c.is_alphanumeric()).collect()
}

/// Cleans extracted items: trims and clips text, clamps marks, drops empty items and
/// criteria, fills a missing maximum from the criteria, and makes labels unique within the
/// guide (a repeated label gets a ` (2)` suffix) so answers can be matched to items.
pub fn tidy(items: Vec<ExtractedItem>) -> Vec<ExtractedItem> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let question = clip(&item.question, MAX_FIELD_CHARS);
        let model_answer = clip(&item.model_answer, MAX_FIELD_CHARS);
        if question.is_empty() && model_answer.is_empty() {
            continue;
        }
        let criteria: Vec<Criterion> = item
            .criteria
            .into_iter()
            .map(|c| Criterion {
                description: clip(&c.description, MAX_FIELD_CHARS),
                marks: clamp_marks(c.marks),
            })
            .filter(|c| !c.description.is_empty())
            .collect();
        let mut max_marks = clamp_marks(item.max_marks);
        if max_marks == 0.0 {
            max_marks = clamp_marks(criteria.iter().map(|c| c.marks).sum());
        }
        let mut label = clip(&item.label, MAX_LABEL_CHARS);
        if label.is_empty() {
            label = (index + 1).to_string();
        }
        let base = label.clone();
        let mut n = 2;
        while !seen.insert(label_key(&label)) {
            label = format!("{base} ({n})");
            n += 1;
        }
        out.push(ExtractedItem {
            label,
            question,
            model_answer,
            max_marks,
            criteria,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_compare_loosely() {
        assert_eq!(label_key("Q1 (a)."), "1a");
        assert_eq!(label_key("Question 12(b)"), "12b");
        assert_eq!(label_key("1(a)"), label_key("1a"));
    }

    #[test]
    fn tidy_makes_labels_unique_and_fills_marks() {
        let item = |label: &str| ExtractedItem {
            label: label.into(),
            question: " Why? ".into(),
            model_answer: String::new(),
            max_marks: f64::NAN,
            criteria: vec![Criterion {
                description: "because".into(),
                marks: 2.0,
            }],
        };
        let items = tidy(vec![item("1"), item("1"), item("")]);
        let labels: Vec<_> = items.iter().map(|i| i.label.as_str()).collect();
        assert_eq!(labels, ["1", "1 (2)", "3"]);
        assert_eq!(items[0].question, "Why?");
        assert_eq!(items[0].max_marks, 2.0);
    }
}
