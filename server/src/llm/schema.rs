//! JSON Schemas for structured output, derived with `schemars` and made strict.
//!
//! OpenAI's strict mode accepts a subset of JSON Schema: every object must list all its
//! properties in `required` and set `additionalProperties: false` (an `Option` field is
//! therefore required-but-nullable), and number `format`s such as `uint32` are not allowed.
//! llama.cpp and vLLM compile the same schema into a grammar. Subschemas are inlined so no
//! `$ref` is needed (the grading types are not recursive).

use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use schemars::JsonSchema;
use serde_json::{Map, Value};

/// A strict JSON Schema for the reply, with the name sent as `json_schema.name`.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputSchema {
    /// `[A-Za-z0-9_-]{1,64}`, derived from the Rust type's name.
    pub name: String,
    /// The schema object.
    pub schema: Value,
}

impl OutputSchema {
    /// The strict schema of `T`.
    pub fn of<T: JsonSchema>() -> Self {
        let generator = SchemaSettings::draft2020_12()
            .with(|settings| {
                settings.inline_subschemas = true;
                settings.meta_schema = None;
            })
            .with_transform(RecursiveTransform(make_strict))
            .into_generator();
        let schema = generator.into_root_schema_for::<T>();
        Self {
            name: sanitize_name(&T::schema_name()),
            schema: schema.to_value(),
        }
    }

    /// Sets a keyword on a top-level property, e.g. `("score", "maximum", 4)` so the model
    /// cannot exceed an item's marks. A missing property is ignored.
    pub fn with_property_keyword(
        mut self,
        property: &str,
        keyword: &str,
        value: impl Into<Value>,
    ) -> Self {
        if let Some(Value::Object(prop)) =
            self.schema.pointer_mut(&format!("/properties/{property}"))
        {
            prop.insert(keyword.to_owned(), value.into());
        }
        self
    }
}

/// Makes one (sub)schema strict: all properties required, no extra properties, no number
/// formats.
fn make_strict(schema: &mut schemars::Schema) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(properties)) = object.get("properties") {
        let required: Vec<Value> = properties.keys().cloned().map(Value::String).collect();
        object.insert("required".into(), Value::Array(required));
        object.insert("additionalProperties".into(), Value::Bool(false));
    }
    if is_numeric(object) {
        object.remove("format");
    }
}

fn is_numeric(object: &Map<String, Value>) -> bool {
    let numeric = |t: &Value| matches!(t.as_str(), Some("integer" | "number"));
    match object.get("type") {
        Some(Value::Array(types)) => types.iter().any(numeric),
        Some(t) => numeric(t),
        None => false,
    }
}

fn sanitize_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "response".to_owned()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Deserialize, JsonSchema)]
    #[expect(dead_code, reason = "only the schema is used")]
    struct Award {
        criterion: String,
        awarded: bool,
    }

    /// A grade.
    #[derive(Deserialize, JsonSchema)]
    #[expect(dead_code, reason = "only the schema is used")]
    struct Grade {
        score: u32,
        criteria: Vec<Award>,
        #[schemars(length(max = 400))]
        feedback: String,
        note: Option<String>,
    }

    #[test]
    fn schemas_are_openai_strict() {
        let schema = OutputSchema::of::<Grade>().with_property_keyword("score", "maximum", 4);
        assert_eq!(schema.name, "Grade");
        let s = &schema.schema;
        assert_eq!(s["additionalProperties"], json!(false));
        assert_eq!(
            s["required"],
            json!(["score", "criteria", "feedback", "note"])
        );
        assert_eq!(
            s["properties"]["score"],
            json!({"type": "integer", "minimum": 0, "maximum": 4})
        );
        assert_eq!(s["properties"]["note"]["type"], json!(["string", "null"]));
        assert_eq!(s["properties"]["feedback"]["maxLength"], json!(400));
        let item = &s["properties"]["criteria"]["items"];
        assert_eq!(item["additionalProperties"], json!(false));
        assert_eq!(item["required"], json!(["criterion", "awarded"]));
        assert!(s.get("$schema").is_none() && s.get("$defs").is_none());
    }
}
