//! Teacher-scored answers: import from CSV or JSONL (a file or pasted text), train/validation/test splits, guides made from item files, and per-guide summaries.
//!
//! An import is all or nothing: every row is parsed and checked first (the item exists, the
//! score is a number within the item's maximum, the answer is not empty, the split is
//! known), and a file with any bad row imports nothing — the error lists the bad rows with
//! their line numbers — unless the caller asks to skip bad rows. A file identical to one
//! the user imported before (same SHA-256 of its bytes, the `uploads` table) is refused as
//! a duplicate. The raw file is kept in the content-addressed blob store.
//!
//! Rows keep the split their file gives them (`train`, `validation`/`dev`, `test…`); rows
//! without one are assigned by a seeded split stratified by item and score, so every item
//! and every score level is spread over the splits in the chosen proportions. A dataset
//! without a validation split (SAF) can have one carved from its train rows the same way.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::Utc;
use entity::enums::{GuideStatus, Split};
use entity::{answers, guide_items, guides, submissions, uploads};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, SqlErr, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tracing::instrument;

use crate::blobs::BlobStore;
use crate::error::{AppError, ErrorCode};
use crate::ingest::items::{label_key, MAX_FIELD_CHARS, MAX_LABEL_CHARS, MAX_MARKS};
use crate::ingest::Criterion;
use crate::state::AppState;

/// Longest answer text accepted, in characters.
pub const MAX_ANSWER_CHARS: usize = 20_000;
/// Longest student reference accepted, in characters.
pub const MAX_STUDENT_REF_CHARS: usize = 200;
/// Most rows in one import.
pub const MAX_ROWS: usize = 100_000;
/// Row errors listed in an error or a report (the count is always complete).
pub const MAX_REPORTED_ERRORS: usize = 200;
/// Most items in a guide made from an items file.
pub const MAX_ITEMS: usize = 500;
/// Rows inserted per statement.
const CHUNK: usize = 400;

/// What went wrong with an answers request.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// No such guide for this user.
    #[error("guide {0} not found")]
    GuideNotFound(i32),
    /// No such answer for this user.
    #[error("answer {0} not found")]
    AnswerNotFound(i32),
    /// The same file was imported before.
    #[error("{0}")]
    Duplicate(String),
    /// Rows failed their checks; nothing was imported.
    #[error("{}", row_error_message(.errors, *.total))]
    Rows {
        /// The first [`MAX_REPORTED_ERRORS`] bad rows.
        errors: Vec<RowError>,
        /// How many rows are bad.
        total: usize,
    },
    /// Invalid input; the message says how to fix it.
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
    /// The file store failed.
    #[error("file store: {0}")]
    Io(#[from] std::io::Error),
}

fn row_error_message(errors: &[RowError], total: usize) -> String {
    let listed: Vec<String> = errors
        .iter()
        .take(5)
        .map(|e| format!("line {}: {}", e.line, e.message))
        .collect();
    let more = if total > listed.len() {
        format!(" (and {} more)", total - listed.len())
    } else {
        String::new()
    };
    format!(
        "{total} row{} cannot be imported, so nothing was imported (fix them, or choose to import the good rows only — `skipBadRows` in the API): {}{more}.",
        if total == 1 { "" } else { "s" },
        listed.join("; ")
    )
}

impl From<AnswerError> for AppError {
    fn from(err: AnswerError) -> Self {
        match err {
            AnswerError::GuideNotFound(id) => AppError::not_found("guide", id),
            AnswerError::AnswerNotFound(id) => AppError::not_found("answer", id),
            AnswerError::Duplicate(_) => AppError::new(ErrorCode::Duplicate, err.to_string()),
            AnswerError::Rows { .. } | AnswerError::Invalid(_) => {
                AppError::bad_input(err.to_string())
            }
            AnswerError::Db(err) => AppError::internal(err),
            AnswerError::Io(err) => AppError::internal(err),
        }
    }
}

/// A row that cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    /// 1-based line of the file where the row starts.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

/// How a file's rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// Comma-, semicolon- or tab-separated values with a header row (RFC 4180 quoting).
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl FileFormat {
    fn extension(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Jsonl => "jsonl",
        }
    }

    /// The format a file name says, if it says one.
    fn from_filename(name: &str) -> Option<Self> {
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "csv" | "tsv" => Some(Self::Csv),
            "jsonl" | "ndjson" | "json" => Some(Self::Jsonl),
            _ => None,
        }
    }

    /// The format the text looks like: JSONL when it starts with `{`.
    fn sniff(text: &str) -> Self {
        if text.trim_start().starts_with('{') {
            Self::Jsonl
        } else {
            Self::Csv
        }
    }
}

/// Proportions of train, validation and test (any non-negative numbers with a positive sum).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitFractions {
    /// Share of train.
    pub train: f64,
    /// Share of validation.
    pub validation: f64,
    /// Share of test.
    pub test: f64,
}

impl Default for SplitFractions {
    fn default() -> Self {
        Self {
            train: 0.6,
            validation: 0.2,
            test: 0.2,
        }
    }
}

impl SplitFractions {
    /// The fractions normalised to sum to 1, or an error saying what is wrong.
    pub fn normalised(self) -> Result<[f64; 3], AnswerError> {
        let parts = [self.train, self.validation, self.test];
        if parts.iter().any(|p| !p.is_finite() || *p < 0.0) || parts.iter().sum::<f64>() <= 0.0 {
            return Err(AnswerError::Invalid(
                "Split fractions must be non-negative numbers with a positive sum.".into(),
            ));
        }
        let sum: f64 = parts.iter().sum();
        Ok(parts.map(|p| p / sum))
    }
}

/// How an import assigns splits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportOptions {
    /// The file's format; by default from the file name, else from the content.
    pub format: Option<FileFormat>,
    /// Import the good rows of a file with bad ones (they are reported, not imported).
    pub skip_bad_rows: bool,
    /// Proportions for rows without a split (and for every row when `resplit` is set).
    pub fractions: SplitFractions,
    /// Seed of the stratified split.
    pub seed: u64,
    /// Ignore the file's splits and assign every row.
    pub resplit: bool,
    /// Share of the train rows moved to validation (stratified), e.g. 0.2 for a dataset
    /// that has no validation split.
    pub validation_from_train: Option<f64>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            format: None,
            skip_bad_rows: false,
            fractions: SplitFractions::default(),
            seed: 42,
            resplit: false,
            validation_from_train: None,
        }
    }
}

