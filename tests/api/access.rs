//! Access control generated from the committed `schema.graphql`: every query, mutation and
//! subscription that takes an id is called with another user's ids and must answer NOT_FOUND,
//! and every operation but signing up/in refuses an anonymous caller with UNAUTHENTICATED.
//!
//! New fields are covered as soon as they are in the schema: nothing here lists them by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_graphql_parser::types::{
    BaseType, FieldDefinition, InputValueDefinition, Type, TypeKind, TypeSystemDefinition,
};
use gradelab_tests::{spawn_app, workspace_root, GqlResponse, TestApp};
use serde_json::{json, Value};

use crate::training::{saf_guide, wait_for_job};

/// Operations an anonymous caller may use, and why.
const PUBLIC: &[&str] = &[
    // Creating an account and signing in are how a caller gets a token.
    "Mutation.signUp",
    "Mutation.signIn",
    // Liveness for load balancers and the sign-in page.
    "Query.health",
];

/// The committed schema, parsed.
struct Schema {
    types: BTreeMap<String, TypeKind>,
}

/// One root field to call.
struct Operation {
    root: &'static str,
    field: FieldDefinition,
}

impl Schema {
    fn load() -> Self {
        let path = workspace_root().join("schema.graphql");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        let document = async_graphql_parser::parse_schema(&text).expect("schema.graphql parses");
        let types = document
            .definitions
            .into_iter()
            .filter_map(|definition| match definition {
                TypeSystemDefinition::Type(ty) => {
                    let ty = ty.node;
                    Some((ty.name.node.to_string(), ty.kind))
                }
                _ => None,
            })
            .collect();
        Self { types }
    }

    fn operations(&self) -> Vec<Operation> {
        let mut operations = Vec::new();
        for root in ["Query", "Mutation", "Subscription"] {
            if let Some(TypeKind::Object(object)) = self.types.get(root) {
                for field in &object.fields {
                    operations.push(Operation {
                        root,
                        field: field.node.clone(),
                    });
                }
            }
        }
        operations
    }

    /// Whether a value of this type can carry an id.
    fn carries_id(&self, ty: &Type, seen: &mut BTreeSet<String>) -> bool {
        match &ty.base {
            BaseType::List(inner) => self.carries_id(inner, seen),
            BaseType::Named(name) if name.as_str() == "ID" => true,
            BaseType::Named(name) => match self.types.get(name.as_str()) {
                Some(TypeKind::InputObject(input)) if seen.insert(name.to_string()) => input
                    .fields
                    .iter()
                    .any(|field| self.carries_id(&field.node.ty.node, seen)),
                _ => false,
            },
        }
    }

    /// A GraphQL literal of this type, or `None` to leave the value out. Required values are
    /// always given; optional ones only when they carry an id and are the one optional
    /// id-bearing value `sample.variant` picks (so "exactly one of" inputs stay valid).
    fn literal(&self, ty: &Type, required: bool, sample: &mut Sample) -> Option<String> {
        if !required {
            if !self.carries_id(ty, &mut BTreeSet::new()) {
                return None;
            }
            let position = sample.optional_positions;
            sample.optional_positions += 1;
            if position != sample.variant {
                return None;
            }
        }
        Some(match &ty.base {
            BaseType::List(inner) => format!("[{}]", self.literal(inner, true, sample)?),
            BaseType::Named(name) => match name.as_str() {
                "ID" => {
                    sample.ids_used += 1;
                    json!(sample.id).to_string()
                }
                "String" => json!("x").to_string(),
                "Int" => "1".to_owned(),
                "Float" => "1.0".to_owned(),
                "Boolean" => "false".to_owned(),
                "DateTime" => json!("2026-01-01T00:00:00Z").to_string(),
                "JSON" => "{}".to_owned(),
                "Upload" => {
                    let variable = format!("file{}", sample.uploads.len());
                    sample.uploads.push(variable.clone());
                    format!("${variable}")
                }
                other => match self.types.get(other) {
                    Some(TypeKind::Enum(values)) => values.values[0].node.value.node.to_string(),
                    Some(TypeKind::InputObject(input)) => {
                        let fields: Vec<String> = input
                            .fields
                            .iter()
                            .filter_map(|field| self.argument(&field.node, sample))
                            .collect();
                        format!("{{ {} }}", fields.join(", "))
                    }
                    _ => panic!("no sample value for type {other}"),
                },
            },
        })
    }

    fn argument(&self, input: &InputValueDefinition, sample: &mut Sample) -> Option<String> {
        let ty = &input.ty.node;
        let required = !ty.nullable && input.default_value.is_none();
        self.literal(ty, required, sample)
            .map(|value| format!("{}: {value}", input.name.node))
    }

