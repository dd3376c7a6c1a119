//! Reading the `data` of GraphQL results.
//!
//! Operations are typed by graphql_client at compile time (a query that no longer fits
//! `schema.graphql` does not build), but results are read from a `serde_json::Value` with
//! these few helpers rather than through the generated serde structs: one small reader
//! instead of a deserializer per type keeps the wasm within budget. Each module's tests
//! pass a sample through the generated types first ([`typed`]), so reading a field the
//! query does not select fails a test.

use serde_json::Value;

/// Parses a JSON text (a response body, a WebSocket message); `None` when it is not JSON.
///
/// In the browser the text is parsed by `JSON.parse` and walked into a [`Value`]: that
/// leaves serde_json's parser (and its number tables) out of the wasm, 4 KB gzipped.
/// Whole numbers become integers, as serde_json makes them, so [`Read::int`] reads them.
pub fn parse(text: &str) -> Option<Value> {
    #[cfg(target_arch = "wasm32")]
    {
        js_sys::JSON::parse(text).ok().map(|value| from_js(&value))
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        serde_json::from_str(text).ok()
    }
}

/// A value `JSON.parse` made, as a [`Value`].
#[cfg(target_arch = "wasm32")]
fn from_js(value: &wasm_bindgen::JsValue) -> Value {
    use wasm_bindgen::JsCast;

    /// 2^53: beyond it a JavaScript number is no exact integer.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if let Some(text) = value.as_string() {
        Value::String(text)
    } else if let Some(number) = value.as_f64() {
        if number.fract() == 0.0 && number.abs() < EXACT {
            Value::from(number as i64)
        } else {
            serde_json::Number::from_f64(number).map_or(Value::Null, Value::Number)
        }
    } else if let Some(flag) = value.as_bool() {
        Value::Bool(flag)
    } else if js_sys::Array::is_array(value) {
        let list: &js_sys::Array = value.unchecked_ref();
        Value::Array(list.iter().map(|item| from_js(&item)).collect())
    } else if value.is_object() {
        // One insert at a time: collecting would sort first, more code for no gain.
        let mut object = serde_json::Map::new();
        for entry in js_sys::Object::entries(value.unchecked_ref()).iter() {
            let pair: &js_sys::Array = entry.unchecked_ref();
            object.insert(
                pair.get(0).as_string().unwrap_or_default(),
                from_js(&pair.get(1)),
            );
        }
        Value::Object(object)
    } else {
        Value::Null
    }
}

/// Typed reads of a JSON object's fields; a missing or mistyped field reads as empty.
pub trait Read {
    /// The field's value (`null` when missing).
    fn at(&self, key: &str) -> &Value;
    /// A string field.
    fn text(&self, key: &str) -> String;
    /// A nullable string field.
    fn opt_text(&self, key: &str) -> Option<String>;
    /// An `Int` field.
    fn int(&self, key: &str) -> i64;
    /// A `Float` field.
    fn num(&self, key: &str) -> f64;
    /// A `Boolean` field.
    fn flag(&self, key: &str) -> bool;
    /// A list field.
    fn list(&self, key: &str) -> &[Value];
}

impl Read for Value {
    fn at(&self, key: &str) -> &Value {
        self.get(key).unwrap_or(&Value::Null)
    }

    fn text(&self, key: &str) -> String {
        self.opt_text(key).unwrap_or_default()
    }

    fn opt_text(&self, key: &str) -> Option<String> {
        self.get(key).and_then(Value::as_str).map(str::to_owned)
    }

    fn int(&self, key: &str) -> i64 {
        self.get(key).and_then(Value::as_i64).unwrap_or_default()
    }

    fn num(&self, key: &str) -> f64 {
        self.get(key).and_then(Value::as_f64).unwrap_or_default()
    }

    fn flag(&self, key: &str) -> bool {
        self.get(key).and_then(Value::as_bool).unwrap_or_default()
    }

    fn list(&self, key: &str) -> &[Value] {
        self.get(key)
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }
}

/// Passes `sample` through operation `Q`'s generated response type and back: what comes
/// out holds exactly the fields the query selects, with the schema's types.
#[cfg(test)]
pub fn typed<Q>(sample: Value) -> Value
where
    Q: graphql_client::GraphQLQuery,
    Q::ResponseData: serde::Serialize,
{
    let data: Q::ResponseData =
        serde_json::from_value(sample).expect("the sample fits the operation's response type");
    serde_json::to_value(data).expect("the response type serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_fields_or_empties() {
        let value = json!({ "s": "x", "n": 2, "f": 1.5, "b": true, "l": [1, 2], "z": null });
        assert_eq!(value.text("s"), "x");
        assert_eq!(value.opt_text("z"), None);
        assert_eq!(value.int("n"), 2);
        assert!((value.num("f") - 1.5).abs() < f64::EPSILON);
        assert!(value.flag("b"));
        assert_eq!(value.list("l").len(), 2);
        assert_eq!(value.text("missing"), "");
        assert!(value.list("s").is_empty());
        assert!(value.at("missing").is_null());
    }
}