/// A file (or pasted text) to import.
#[derive(Debug, Clone)]
pub struct ImportSource {
    /// File name as sent (display only); `None` for pasted text.
    pub filename: Option<String>,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportReport {
    /// The upload row of the file.
    pub upload: uploads::Model,
    /// The guide the answers went to.
    pub guide_id: i32,
    /// Answers imported.
    pub imported: usize,
    /// Bad rows left out (with `skip_bad_rows`); at most [`MAX_REPORTED_ERRORS`] listed.
    pub skipped: Vec<RowError>,
    /// How many rows were left out.
    pub skipped_count: usize,
    /// Imported answers per split.
    pub by_split: BTreeMap<&'static str, usize>,
}

/// Counts of one item's answers per split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemSplitCounts {
    /// `guide_items.id`.
    pub item_id: i32,
    /// The item's label.
    pub label: String,
    /// Maximum marks.
    pub max_marks: f64,
    /// Answers in train.
    pub train: usize,
    /// Answers in validation.
    pub validation: usize,
    /// Answers in test.
    pub test: usize,
    /// Answers in no split yet.
    pub unassigned: usize,
    /// Answers with a teacher's score.
    pub scored: usize,
    /// Mean normalised teacher score (score / max), if any are scored.
    pub mean_normalised_score: Option<f64>,
}

/// A guide's answers by split and item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitSummary {
    /// The guide.
    pub guide_id: i32,
    /// All answers.
    pub total: usize,
    /// Answers with a teacher's score.
    pub scored: usize,
    /// Answers per split (every split listed).
    pub by_split: Vec<(Split, usize)>,
    /// Per item, in guide order.
    pub items: Vec<ItemSplitCounts>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whitespace-normalised text (what an answer's hash is taken over).
fn normalise_text(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A file name safe to show.
fn display_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let clean: String = base.chars().filter(|c| !c.is_control()).take(255).collect();
    if clean.trim().is_empty() {
        "upload".to_owned()
    } else {
        clean
    }
}

/// One of the caller's guides.
async fn owned_guide(
    db: &DatabaseConnection,
    user_id: i32,
    guide_id: i32,
) -> Result<guides::Model, AnswerError> {
    guides::Entity::find_by_id(guide_id)
        .filter(guides::Column::UserId.eq(user_id))
        .one(db)
        .await?
        .ok_or(AnswerError::GuideNotFound(guide_id))
}

// ---------------------------------------------------------------------------------------
// Reading rows
// ---------------------------------------------------------------------------------------

/// A row's fields by (lower-case) column name, with the line it starts on.
#[derive(Debug, Clone)]
pub struct RawRow {
    line: usize,
    fields: HashMap<String, Value>,
}

/// Decodes the bytes as text (BOMs, UTF-16 and legacy encodings handled).
fn decode(bytes: &[u8]) -> Result<String, AnswerError> {
    crate::ingest::text::decode(bytes)
        .map(|d| d.text)
        .map_err(|err| AnswerError::Invalid(format!("The file cannot be read as text: {err}")))
}

/// Records of CSV text with the 1-based line each starts on (RFC 4180: quoted fields may
/// hold delimiters, doubled quotes and line breaks). Blank lines are skipped.
fn parse_csv(text: &str, delimiter: char) -> Result<Vec<(usize, Vec<String>)>, RowError> {
    let mut records = Vec::new();
    let mut record: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut line = 1;
    let mut start = 1;
    let mut chars = text.chars().peekable();
    let mut field_started = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.trim().is_empty() => {
                field.clear();
                in_quotes = true;
                field_started = true;
            }
            c if c == delimiter => {
                record.push(std::mem::take(&mut field));
                field_started = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => {
                record.push(std::mem::take(&mut field));
                if !(record.len() == 1 && record[0].trim().is_empty() && !field_started) {
                    records.push((start, std::mem::take(&mut record)));
                }
                record.clear();
                field_started = false;
                line += 1;
                start = line;
            }
            _ => {
                field.push(c);
                field_started = true;
            }
        }
    }
    if in_quotes {
        return Err(RowError {
            line: start,
            message: "a quoted field is never closed (a `\"` is missing)".into(),
        });
    }
    if field_started || !field.is_empty() || !record.is_empty() {
        record.push(field);
        if !(record.len() == 1 && record[0].trim().is_empty()) {
            records.push((start, record));
        }
    }
    Ok(records)
}

/// Rows of a CSV file: the first record names the columns.
fn csv_rows(text: &str) -> Result<Vec<RawRow>, AnswerError> {
    let header_line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let delimiter = [',', ';', '\t']
        .into_iter()
        .max_by_key(|d| header_line.matches(*d).count())
        .unwrap_or(',');
    let records = parse_csv(text, delimiter).map_err(|e| AnswerError::Rows {
        errors: vec![e],
        total: 1,
    })?;
    let mut records = records.into_iter();
    let Some((_, header)) = records.next() else {
        return Ok(Vec::new());
    };
    let header: Vec<String> = header
        .iter()
        .map(|h| h.trim().trim_start_matches('\u{feff}').to_lowercase())
        .collect();
    Ok(records
        .map(|(line, values)| RawRow {
            line,
            fields: header
                .iter()
                .cloned()
                .zip(values.into_iter().map(Value::String))
                .collect(),
        })
        .collect())
}

/// Rows of a JSONL file; a line that is not a JSON object is a row error.
fn jsonl_rows(text: &str) -> (Vec<RawRow>, Vec<RowError>) {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let trimmed = line.trim().trim_start_matches('\u{feff}');
        if trimmed.is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(trimmed) {
            Ok(Value::Object(map)) => rows.push(RawRow {
                line: line_no,
                fields: map
                    .into_iter()
                    .map(|(k, v)| (k.to_lowercase(), v))
                    .collect(),
            }),
            Ok(_) => errors.push(RowError {
                line: line_no,
                message: "each line must be a JSON object".into(),
            }),
            Err(err) => errors.push(RowError {
                line: line_no,
                message: format!("not valid JSON ({err})"),
            }),
        }
    }
    (rows, errors)
}

