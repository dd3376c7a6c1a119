//! Teacher-scored answers: a guide's split summary and imports from a CSV/JSONL file or
//! pasted text (`queries/{answer_split_summary,import_answers,import_answers_text}.graphql`).

use graphql_client::GraphQLQuery;
use serde_json::Value;

use super::json::Read;
use super::upload::{self, Progress};
use super::{http, ApiError};

type Upload = ();

#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "queries/answer_split_summary.graphql",
    response_derives = "Serialize"
)]
struct AnswerSplitSummary;

#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "queries/import_answers.graphql",
    response_derives = "Serialize"
)]
struct ImportAnswers;

#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "../schema.graphql",
    query_path = "queries/import_answers_text.graphql",
    response_derives = "Serialize"
)]
struct ImportAnswersText;

/// One item's answers per split.
#[derive(Clone, Debug, PartialEq)]
pub struct ItemCounts {
    /// The item's label.
    pub label: String,
    /// Answers in train, validation, test and none.
    pub splits: [i64; 4],
    /// Answers with a teacher's score.
    pub scored: i64,
}

/// A guide's answers by split.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The guide's title.
    pub title: String,
    /// All answers.
    pub total: i64,
    /// Answers with a teacher's score.
    pub scored: i64,
    /// Answers in train, validation, test and none.
    pub splits: [i64; 4],
    /// Per item, in guide order.
    pub items: Vec<ItemCounts>,
}

/// The splits in [`Summary::splits`] order, as the schema names them.
const SPLITS: [&str; 4] = ["TRAIN", "VALIDATION", "TEST", "UNASSIGNED"];

fn read_summary(data: &Value) -> Summary {
    let summary = data.at("answerSplitSummary");
    let mut splits = [0; 4];
    for count in summary.list("bySplit") {
        if let Some(slot) = SPLITS.iter().position(|s| *s == count.text("split")) {
            splits[slot] = count.int("count");
        }
    }
    Summary {
        title: data.at("guide").text("title"),
        total: summary.int("total"),
        scored: summary.int("scored"),
        splits,
        items: summary
            .list("items")
            .iter()
            .map(|item| ItemCounts {
                label: item.text("label"),
                splits: [
                    item.int("train"),
                    item.int("validation"),
                    item.int("test"),
                    item.int("unassigned"),
                ],
                scored: item.int("scored"),
            })
            .collect(),
    }
}

/// A guide's answers counted per split and item.
pub async fn summary(guide_id: String) -> Result<Summary, ApiError> {
    let data =
        http::post::<AnswerSplitSummary>(answer_split_summary::Variables { guide_id }).await?;
    Ok(read_summary(&data))
}

/// A row that was left out.
#[derive(Clone, Debug, PartialEq)]
pub struct BadRow {
    /// 1-based line of the file.
    pub line: i64,
    /// What is wrong with it.
    pub message: String,
}

/// What an import did.
#[derive(Clone, Debug, PartialEq)]
pub struct Imported {
    /// The file's name.
    pub filename: String,
    /// Answers imported.
    pub imported: i64,
    /// Rows left out.
    pub skipped_count: i64,
    /// The first rows left out.
    pub skipped: Vec<BadRow>,
}

fn read_import(payload: &Value) -> Imported {
    Imported {
        filename: payload.text("filename"),
        imported: payload.int("imported"),
        skipped_count: payload.int("skippedCount"),
        skipped: payload
            .list("skipped")
            .iter()
            .map(|row| BadRow {
                line: row.int("line"),
                message: row.text("message"),
            })
            .collect(),
    }
}

macro_rules! options {
    ($module:ident, $skip_bad_rows:expr) => {
        Some($module::ImportAnswersOptions {
            format: None,
            skip_bad_rows: $skip_bad_rows,
            fractions: None,
            seed: 42,
            resplit: false,
            validation_from_train: None,
        })
    };
}

/// Imports a CSV or JSONL file of scored answers, reporting bytes sent. With
/// `skip_bad_rows` the good rows are imported and the bad ones listed; without, a file
/// with a bad row imports nothing and the error lists the rows.
pub async fn import_file(
    guide_id: String,
    file: &web_sys::File,
    skip_bad_rows: bool,
    on_progress: impl Fn(Progress) + 'static,
) -> Result<Imported, ApiError> {
    let variables = import_answers::Variables {
        guide_id,
        file: (),
        options: options!(import_answers, skip_bad_rows),
    };
    let data = upload::post_file::<ImportAnswers>(variables, "file", file, on_progress).await?;
    Ok(read_import(data.at("importAnswers")))
}

/// Imports pasted CSV or JSONL text, like [`import_file`].
pub async fn import_text(
    guide_id: String,
    text: String,
    skip_bad_rows: bool,
) -> Result<Imported, ApiError> {
    let variables = import_answers_text::Variables {
        guide_id,
        text,
        options: options!(import_answers_text, skip_bad_rows),
    };
    let data = http::post::<ImportAnswersText>(variables).await?;
    Ok(read_import(data.at("importAnswersText")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::json::typed;
    use serde_json::json;

    #[test]
    fn reads_the_split_summary() {
        let data = typed::<AnswerSplitSummary>(json!({
            "guide": { "title": "Bio" },
            "answerSplitSummary": {
                "total": 10, "scored": 9,
                "bySplit": [
                    { "split": "TRAIN", "count": 6 }, { "split": "VALIDATION", "count": 2 },
                    { "split": "TEST", "count": 2 }, { "split": "UNASSIGNED", "count": 0 },
                ],
                "items": [{
                    "itemId": "1", "label": "1(a)", "train": 6, "validation": 2, "test": 2,
                    "unassigned": 0, "scored": 9,
                }],
            },
        }));
        let summary = read_summary(&data);
        assert_eq!(summary.title, "Bio");
        assert_eq!((summary.total, summary.scored), (10, 9));
        assert_eq!(summary.splits, [6, 2, 2, 0]);
        assert_eq!(summary.items[0].label, "1(a)");
        assert_eq!(summary.items[0].splits, [6, 2, 2, 0]);
    }

    #[test]
    fn reads_an_import() {
        let payload = json!({
            "filename": "answers.csv", "imported": 40, "skippedCount": 1,
            "skipped": [{ "line": 7, "message": "no item labelled 9" }],
        });
        let data = typed::<ImportAnswers>(json!({ "importAnswers": payload }));
        let imported = read_import(data.at("importAnswers"));
        assert_eq!((imported.imported, imported.skipped_count), (40, 1));
        assert_eq!(
            imported.skipped,
            vec![BadRow {
                line: 7,
                message: "no item labelled 9".into()
            }]
        );
        let pasted = typed::<ImportAnswersText>(json!({ "importAnswersText": payload }));
        assert_eq!(
            read_import(pasted.at("importAnswersText")).filename,
            "answers.csv"
        );
    }
}