    /// `{ __typename }` for composite results, nothing for scalars and enums.
    fn selection(&self, ty: &Type) -> &'static str {
        match &ty.base {
            BaseType::List(inner) => self.selection(inner),
            BaseType::Named(name) => match self.types.get(name.as_str()) {
                Some(TypeKind::Object(_) | TypeKind::Interface(_) | TypeKind::Union(_)) => {
                    " { __typename }"
                }
                _ => "",
            },
        }
    }

    /// The documents calling `operation` with its ids set to `id`: one per optional
    /// id-bearing value, and one with only the required ids.
    fn documents(&self, operation: &Operation, id: &str) -> Vec<Document> {
        let mut documents = Vec::new();
        let mut variant = 0;
        loop {
            let mut sample = Sample {
                id: id.to_owned(),
                variant,
                ..Sample::default()
            };
            let document = self.document(operation, &mut sample);
            if sample.ids_used > 0 {
                documents.push(document);
            }
            if variant >= sample.optional_positions {
                return documents;
            }
            variant += 1;
        }
    }

    fn document(&self, operation: &Operation, sample: &mut Sample) -> Document {
        let field = &operation.field;
        let arguments: Vec<String> = field
            .arguments
            .iter()
            .filter_map(|argument| self.argument(&argument.node, sample))
            .collect();
        let keyword = match operation.root {
            "Query" => "query",
            "Mutation" => "mutation",
            _ => "subscription",
        };
        let variables = if sample.uploads.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = sample
                .uploads
                .iter()
                .map(|u| format!("${u}: Upload!"))
                .collect();
            format!("({})", list.join(", "))
        };
        let arguments = if arguments.is_empty() {
            String::new()
        } else {
            format!("({})", arguments.join(", "))
        };
        Document {
            text: format!(
                "{keyword}{variables} {{ {}{arguments}{} }}",
                field.name.node,
                self.selection(&field.ty.node)
            ),
            uploads: sample.uploads.clone(),
        }
    }
}

/// How one document is being filled in.
#[derive(Default)]
struct Sample {
    /// The id every id position gets.
    id: String,
    /// Which optional id-bearing value to give (by order of appearance).
    variant: usize,
    /// Optional id-bearing values seen so far.
    optional_positions: usize,
    /// Ids written.
    ids_used: usize,
    /// `Upload` variables.
    uploads: Vec<String>,
}

/// One generated request.
struct Document {
    text: String,
    uploads: Vec<String>,
}

impl Operation {
    fn name(&self) -> String {
        format!("{}.{}", self.root, self.field.name.node)
    }
}

/// Sends `document`, attaching a small text file for each `Upload` variable.
async fn call(
    app: &TestApp,
    token: Option<&str>,
    document: &str,
    uploads: &[String],
) -> GqlResponse {
    if uploads.is_empty() {
        return app.graphql(token, document, json!({})).await;
    }
    let variables: serde_json::Map<String, Value> =
        uploads.iter().map(|u| (u.clone(), Value::Null)).collect();
    let map: serde_json::Map<String, Value> = uploads
        .iter()
        .enumerate()
        .map(|(index, u)| (index.to_string(), json!([format!("variables.{u}")])))
        .collect();
    let operations = json!({ "query": document, "variables": variables });
    let mut form = reqwest::multipart::Form::new()
        .text("operations", operations.to_string())
        .text("map", Value::Object(map).to_string());
    for index in 0..uploads.len() {
        form = form.part(
            index.to_string(),
            reqwest::multipart::Part::bytes(b"label,answer\n1,x\n".to_vec())
                .file_name("sample.csv"),
        );
    }
    let mut request = app
        .client
        .post(format!("{}/graphql", app.base_url))
        .multipart(form);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let body: Value = request
        .send()
        .await
        .expect("request reaches the server")
        .json()
        .await
        .expect("JSON response");
    GqlResponse {
        data: body.get("data").cloned().unwrap_or(Value::Null),
        errors: body
            .get("errors")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    }
}

/// The error code of the first message of a subscription: an execution error arrives as a
/// `next` whose payload carries `errors`, a refused operation as an `error`.
async fn subscription_error(app: &TestApp, token: Option<&str>, document: &str) -> String {
    let mut subscription = match app.subscribe(token, document).await {
        Ok(subscription) => subscription,
        Err(err) => return format!("connection refused: {err}"),
    };
    let message = tokio::time::timeout(Duration::from_secs(10), subscription.next_message())
        .await
        .map_err(|_| "no message in 10 s".to_owned())
        .and_then(|m| m.map_err(|err| err.to_string()));
    let message = match message {
        Ok(message) => message,
        Err(err) => return err,
    };
    let errors = match message["type"].as_str() {
        Some("next") if message["payload"]["data"].is_null() => &message["payload"]["errors"],
        Some("error") => &message["payload"],
        _ => return format!("got {message}"),
    };
    errors[0]["extensions"]["code"]
        .as_str()
        .map_or_else(|| format!("error without a code: {message}"), str::to_owned)
}

/// The error code of a query or mutation, or what it answered instead.
fn outcome(response: &GqlResponse) -> String {
    match (response.error_code(), response.errors.first()) {
        (Some(code), _) => code.to_owned(),
        (None, Some(error)) => format!("error without a code: {error}"),
        (None, None) => format!("answered {}", response.data),
    }
}