/// The rows of a file in either format, with the errors of rows that could not be read.
///
/// Pure (bytes in, rows out, no I/O); public for the fuzz target
/// `fuzz/fuzz_targets/answers_csv_jsonl.rs`.
pub fn read_rows(
    bytes: &[u8],
    filename: Option<&str>,
    format: Option<FileFormat>,
) -> Result<(FileFormat, Vec<RawRow>, Vec<RowError>), AnswerError> {
    let text = decode(bytes)?;
    let format = format
        .or_else(|| filename.and_then(FileFormat::from_filename))
        .unwrap_or_else(|| FileFormat::sniff(&text));
    let (rows, errors) = match format {
        FileFormat::Csv => (csv_rows(&text)?, Vec::new()),
        FileFormat::Jsonl => jsonl_rows(&text),
    };
    if rows.len() + errors.len() > MAX_ROWS {
        return Err(AnswerError::Invalid(format!(
            "The file has more than {MAX_ROWS} rows; split it into smaller files."
        )));
    }
    Ok((format, rows, errors))
}

/// The first present, non-empty field among `names`.
fn field<'a>(row: &'a RawRow, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|name| {
        row.fields
            .get(*name)
            .filter(|v| !v.is_null() && v.as_str().is_none_or(|s| !s.trim().is_empty()))
    })
}

fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().replace(',', ".").parse::<f64>().ok(),
        _ => None,
    }
    .filter(|v| v.is_finite())
}

/// Item columns, most specific first (SAF-style files use `label` for a verdict, not an item).
const ITEM_FIELDS: &[&str] = &[
    "item",
    "item_label",
    "item_id",
    "question_id",
    "question_label",
    "label",
];
const STUDENT_FIELDS: &[&str] = &["student_ref", "student", "student_id", "id"];
const ANSWER_FIELDS: &[&str] = &["answer", "text", "response", "student_answer"];
const SCORE_FIELDS: &[&str] = &["score", "teacher_score", "mark", "marks", "points"];
const SPLIT_FIELDS: &[&str] = &["split", "set"];

/// A split name from a file: `train`, `validation` (`val`, `dev`), `test…`; empty is none.
pub fn parse_split(name: &str) -> Result<Option<Split>, String> {
    let key = name.trim().to_lowercase();
    Ok(match key.as_str() {
        "" | "unassigned" | "none" => None,
        "train" | "training" => Some(Split::Train),
        "validation" | "valid" | "val" | "dev" | "development" => Some(Split::Validation),
        k if k.starts_with("test") => Some(Split::Test),
        _ => {
            return Err(format!(
                "unknown split “{}”: use train, validation or test",
                name.trim()
            ))
        }
    })
}

/// The guide's items, findable by label (or by id).
struct ItemLookup {
    by_key: HashMap<String, guide_items::Model>,
    by_id: HashMap<i32, guide_items::Model>,
    labels: Vec<String>,
}

impl ItemLookup {
    fn new(items: Vec<guide_items::Model>) -> Self {
        let labels = items.iter().map(|i| i.label.clone()).collect();
        Self {
            by_key: items
                .iter()
                .map(|i| (label_key(&i.label), i.clone()))
                .collect(),
            by_id: items.into_iter().map(|i| (i.id, i)).collect(),
            labels,
        }
    }

    /// An item by label; a number that is no label may be the item's id.
    fn find(&self, given: &str) -> Option<&guide_items::Model> {
        self.by_key.get(&label_key(given)).or_else(|| {
            given
                .trim()
                .parse::<i32>()
                .ok()
                .and_then(|id| self.by_id.get(&id))
        })
    }

    fn unknown(&self, given: &str) -> String {
        let shown: Vec<&str> = self.labels.iter().take(12).map(String::as_str).collect();
        let more = if self.labels.len() > shown.len() {
            ", …"
        } else {
            ""
        };
        if self.labels.is_empty() {
            format!(
                "unknown item “{}”: this guide has no items yet",
                given.trim()
            )
        } else {
            format!(
                "unknown item “{}”: this guide's items are {}{more}",
                given.trim(),
                shown.join(", ")
            )
        }
    }
}

/// A row that passed its checks.
#[derive(Debug, Clone)]
struct GoodRow {
    line: usize,
    item_id: i32,
    max_marks: f64,
    student_ref: String,
    text: String,
    score: f64,
    split: Option<Split>,
}

fn check_row(row: &RawRow, items: &ItemLookup) -> Result<GoodRow, String> {
    let item_value = field(row, ITEM_FIELDS)
        .ok_or_else(|| "no item: give the item's label in an `item` column".to_owned())?;
    let item_name = as_text(item_value);
    let item = items
        .find(&item_name)
        .ok_or_else(|| items.unknown(&item_name))?;
    let text = field(row, ANSWER_FIELDS).map(as_text).unwrap_or_default();
    let text = text.trim().to_owned();
    if text.is_empty() {
        return Err("the answer is empty".into());
    }
    if text.chars().count() > MAX_ANSWER_CHARS {
        return Err(format!(
            "the answer is longer than {MAX_ANSWER_CHARS} characters"
        ));
    }
    let score_value = field(row, SCORE_FIELDS)
        .ok_or_else(|| "no score: give the teacher's mark in a `score` column".to_owned())?;
    let score = as_number(score_value).ok_or_else(|| {
        format!(
            "the score “{}” is not a number",
            as_text(score_value).trim()
        )
    })?;
    if score < 0.0 {
        return Err(format!("the score {score} is negative"));
    }
    if score > item.max_marks + 1e-9 {
        return Err(format!(
            "the score {score} is above item {}'s maximum of {} marks",
            item.label, item.max_marks
        ));
    }
    let student_ref = field(row, STUDENT_FIELDS)
        .map(|v| as_text(v).trim().to_owned())
        .unwrap_or_else(|| format!("line {}", row.line));
    if student_ref.chars().count() > MAX_STUDENT_REF_CHARS {
        return Err(format!(
            "the student reference is longer than {MAX_STUDENT_REF_CHARS} characters"
        ));
    }
    let split = match field(row, SPLIT_FIELDS) {
        Some(v) => parse_split(&as_text(v))?,
        None => None,
    };
    Ok(GoodRow {
        line: row.line,
        item_id: item.id,
        max_marks: item.max_marks,
        student_ref,
        text,
        score,
        split,
    })
}

