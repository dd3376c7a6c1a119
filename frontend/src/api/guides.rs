//! Marking guides and their items: list, read, upload (file or pasted text), rename,
//! delete, re-extract, and edit, add, delete and reorder items
//! (`queries/{guides,guide,upload_guide,create_guide_from_text,…}.graphql`).

use graphql_client::GraphQLQuery;
use serde_json::Value;

use super::jobs::JobStatus;
use super::json::Read;
use super::upload::{self, Progress};
use super::{http, ApiError};

type DateTime = String;
/// The file travels as a multipart part; its variable is `null` in `operations`.
type Upload = ();

/// One typed operation per query file.
macro_rules! operation {
    ($name:ident, $path:tt) => {
        #[derive(GraphQLQuery)]
        #[graphql(schema_path = "../schema.graphql", query_path = $path, response_derives = "Serialize")]
        struct $name;
    };
}

operation!(Guides, "queries/guides.graphql");
operation!(Guide, "queries/guide.graphql");
operation!(UploadGuide, "queries/upload_guide.graphql");
operation!(
    CreateGuideFromText,
    "queries/create_guide_from_text.graphql"
);
operation!(RenameGuide, "queries/rename_guide.graphql");
operation!(DeleteGuide, "queries/delete_guide.graphql");
operation!(ReextractGuide, "queries/reextract_guide.graphql");
operation!(AddGuideItem, "queries/add_guide_item.graphql");
operation!(UpdateGuideItem, "queries/update_guide_item.graphql");
operation!(DeleteGuideItem, "queries/delete_guide_item.graphql");
operation!(ReorderGuideItems, "queries/reorder_guide_items.graphql");

/// Where a guide is in item extraction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuideStatus {
    /// Uploaded; extraction has not started.
    Pending,
    /// Items are being extracted.
    Extracting,
    /// Items extracted.
    Ready,
    /// Extraction failed.
    Failed,
}

impl GuideStatus {
    /// From its GraphQL name.
    fn from_name(name: &str) -> Self {
        match name {
            "EXTRACTING" => Self::Extracting,
            "READY" => Self::Ready,
            "FAILED" => Self::Failed,
            _ => Self::Pending,
        }
    }

    /// Human label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Pending => "Waiting",
            Self::Extracting => "Extracting",
            Self::Ready => "Ready",
            Self::Failed => "Failed",
        }
    }

    /// Badge style (`badge-<tone>`).
    pub fn tone(self) -> &'static str {
        match self {
            Self::Pending => "neutral",
            Self::Extracting => "info",
            Self::Ready => "ok",
            Self::Failed => "bad",
        }
    }

    /// Whether extraction is still to finish.
    pub fn is_busy(self) -> bool {
        matches!(self, Self::Pending | Self::Extracting)
    }
}

/// How items are extracted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Method {
    /// The model when configured, else the built-in parser.
    #[default]
    Auto,
    /// The language model only.
    Llm,
    /// The built-in parser only.
    Parser,
}

impl Method {
    /// All methods, for a select.
    pub const ALL: [Self; 3] = [Self::Auto, Self::Llm, Self::Parser];

    /// The GraphQL name, also the `<option>` value.
    pub fn key(self) -> &'static str {
        match self {
            Self::Auto => "AUTO",
            Self::Llm => "LLM",
            Self::Parser => "PARSER",
        }
    }

    /// From an `<option>` value.
    pub fn from_key(key: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|method| method.key() == key)
            .unwrap_or_default()
    }

    /// Human label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Auto => "Automatic (language model, parser as fallback)",
            Self::Llm => "Language model only",
            Self::Parser => "Built-in parser only (fast, for well-formatted guides)",
        }
    }
}

/// `method` as operation module `$module`'s generated `ExtractionMethod` (a plain match:
/// converting through the GraphQL name with serde would put a deserializer in the wasm).
macro_rules! extraction_method {
    ($module:ident, $method:expr) => {
        match $method {
            Method::Auto => $module::ExtractionMethod::AUTO,
            Method::Llm => $module::ExtractionMethod::LLM,
            Method::Parser => $module::ExtractionMethod::PARSER,
        }
    };
}