/// Every id `owner` can see, collected from the API itself.
async fn ids_of(app: &TestApp, token: &str, guide: &Value) -> BTreeSet<String> {
    let data = app
        .graphql(
            Some(token),
            "{ guides { edges { node { id items { id } } } }
               jobs { id }
               apiTokens { id } }",
            json!({}),
        )
        .await
        .ok();
    let mut ids = BTreeSet::new();
    collect_ids(&data, &mut ids);
    {
        let data = app
            .graphql(
                Some(token),
                "query($g: ID!) { answers(guideId: $g, first: 5) { edges { node { id } } }
                   graders(guideId: $g) { id versions { id } } }",
                json!({ "g": guide }),
            )
            .await
            .ok();
        collect_ids(&data, &mut ids);
    }
    ids
}

fn collect_ids(value: &Value, ids: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("id", Value::String(id)) => {
                        ids.insert(id.clone());
                    }
                    _ => collect_ids(value, ids),
                }
            }
        }
        Value::Array(values) => values.iter().for_each(|v| collect_ids(v, ids)),
        _ => {}
    }
}

#[tokio::test]
async fn every_operation_taking_an_id_reads_another_users_objects_as_not_found() {
    let app = spawn_app().await;
    let alice = app.sign_up("Alice").await;
    let guide = saf_guide(&app, &alice.token, &["4.13"], 12).await;
    let input =
        json!({ "guideId": guide, "engine": "SIMILARITY", "epochs": 1, "patience": 1, "seed": 1 });
    let started = app
        .graphql(
            Some(&alice.token),
            "mutation($input: TrainingInput!) { startTraining(input: $input) { id } }",
            json!({ "input": input }),
        )
        .await
        .ok();
    let job = started["startTraining"]["id"].clone();
    let finished = wait_for_job(&app, &alice.token, &job, Duration::from_secs(300)).await;
    assert_eq!(finished["status"], "SUCCEEDED", "{finished}");
    app.graphql(
        Some(&alice.token),
        "mutation { createApiToken(name: \"ci\") { token } }",
        json!({}),
    )
    .await
    .ok();
    let alices_ids = ids_of(&app, &alice.token, &guide).await;
    // Ids count per table, so these few cover her guide, items, answers, jobs, grader,
    // versions and token alike.
    assert!(alices_ids.len() >= 3, "Alice owns objects: {alices_ids:?}");
    let before = ids_of(&app, &alice.token, &guide).await;

    // Bob owns nothing but his session, so every id he can name is Alice's or no one's.
    let bob = app.sign_up("Bob").await;
    let schema = Schema::load();
    let mut tried = 0;
    let mut leaks = Vec::new();
    for operation in schema.operations() {
        let takes_id = operation
            .field
            .arguments
            .iter()
            .any(|a| schema.carries_id(&a.node.ty.node, &mut BTreeSet::new()));
        if !takes_id {
            continue;
        }
        for id in &alices_ids {
            for document in schema.documents(&operation, id) {
                tried += 1;
                let code = if operation.root == "Subscription" {
                    subscription_error(&app, Some(&bob.token), &document.text).await
                } else {
                    let response =
                        call(&app, Some(&bob.token), &document.text, &document.uploads).await;
                    outcome(&response)
                };
                if code != "NOT_FOUND" {
                    leaks.push(format!(
                        "{} with id {id}: {code}\n    {}",
                        operation.name(),
                        document.text
                    ));
                }
            }
        }
    }
    assert!(tried > 100, "only {tried} calls were generated");
    assert!(
        leaks.is_empty(),
        "{} of {tried} calls with another user's ids did not answer NOT_FOUND:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
    // And nothing of Alice's was touched by the attempts.
    assert_eq!(ids_of(&app, &alice.token, &guide).await, before);
}

#[tokio::test]
async fn every_operation_refuses_an_anonymous_caller() {
    let app = spawn_app().await;
    let schema = Schema::load();
    let mut refused = 0;
    let mut open = Vec::new();
    for operation in schema.operations() {
        let name = operation.name();
        if PUBLIC.contains(&name.as_str()) {
            continue;
        }
        let mut sample = Sample {
            id: "1".to_owned(),
            ..Sample::default()
        };
        let Document {
            text: document,
            uploads,
        } = schema.document(&operation, &mut sample);
        let code = if operation.root == "Subscription" {
            subscription_error(&app, None, &document).await
        } else {
            outcome(&call(&app, None, &document, &uploads).await)
        };
        if code == "UNAUTHENTICATED" {
            refused += 1;
        } else {
            open.push(format!("{name}: {code}\n    {document}"));
        }
    }
    assert!(refused > 30, "only {refused} operations were tried");
    assert!(
        open.is_empty(),
        "operations an anonymous caller reached:\n{}",
        open.join("\n")
    );
}