// ---------------------------------------------------------------------------------------
// Splits
// ---------------------------------------------------------------------------------------

/// A stable pseudo-random rank of `key` under `seed`.
fn seeded_rank(seed: u64, key: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(seed.to_le_bytes())
        .chain_update(key.as_bytes())
        .finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

/// Assigns each of `rows` — `(stratum, unique key)` — to one of the `fractions.len()`
/// buckets. Rows are grouped by stratum and shuffled within it by a seeded hash of their
/// key; walking the strata in order, each row goes to the bucket furthest behind its
/// share. Every stratum is thus split in the given proportions (to within one row), the
/// totals are as close as they can be, and the result depends only on the seed and keys.
pub fn stratified_assign(rows: &[(String, String)], fractions: &[f64], seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| {
        rows[a]
            .0
            .cmp(&rows[b].0)
            .then(seeded_rank(seed, &rows[a].1).cmp(&seeded_rank(seed, &rows[b].1)))
            .then(rows[a].1.cmp(&rows[b].1))
    });
    let mut counts = vec![0usize; fractions.len()];
    let mut out = vec![0usize; rows.len()];
    for (k, &row) in order.iter().enumerate() {
        let seen = (k + 1) as f64;
        let bucket = (0..fractions.len())
            .max_by(|&a, &b| {
                let da = fractions[a] * seen - counts[a] as f64;
                let db = fractions[b] * seen - counts[b] as f64;
                da.total_cmp(&db).then(b.cmp(&a))
            })
            .unwrap_or(0);
        counts[bucket] += 1;
        out[row] = bucket;
    }
    out
}

const SPLITS: [Split; 3] = [Split::Train, Split::Validation, Split::Test];

/// The stratum of an answer: its item and its normalised score in quarters.
fn stratum(item_id: i32, score: f64, max_marks: f64) -> String {
    let quarter = if max_marks > 0.0 {
        ((score / max_marks) * 4.0).round() as i64
    } else {
        0
    };
    format!("{item_id:010}:{quarter}")
}

/// Fills in the splits of `rows`: file splits are kept unless `resplit`; the rest are
/// assigned by a stratified split; then `validation_from_train` of train moves to
/// validation.
fn assign_splits(rows: &mut [GoodRow], options: &ImportOptions) -> Result<(), AnswerError> {
    let fractions = options.fractions.normalised()?;
    let open: Vec<usize> = (0..rows.len())
        .filter(|&i| options.resplit || rows[i].split.is_none())
        .collect();
    let keys: Vec<(String, String)> = open
        .iter()
        .map(|&i| {
            let r = &rows[i];
            (
                stratum(r.item_id, r.score, r.max_marks),
                format!("{}\u{1f}{}\u{1f}{}", r.student_ref, r.line, r.text),
            )
        })
        .collect();
    for (&i, bucket) in open
        .iter()
        .zip(stratified_assign(&keys, &fractions, options.seed))
    {
        rows[i].split = Some(SPLITS[bucket]);
    }
    if let Some(share) = options.validation_from_train {
        if !share.is_finite() || !(0.0..1.0).contains(&share) {
            return Err(AnswerError::Invalid(
                "validationFromTrain must be at least 0 and below 1.".into(),
            ));
        }
        let train: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].split == Some(Split::Train))
            .collect();
        let keys: Vec<(String, String)> = train
            .iter()
            .map(|&i| {
                let r = &rows[i];
                (
                    stratum(r.item_id, r.score, r.max_marks),
                    format!("{}\u{1f}{}\u{1f}{}", r.student_ref, r.line, r.text),
                )
            })
            .collect();
        let buckets = stratified_assign(&keys, &[1.0 - share, share], options.seed ^ 0x5EED);
        for (&i, bucket) in train.iter().zip(buckets) {
            if bucket == 1 {
                rows[i].split = Some(Split::Validation);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------------------------

async fn find_duplicate_upload(
    db: &DatabaseConnection,
    user_id: i32,
    kind: &str,
    sha: &str,
) -> Result<Option<uploads::Model>, DbErr> {
    uploads::Entity::find()
        .filter(uploads::Column::UserId.eq(user_id))
        .filter(uploads::Column::Kind.eq(kind))
        .filter(uploads::Column::Sha256.eq(sha))
        .one(db)
        .await
}

async fn duplicate_message(db: &DatabaseConnection, upload: &uploads::Model) -> String {
    let answers = answers::Entity::find()
        .inner_join(submissions::Entity)
        .filter(submissions::Column::UploadId.eq(upload.id))
        .count(db)
        .await;
    let guide = match upload.guide_id {
        Some(id) => guides::Entity::find_by_id(id).one(db).await.ok().flatten(),
        None => None,
    };
    format!(
        "This file was already imported on {} as “{}”{}{} (upload {}); nothing was imported again.",
        upload.created_at.format("%Y-%m-%d"),
        upload.filename,
        guide
            .map(|g| format!(" into guide “{}”", g.title))
            .unwrap_or_default(),
        answers
            .map(|n| format!(" with {n} answers"))
            .unwrap_or_default(),
        upload.id
    )
}

/// Imports a CSV or JSONL file of teacher-scored answers into one of the caller's guides.
#[instrument(skip(state, source, options), fields(bytes = source.bytes.len()))]
pub async fn import(
    state: &AppState,
    user_id: i32,
    guide_id: i32,
    source: ImportSource,
    options: ImportOptions,
) -> Result<ImportReport, AnswerError> {
    let guide = owned_guide(&state.db, user_id, guide_id).await?;
    let sha = sha256_hex(&source.bytes);
    if let Some(existing) = find_duplicate_upload(&state.db, user_id, "answers", &sha).await? {
        return Err(AnswerError::Duplicate(
            duplicate_message(&state.db, &existing).await,
        ));
    }
    let (format, raw_rows, mut errors) =
        read_rows(&source.bytes, source.filename.as_deref(), options.format)?;
    let items = guide_items::Entity::find()
        .filter(guide_items::Column::GuideId.eq(guide.id))
        .all(&state.db)
        .await?;
    let lookup = ItemLookup::new(items);
    let mut good = Vec::with_capacity(raw_rows.len());
    for row in &raw_rows {
        match check_row(row, &lookup) {
            Ok(row) => good.push(row),
            Err(message) => errors.push(RowError {
                line: row.line,
                message,
            }),
        }
    }
    errors.sort_by_key(|e| e.line);
    let bad = errors.len();
    if bad > 0 && !options.skip_bad_rows {
        errors.truncate(MAX_REPORTED_ERRORS);
        return Err(AnswerError::Rows { errors, total: bad });
    }
    if good.is_empty() {
        return Err(AnswerError::Invalid(if bad > 0 {
            "No row of the file can be imported.".into()
        } else {
            "The file holds no answers: it needs a header row (CSV) and at least one answer.".into()
        }));
    }
    assign_splits(&mut good, &options)?;
    let filename = source
        .filename
        .as_deref()
        .map(display_filename)
        .unwrap_or_else(|| format!("pasted.{}", format.extension()));
    let upload = store_rows(state, user_id, &guide, &filename, source.bytes, &sha, &good).await?;
    let mut by_split = BTreeMap::new();
    for row in &good {
        *by_split
            .entry(row.split.unwrap_or(Split::Unassigned).as_str())
            .or_insert(0) += 1;
    }
    errors.truncate(MAX_REPORTED_ERRORS);
    Ok(ImportReport {
        upload,
        guide_id: guide.id,
        imported: good.len(),
        skipped: errors,
        skipped_count: bad,
        by_split,
    })
}

/// Stores the file and writes the upload, submission and answer rows in one transaction.
async fn store_rows(
    state: &AppState,
    user_id: i32,
    guide: &guides::Model,
    filename: &str,
    bytes: Vec<u8>,
    sha: &str,
    rows: &[GoodRow],
) -> Result<uploads::Model, AnswerError> {
    let store = BlobStore::new(state.settings.blob_dir());
    let size = bytes.len() as i64;
    let put = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.put(&bytes))
            .await
            .map_err(std::io::Error::other)??
    };
    let written = write_rows(
        &state.db, user_id, guide.id, filename, size, sha, &put.key, rows,
    )
    .await;
    match written {
        Ok(upload) => Ok(upload),
        Err(err) => {
            if put.created {
                let key = put.key.clone();
                let _ = tokio::task::spawn_blocking(move || store.delete(&key)).await;
            }
            if let AnswerError::Db(db_err) = &err {
                if matches!(db_err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
                    // Lost a race with an identical import.
                    if let Ok(Some(existing)) =
                        find_duplicate_upload(&state.db, user_id, "answers", sha).await
                    {
                        return Err(AnswerError::Duplicate(
                            duplicate_message(&state.db, &existing).await,
                        ));
                    }
                }
            }
            Err(err)
        }
    }
}