/// A guide as lists show it.
#[derive(Clone, Debug, PartialEq)]
pub struct GuideSummary {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Uploaded file name; `None` for pasted text.
    pub filename: Option<String>,
    /// Extraction status.
    pub status: GuideStatus,
    /// Number of items.
    pub item_count: i64,
    /// Sum of maximum marks.
    pub total_marks: f64,
    /// Upload time (RFC 3339).
    pub created_at: String,
}

impl GuideSummary {
    /// Reads a guide of `guides.graphql` or `dashboard.graphql`.
    pub(super) fn read(guide: &Value) -> Self {
        Self {
            id: guide.text("id"),
            title: guide.text("title"),
            filename: guide.opt_text("filename"),
            status: GuideStatus::from_name(&guide.text("status")),
            item_count: guide.int("itemCount"),
            total_marks: guide.num("totalMarks"),
            created_at: guide.text("createdAt"),
        }
    }
}

/// One page of the guide list.
#[derive(Clone, Debug, PartialEq)]
pub struct GuidePage {
    /// How many guides the user has.
    pub total: i64,
    /// This page, newest first.
    pub guides: Vec<GuideSummary>,
    /// Cursor of the next page, if any.
    pub next: Option<String>,
}

/// One rubric criterion.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Criterion {
    /// What earns the marks.
    pub description: String,
    /// Marks.
    pub marks: f64,
}

/// One question of a guide.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Item {
    /// Id.
    pub id: String,
    /// Label such as `1(b)`.
    pub label: String,
    /// The question.
    pub question: String,
    /// The model answer.
    pub model_answer: String,
    /// Marks available.
    pub max_marks: f64,
    /// Rubric criteria.
    pub rubric: Vec<Criterion>,
    /// Whether the teacher changed or added it.
    pub edited: bool,
    /// Local revision, bumped by each save so the page redraws the item.
    pub rev: u32,
}

impl Item {
    fn read(item: &Value) -> Self {
        Self {
            id: item.text("id"),
            label: item.text("label"),
            question: item.text("question"),
            model_answer: item.text("modelAnswer"),
            max_marks: item.num("maxMarks"),
            rubric: item
                .list("rubric")
                .iter()
                .map(|criterion| Criterion {
                    description: criterion.text("description"),
                    marks: criterion.num("marks"),
                })
                .collect(),
            edited: item.flag("edited"),
            rev: 0,
        }
    }
}

/// The extraction job of a guide.
#[derive(Clone, Debug, PartialEq)]
pub struct ExtractionJob {
    /// Job id (for `jobEvents`).
    pub id: String,
    /// Its status.
    pub status: JobStatus,
    /// Fraction done.
    pub progress: f64,
}

/// A guide with its items.
#[derive(Clone, Debug, PartialEq)]
pub struct GuideDetail {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Uploaded file name.
    pub filename: Option<String>,
    /// Extraction status.
    pub status: GuideStatus,
    /// Why extraction failed.
    pub error: Option<String>,
    /// Upload time.
    pub created_at: String,
    /// The items, in order.
    pub items: Vec<Item>,
    /// The latest extraction job.
    pub job: Option<ExtractionJob>,
}

/// What a new guide was created as.
#[derive(Clone, Debug, PartialEq)]
pub struct Created {
    /// The new guide's id.
    pub guide_id: String,
}

/// The caller's guides, newest first.
pub async fn list(first: i64, after: Option<String>) -> Result<GuidePage, ApiError> {
    let data = http::post::<Guides>(guides::Variables { first, after }).await?;
    Ok(read_page(data.at("guides")))
}

fn read_page(page: &Value) -> GuidePage {
    let info = page.at("pageInfo");
    GuidePage {
        total: page.int("totalCount"),
        next: info
            .flag("hasNextPage")
            .then(|| info.opt_text("endCursor"))
            .flatten(),
        guides: page.list("nodes").iter().map(GuideSummary::read).collect(),
    }
}

/// One guide with its items.
pub async fn get(id: String) -> Result<GuideDetail, ApiError> {
    let data = http::post::<Guide>(guide::Variables { id }).await?;
    Ok(read_detail(data.at("guide")))
}