#[expect(clippy::too_many_arguments, reason = "one private call site")]
async fn write_rows(
    db: &DatabaseConnection,
    user_id: i32,
    guide_id: i32,
    filename: &str,
    size: i64,
    sha: &str,
    blob_key: &str,
    rows: &[GoodRow],
) -> Result<uploads::Model, AnswerError> {
    let now = Utc::now();
    let txn = db.begin().await?;
    let upload = uploads::ActiveModel {
        user_id: Set(user_id),
        guide_id: Set(Some(guide_id)),
        kind: Set("answers".to_owned()),
        sha256: Set(sha.to_owned()),
        filename: Set(filename.to_owned()),
        size_bytes: Set(size),
        blob_key: Set(blob_key.to_owned()),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    let mut students: Vec<&str> = Vec::new();
    let mut seen = HashSet::new();
    for row in rows {
        if seen.insert(row.student_ref.as_str()) {
            students.push(&row.student_ref);
        }
    }
    for chunk in students.chunks(CHUNK) {
        submissions::Entity::insert_many(chunk.iter().map(|student| submissions::ActiveModel {
            user_id: Set(user_id),
            guide_id: Set(guide_id),
            student_ref: Set((*student).to_owned()),
            source: Set("import".to_owned()),
            upload_id: Set(Some(upload.id)),
            created_at: Set(now),
            ..Default::default()
        }))
        .exec_without_returning(&txn)
        .await?;
    }
    let submission_ids: HashMap<String, i32> = submissions::Entity::find()
        .filter(submissions::Column::UploadId.eq(upload.id))
        .all(&txn)
        .await?
        .into_iter()
        .map(|s| (s.student_ref, s.id))
        .collect();
    for chunk in rows.chunks(CHUNK) {
        answers::Entity::insert_many(chunk.iter().map(|row| answers::ActiveModel {
            user_id: Set(user_id),
            guide_id: Set(guide_id),
            item_id: Set(row.item_id),
            submission_id: Set(submission_ids.get(&row.student_ref).copied()),
            student_ref: Set(row.student_ref.clone()),
            text: Set(row.text.clone()),
            teacher_score: Set(Some(row.score)),
            split: Set(row.split.unwrap_or(Split::Unassigned)),
            content_sha256: Set(sha256_hex(normalise_text(&row.text).as_bytes())),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }))
        .exec_without_returning(&txn)
        .await?;
    }
    txn.commit().await?;
    Ok(upload)
}

// ---------------------------------------------------------------------------------------
// Guides from item files
// ---------------------------------------------------------------------------------------

/// An item read from an items file.
#[derive(Debug, Clone, PartialEq)]
struct NewItem {
    label: String,
    question: String,
    model_answer: String,
    max_marks: f64,
    criteria: Vec<Criterion>,
}

const LABEL_FIELDS: &[&str] = &["label", "id", "item", "item_id", "item_label"];
const QUESTION_FIELDS: &[&str] = &["question", "question_text", "prompt"];
const MODEL_ANSWER_FIELDS: &[&str] = &["model_answer", "reference_answer", "reference", "answer"];
const MAX_FIELDS: &[&str] = &["max_marks", "max_score", "marks", "points", "max"];
const CRITERIA_FIELDS: &[&str] = &["criteria", "rubric"];

fn check_item_row(row: &RawRow) -> Result<NewItem, String> {
    let label = field(row, LABEL_FIELDS)
        .map(|v| as_text(v).trim().to_owned())
        .ok_or_else(|| "no label: give the item's label in a `label` (or `id`) field".to_owned())?;
    if label.chars().count() > MAX_LABEL_CHARS {
        return Err(format!(
            "the label is longer than {MAX_LABEL_CHARS} characters"
        ));
    }
    let question = field(row, QUESTION_FIELDS)
        .map(|v| as_text(v).trim().to_owned())
        .ok_or_else(|| "no question".to_owned())?;
    let model_answer = field(row, MODEL_ANSWER_FIELDS)
        .map(|v| as_text(v).trim().to_owned())
        .unwrap_or_default();
    if question.chars().count() > MAX_FIELD_CHARS || model_answer.chars().count() > MAX_FIELD_CHARS
    {
        return Err(format!(
            "a text is longer than {MAX_FIELD_CHARS} characters"
        ));
    }
    let max_value = field(row, MAX_FIELDS)
        .ok_or_else(|| "no maximum: give the item's marks in a `max_marks` field".to_owned())?;
    let max_marks = as_number(max_value)
        .ok_or_else(|| format!("the maximum “{}” is not a number", as_text(max_value)))?;
    if !(max_marks > 0.0 && max_marks <= MAX_MARKS) {
        return Err(format!(
            "the maximum must be above 0 and at most {MAX_MARKS}"
        ));
    }
    let criteria = match field(row, CRITERIA_FIELDS) {
        None => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|c| match c {
                Value::String(s) => Ok(Criterion {
                    description: s.trim().to_owned(),
                    marks: 0.0,
                }),
                Value::Object(o) => Ok(Criterion {
                    description: o
                        .get("description")
                        .map(as_text)
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                    marks: o.get("marks").and_then(as_number).unwrap_or(0.0),
                }),
                _ => Err("each criterion must be a text or {description, marks}".to_owned()),
            })
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|c| !c.description.is_empty())
            .collect(),
        Some(_) => return Err("`criteria` must be a list".into()),
    };
    Ok(NewItem {
        label,
        question,
        model_answer,
        max_marks,
        criteria,
    })
}

/// The guide text of items made from a file: what the guide shows and what its
/// duplicate check hashes.
fn items_text(items: &[NewItem]) -> String {
    let mut text = String::new();
    for item in items {
        text.push_str(&format!(
            "Question {} [{} marks]\n{}\n\nModel answer:\n{}\n",
            item.label, item.max_marks, item.question, item.model_answer
        ));
        for c in &item.criteria {
            text.push_str(&format!("- {} ({} marks)\n", c.description, c.marks));
        }
        text.push('\n');
    }
    text.trim_end().to_owned()
}

/// Creates a ready guide from a file of items (JSONL or CSV: `label`/`id`, `question`,
/// `model_answer`/`reference_answer`, `max_marks`/`max_score`, optional `criteria`), such
/// as a shared dataset's `items.jsonl`. Refused as a duplicate when the caller already has
/// a guide with the same items.
#[instrument(skip(state, source), fields(bytes = source.bytes.len()))]
pub async fn create_guide_from_items(
    state: &AppState,
    user_id: i32,
    title: &str,
    source: ImportSource,
) -> Result<guides::Model, AnswerError> {
    let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
    if title.is_empty() || title.chars().count() > 200 {
        return Err(AnswerError::Invalid(
            "A guide title must be between 1 and 200 characters long.".into(),
        ));
    }
    let (format, rows, mut errors) = read_rows(&source.bytes, source.filename.as_deref(), None)?;
    let mut items = Vec::new();
    let mut labels: HashMap<String, usize> = HashMap::new();
    for row in &rows {
        match check_item_row(row) {
            Ok(item) => {
                if let Some(first) = labels.insert(label_key(&item.label), row.line) {
                    errors.push(RowError {
                        line: row.line,
                        message: format!(
                            "the label “{}” repeats the item on line {first}; labels must be unique",
                            item.label
                        ),
                    });
                } else {
                    items.push(item);
                }
            }
            Err(message) => errors.push(RowError {
                line: row.line,
                message,
            }),
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.line);
        let total = errors.len();
        errors.truncate(MAX_REPORTED_ERRORS);
        return Err(AnswerError::Rows { errors, total });
    }
    if items.is_empty() {
        return Err(AnswerError::Invalid("The file holds no items.".into()));
    }
    if items.len() > MAX_ITEMS {
        return Err(AnswerError::Invalid(format!(
            "A guide can have at most {MAX_ITEMS} items."
        )));
    }
    let text = items_text(&items);
    let sha = sha256_hex(text.as_bytes());
    if let Some(existing) = guides::Entity::find()
        .filter(guides::Column::UserId.eq(user_id))
        .filter(guides::Column::ContentSha256.eq(&sha))
        .one(&state.db)
        .await?
    {
        return Err(AnswerError::Duplicate(format!(
            "This guide was already created as “{}” on {} (guide {}).",
            existing.title,
            existing.created_at.format("%Y-%m-%d"),
            existing.id
        )));
    }
    let store = BlobStore::new(state.settings.blob_dir());
    let file_sha = sha256_hex(&source.bytes);
    let size = source.bytes.len() as i64;
    let put = {
        let store = store.clone();
        let bytes = source.bytes;
        tokio::task::spawn_blocking(move || store.put(&bytes))
            .await
            .map_err(std::io::Error::other)??
    };
    let filename = source
        .filename
        .as_deref()
        .map(display_filename)
        .unwrap_or_else(|| format!("items.{}", format.extension()));
    let written = write_guide(
        &state.db, user_id, &title, &text, &sha, &filename, size, &file_sha, &put.key, &items,
    )
    .await;
    match written {
        Ok(guide) => Ok(guide),
        Err(err) => {
            if put.created {
                let key = put.key.clone();
                let _ = tokio::task::spawn_blocking(move || store.delete(&key)).await;
            }
            match &err {
                AnswerError::Db(db_err)
                    if matches!(db_err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) =>
                {
                    Err(AnswerError::Duplicate(
                        "This guide (or this items file) was already uploaded.".into(),
                    ))
                }
                _ => Err(err),
            }
        }
    }
}