fn read_detail(guide: &Value) -> GuideDetail {
    let job = guide.at("extractionJob");
    GuideDetail {
        id: guide.text("id"),
        title: guide.text("title"),
        filename: guide.opt_text("filename"),
        status: GuideStatus::from_name(&guide.text("status")),
        error: guide.opt_text("error"),
        created_at: guide.text("createdAt"),
        items: guide.list("items").iter().map(Item::read).collect(),
        job: (!job.is_null()).then(|| ExtractionJob {
            id: job.text("id"),
            status: JobStatus::from_name(&job.text("status")),
            progress: job.num("progress"),
        }),
    }
}

/// Uploads a guide file, reporting bytes sent, and starts extracting its items.
pub async fn upload(
    file: &web_sys::File,
    title: Option<String>,
    how: Method,
    on_progress: impl Fn(Progress) + 'static,
) -> Result<Created, ApiError> {
    let variables = upload_guide::Variables {
        file: (),
        title,
        method: extraction_method!(upload_guide, how),
    };
    let data = upload::post_file::<UploadGuide>(variables, "file", file, on_progress).await?;
    Ok(Created {
        guide_id: data.at("uploadGuide").at("guide").text("id"),
    })
}

/// Creates a guide from pasted text and starts extracting its items.
pub async fn create_from_text(
    title: String,
    text: String,
    how: Method,
) -> Result<Created, ApiError> {
    let variables = create_guide_from_text::Variables {
        title,
        text,
        method: extraction_method!(create_guide_from_text, how),
    };
    let data = http::post::<CreateGuideFromText>(variables).await?;
    Ok(Created {
        guide_id: data.at("createGuideFromText").at("guide").text("id"),
    })
}

/// Renames a guide; returns the title as stored.
pub async fn rename(id: String, title: String) -> Result<String, ApiError> {
    let data = http::post::<RenameGuide>(rename_guide::Variables { id, title }).await?;
    Ok(data.at("renameGuide").text("title"))
}

/// Deletes a guide with its items and jobs.
pub async fn delete(id: String) -> Result<(), ApiError> {
    http::post::<DeleteGuide>(delete_guide::Variables { id }).await?;
    Ok(())
}

/// Extracts the items again (edited items are kept); returns the job's id.
pub async fn reextract(id: String, how: Method) -> Result<String, ApiError> {
    let variables = reextract_guide::Variables {
        id,
        method: extraction_method!(reextract_guide, how),
    };
    let data = http::post::<ReextractGuide>(variables).await?;
    Ok(data.at("reextractGuide").text("id"))
}

/// Adds an item at the end.
pub async fn add_item(guide_id: String, item: Item) -> Result<Item, ApiError> {
    let input = add_guide_item::GuideItemInput {
        label: item.label,
        question: item.question,
        model_answer: item.model_answer,
        max_marks: item.max_marks,
        rubric: item
            .rubric
            .into_iter()
            .map(|c| add_guide_item::RubricCriterionInput {
                description: c.description,
                marks: c.marks,
            })
            .collect(),
    };
    let variables = add_guide_item::Variables {
        guide_id,
        input,
        position: None,
    };
    let data = http::post::<AddGuideItem>(variables).await?;
    Ok(Item::read(data.at("addGuideItem")))
}

/// Saves every field of an item.
pub async fn update_item(item: Item) -> Result<Item, ApiError> {
    let patch = update_guide_item::GuideItemPatch {
        label: Some(item.label),
        question: Some(item.question),
        model_answer: Some(item.model_answer),
        max_marks: Some(item.max_marks),
        rubric: Some(
            item.rubric
                .into_iter()
                .map(|c| update_guide_item::RubricCriterionInput {
                    description: c.description,
                    marks: c.marks,
                })
                .collect(),
        ),
    };
    let variables = update_guide_item::Variables { id: item.id, patch };
    let data = http::post::<UpdateGuideItem>(variables).await?;
    Ok(Item::read(data.at("updateGuideItem")))
}

/// Deletes an item.
pub async fn delete_item(id: String) -> Result<(), ApiError> {
    http::post::<DeleteGuideItem>(delete_guide_item::Variables { id }).await?;
    Ok(())
}

/// Puts the items in the order of `item_ids` (every item once).
pub async fn reorder(guide_id: String, item_ids: Vec<String>) -> Result<(), ApiError> {
    http::post::<ReorderGuideItems>(reorder_guide_items::Variables { guide_id, item_ids }).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::json::typed;
    use serde_json::json;

    fn item() -> Value {
        json!({
            "id": "3", "label": "1(a)", "question": "Name the pigment.", "modelAnswer": "Chlorophyll",
            "maxMarks": 2.0, "rubric": [{ "description": "Names chlorophyll", "marks": 2.0 }],
            "edited": true,
        })
    }

    fn summary() -> Value {
        json!({
            "id": "9", "title": "Biology mock", "filename": "bio.docx", "status": "READY",
            "itemCount": 4, "totalMarks": 12.5, "createdAt": "2026-05-30T10:00:00Z",
        })
    }

    #[test]
    fn reads_the_guide_list() {
        let data = typed::<Guides>(json!({ "guides": {
            "totalCount": 30,
            "pageInfo": { "hasNextPage": true, "endCursor": "abc" },
            "nodes": [summary()],
        }}));
        let page = read_page(data.at("guides"));
        assert_eq!(page.total, 30);
        assert_eq!(page.next.as_deref(), Some("abc"));
        assert_eq!(
            page.guides,
            vec![GuideSummary {
                id: "9".into(),
                title: "Biology mock".into(),
                filename: Some("bio.docx".into()),
                status: GuideStatus::Ready,
                item_count: 4,
                total_marks: 12.5,
                created_at: "2026-05-30T10:00:00Z".into(),
            }]
        );
    }

    #[test]
    fn reads_a_guide_with_items_and_job() {
        let data = typed::<Guide>(json!({ "guide": {
            "id": "9", "title": "Biology mock", "filename": null, "status": "EXTRACTING",
            "error": null, "createdAt": "2026-05-30T10:00:00Z", "totalMarks": 2.0,
            "items": [item()],
            "extractionJob": { "id": "4", "status": "RUNNING", "progress": 0.5 },
        }}));
        let guide = read_detail(data.at("guide"));
        assert_eq!(guide.status, GuideStatus::Extracting);
        assert_eq!(guide.filename, None);
        assert_eq!(guide.items.len(), 1);
        let first = &guide.items[0];
        assert_eq!(first.label, "1(a)");
        assert_eq!(first.model_answer, "Chlorophyll");
        assert!(first.edited);
        assert_eq!(first.rubric[0].description, "Names chlorophyll");
        let job = guide.job.expect("a job");
        assert_eq!((job.id.as_str(), job.status), ("4", JobStatus::Running));
        assert!((job.progress - 0.5).abs() < f64::EPSILON);
    }

    #[test]
    fn reads_mutation_results() {
        let added = typed::<AddGuideItem>(json!({ "addGuideItem": item() }));
        assert_eq!(Item::read(added.at("addGuideItem")).max_marks, 2.0);
        let updated = typed::<UpdateGuideItem>(json!({ "updateGuideItem": item() }));
        assert_eq!(Item::read(updated.at("updateGuideItem")).id, "3");
        let uploaded = typed::<UploadGuide>(json!({ "uploadGuide": { "guide": { "id": "5" } } }));
        assert_eq!(uploaded.at("uploadGuide").at("guide").text("id"), "5");
        let pasted = typed::<CreateGuideFromText>(
            json!({ "createGuideFromText": { "guide": { "id": "6" } } }),
        );
        assert_eq!(pasted.at("createGuideFromText").at("guide").text("id"), "6");
        let renamed = typed::<RenameGuide>(json!({ "renameGuide": { "title": "New" } }));
        assert_eq!(renamed.at("renameGuide").text("title"), "New");
        let job = typed::<ReextractGuide>(json!({ "reextractGuide": { "id": "8" } }));
        assert_eq!(job.at("reextractGuide").text("id"), "8");
        typed::<DeleteGuide>(json!({ "deleteGuide": "9" }));
        typed::<DeleteGuideItem>(json!({ "deleteGuideItem": { "id": "9" } }));
        typed::<ReorderGuideItems>(json!({ "reorderGuideItems": [{ "id": "3" }] }));
    }

    #[test]
    fn methods_have_their_graphql_names() {
        for method in Method::ALL {
            assert_eq!(Method::from_key(method.key()), method);
            for generated in [
                serde_json::to_value(extraction_method!(upload_guide, method)),
                serde_json::to_value(extraction_method!(create_guide_from_text, method)),
                serde_json::to_value(extraction_method!(reextract_guide, method)),
            ] {
                assert_eq!(generated.ok(), Some(json!(method.key())));
            }
        }
    }
}