#[expect(clippy::too_many_arguments, reason = "one private call site")]
async fn write_guide(
    db: &DatabaseConnection,
    user_id: i32,
    title: &str,
    text: &str,
    sha: &str,
    filename: &str,
    size: i64,
    file_sha: &str,
    blob_key: &str,
    items: &[NewItem],
) -> Result<guides::Model, AnswerError> {
    let now = Utc::now();
    let txn = db.begin().await?;
    let guide = guides::ActiveModel {
        user_id: Set(user_id),
        title: Set(title.to_owned()),
        filename: Set(Some(filename.to_owned())),
        mime: Set(Some("application/jsonl".to_owned())),
        content_sha256: Set(sha.to_owned()),
        blob_key: Set(Some(blob_key.to_owned())),
        text: Set(text.to_owned()),
        status: Set(GuideStatus::Ready),
        error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    uploads::ActiveModel {
        user_id: Set(user_id),
        guide_id: Set(Some(guide.id)),
        kind: Set("guide".to_owned()),
        sha256: Set(file_sha.to_owned()),
        filename: Set(filename.to_owned()),
        size_bytes: Set(size),
        blob_key: Set(blob_key.to_owned()),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    for (position, item) in items.iter().enumerate() {
        guide_items::ActiveModel {
            guide_id: Set(guide.id),
            position: Set(position as i32),
            label: Set(item.label.clone()),
            question: Set(item.question.clone()),
            model_answer: Set(item.model_answer.clone()),
            max_marks: Set(item.max_marks),
            rubric: Set(
                serde_json::to_value(&item.criteria).unwrap_or_else(|_| Value::Array(vec![]))
            ),
            // Items given by the teacher's file: re-extraction must keep them.
            edited: Set(true),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
    }
    txn.commit().await?;
    Ok(guide)
}

/// A guide from an items file and its answers from an answers file, as one step (a shared
/// dataset's `items.jsonl` + `answers.jsonl`). When the answers cannot be imported, the
/// new guide is removed again.
pub async fn import_dataset(
    state: &AppState,
    user_id: i32,
    title: &str,
    items: ImportSource,
    answers: ImportSource,
    options: ImportOptions,
) -> Result<(guides::Model, ImportReport), AnswerError> {
    let guide = create_guide_from_items(state, user_id, title, items).await?;
    match import(state, user_id, guide.id, answers, options).await {
        Ok(report) => Ok((guide, report)),
        Err(err) => {
            if let Err(cleanup) = crate::service::guides::delete(state, user_id, guide.id).await {
                tracing::warn!(error = %cleanup, guide = guide.id, "removing a half-imported dataset failed");
            }
            Err(err)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reading and re-splitting
// ---------------------------------------------------------------------------------------

/// Filters of an answers listing.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnswerFilter {
    /// Only this split.
    pub split: Option<Split>,
    /// Only this item.
    pub item_id: Option<i32>,
}

/// The caller's answers of a guide in id order, after the answer with id `after`.
pub async fn list(
    db: &DatabaseConnection,
    user_id: i32,
    guide_id: i32,
    filter: AnswerFilter,
    after: Option<i32>,
    limit: u64,
) -> Result<Vec<answers::Model>, AnswerError> {
    owned_guide(db, user_id, guide_id).await?;
    let mut query = answers::Entity::find()
        .filter(answers::Column::UserId.eq(user_id))
        .filter(answers::Column::GuideId.eq(guide_id));
    if let Some(split) = filter.split {
        query = query.filter(answers::Column::Split.eq(split));
    }
    if let Some(item) = filter.item_id {
        query = query.filter(answers::Column::ItemId.eq(item));
    }
    if let Some(after) = after {
        query = query.filter(answers::Column::Id.gt(after));
    }
    Ok(query
        .order_by_asc(answers::Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}

/// How many answers match a listing's filters.
pub async fn count(
    db: &DatabaseConnection,
    user_id: i32,
    guide_id: i32,
    filter: AnswerFilter,
) -> Result<u64, AnswerError> {
    let mut query = answers::Entity::find()
        .filter(answers::Column::UserId.eq(user_id))
        .filter(answers::Column::GuideId.eq(guide_id));
    if let Some(split) = filter.split {
        query = query.filter(answers::Column::Split.eq(split));
    }
    if let Some(item) = filter.item_id {
        query = query.filter(answers::Column::ItemId.eq(item));
    }
    Ok(query.count(db).await?)
}

/// One of the caller's answers.
pub async fn get(
    db: &DatabaseConnection,
    user_id: i32,
    id: i32,
) -> Result<answers::Model, AnswerError> {
    answers::Entity::find_by_id(id)
        .filter(answers::Column::UserId.eq(user_id))
        .one(db)
        .await?
        .ok_or(AnswerError::AnswerNotFound(id))
}

/// Answers of a guide per split and per item.
pub async fn summary(
    db: &DatabaseConnection,
    user_id: i32,
    guide_id: i32,
) -> Result<SplitSummary, AnswerError> {
    owned_guide(db, user_id, guide_id).await?;
    let items = guide_items::Entity::find()
        .filter(guide_items::Column::GuideId.eq(guide_id))
        .order_by_asc(guide_items::Column::Position)
        .order_by_asc(guide_items::Column::Id)
        .all(db)
        .await?;
    let rows: Vec<(i32, Split, Option<f64>)> = answers::Entity::find()
        .select_only()
        .column(answers::Column::ItemId)
        .column(answers::Column::Split)
        .column(answers::Column::TeacherScore)
        .filter(answers::Column::UserId.eq(user_id))
        .filter(answers::Column::GuideId.eq(guide_id))
        .into_tuple()
        .all(db)
        .await?;
    let mut per_item: HashMap<i32, ItemSplitCounts> = items
        .iter()
        .map(|i| {
            (
                i.id,
                ItemSplitCounts {
                    item_id: i.id,
                    label: i.label.clone(),
                    max_marks: i.max_marks,
                    train: 0,
                    validation: 0,
                    test: 0,
                    unassigned: 0,
                    scored: 0,
                    mean_normalised_score: None,
                },
            )
        })
        .collect();
    let mut sums: HashMap<i32, f64> = HashMap::new();
    let mut totals = [0usize; 4];
    let mut scored = 0;
    for (item_id, split, score) in &rows {
        let slot = match split {
            Split::Train => 0,
            Split::Validation => 1,
            Split::Test => 2,
            Split::Unassigned => 3,
        };
        totals[slot] += 1;
        if score.is_some() {
            scored += 1;
        }
        if let Some(counts) = per_item.get_mut(item_id) {
            match split {
                Split::Train => counts.train += 1,
                Split::Validation => counts.validation += 1,
                Split::Test => counts.test += 1,
                Split::Unassigned => counts.unassigned += 1,
            }
            if let Some(score) = score {
                counts.scored += 1;
                if counts.max_marks > 0.0 {
                    *sums.entry(*item_id).or_default() += score / counts.max_marks;
                }
            }
        }
    }
    let items = items
        .iter()
        .filter_map(|i| per_item.remove(&i.id))
        .map(|mut counts| {
            if counts.scored > 0 {
                counts.mean_normalised_score =
                    sums.get(&counts.item_id).map(|s| s / counts.scored as f64);
            }
            counts
        })
        .collect();
    Ok(SplitSummary {
        guide_id,
        total: rows.len(),
        scored,
        by_split: vec![
            (Split::Train, totals[0]),
            (Split::Validation, totals[1]),
            (Split::Test, totals[2]),
            (Split::Unassigned, totals[3]),
        ],
        items,
    })
}

/// Re-assigns every scored answer of a guide to train/validation/test with a seeded split
/// stratified by item and score.
#[instrument(skip(db))]
pub async fn resplit(
    db: &DatabaseConnection,
    user_id: i32,
    guide_id: i32,
    fractions: SplitFractions,
    seed: u64,
) -> Result<SplitSummary, AnswerError> {
    owned_guide(db, user_id, guide_id).await?;
    let fractions = fractions.normalised()?;
    let max: HashMap<i32, f64> = guide_items::Entity::find()
        .filter(guide_items::Column::GuideId.eq(guide_id))
        .all(db)
        .await?
        .into_iter()
        .map(|i| (i.id, i.max_marks))
        .collect();
    let rows: Vec<(i32, i32, Option<f64>)> = answers::Entity::find()
        .select_only()
        .column(answers::Column::Id)
        .column(answers::Column::ItemId)
        .column(answers::Column::TeacherScore)
        .filter(answers::Column::UserId.eq(user_id))
        .filter(answers::Column::GuideId.eq(guide_id))
        .filter(answers::Column::TeacherScore.is_not_null())
        .into_tuple()
        .all(db)
        .await?;
    let keys: Vec<(String, String)> = rows
        .iter()
        .map(|(id, item, score)| {
            (
                stratum(
                    *item,
                    score.unwrap_or_default(),
                    max.get(item).copied().unwrap_or(1.0),
                ),
                id.to_string(),
            )
        })
        .collect();
    let buckets = stratified_assign(&keys, &fractions, seed);
    let txn = db.begin().await?;
    for (split_index, split) in SPLITS.iter().enumerate() {
        let ids: Vec<i32> = rows
            .iter()
            .zip(&buckets)
            .filter(|(_, b)| **b == split_index)
            .map(|(row, _)| row.0)
            .collect();
        for chunk in ids.chunks(CHUNK) {
            answers::Entity::update_many()
                .col_expr(answers::Column::Split, Expr::value(*split))
                .col_expr(answers::Column::UpdatedAt, Expr::value(Utc::now()))
                .filter(answers::Column::Id.is_in(chunk.iter().copied()))
                .exec(&txn)
                .await?;
        }
    }
    txn.commit().await?;
    summary(db, user_id, guide_id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting_line_breaks_and_line_numbers() {
        let text = "item,answer,score\n1,\"Two, with a comma\",2\n\n2,\"Line one\nline two \"\"quoted\"\"\",1\r\n3,plain,0";
        let records = parse_csv(text, ',').unwrap_or_default();
        assert_eq!(records.len(), 4);
        assert_eq!(
            records[1],
            (2, vec!["1".into(), "Two, with a comma".into(), "2".into()])
        );
        assert_eq!(records[2].0, 4, "the blank line 3 is skipped");
        assert_eq!(records[2].1[1], "Line one\nline two \"quoted\"");
        assert_eq!(
            records[3],
            (6, vec!["3".into(), "plain".into(), "0".into()])
        );
        let broken = parse_csv("a,b\n1,\"never closed\n2,3", ',');
        assert_eq!(broken.err().map(|e| e.line), Some(2));
    }

    #[test]
    fn semicolon_and_tab_files_are_recognised() {
        let rows = csv_rows("Item;Answer;Score\n1a;Yes;1\n").unwrap_or_default();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].fields.get("answer"),
            Some(&Value::String("Yes".into()))
        );
        let rows = csv_rows("item\tanswer\tscore\n1a\tYes, really\t1\n").unwrap_or_default();
        assert_eq!(
            rows[0].fields.get("answer"),
            Some(&Value::String("Yes, really".into()))
        );
    }

    #[test]
    fn splits_are_stratified_deterministic_and_proportional() {
        // Two items × two score levels × 10 answers each.
        let rows: Vec<(String, String)> = (0..40)
            .map(|i| (format!("{}:{}", i % 2, (i / 2) % 2), format!("answer {i}")))
            .collect();
        let a = stratified_assign(&rows, &[0.6, 0.2, 0.2], 7);
        let b = stratified_assign(&rows, &[0.6, 0.2, 0.2], 7);
        assert_eq!(a, b, "same seed, same split");
        assert_ne!(a, stratified_assign(&rows, &[0.6, 0.2, 0.2], 8));
        let count = |bucket| a.iter().filter(|&&x| x == bucket).count();
        assert_eq!((count(0), count(1), count(2)), (24, 8, 8));
        for stratum in ["0:0", "0:1", "1:0", "1:1"] {
            let in_stratum: Vec<usize> = rows
                .iter()
                .zip(&a)
                .filter(|(r, _)| r.0 == stratum)
                .map(|(_, b)| *b)
                .collect();
            let val = in_stratum.iter().filter(|&&x| x == 1).count();
            assert!((1..=3).contains(&val), "{stratum}: {in_stratum:?}");
        }
    }

    #[test]
    fn split_names_from_files() {
        assert_eq!(parse_split("Train"), Ok(Some(Split::Train)));
        assert_eq!(parse_split("dev"), Ok(Some(Split::Validation)));
        assert_eq!(parse_split("test_unseen_answers"), Ok(Some(Split::Test)));
        assert_eq!(parse_split(""), Ok(None));
        assert!(parse_split("holdout").is_err());
    }
}
