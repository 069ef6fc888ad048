//! JSON Schemas (draft 2020-12), one per event type and version, generated from the types.
//! `schemas/` holds them as files; a test keeps the files equal to what this generates and
//! validates an example of every event type against its file.

use schemars::JsonSchema;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::event::{Actor, EventBody, SCHEMA_VERSION};

/// The fields every event carries besides its body; mirrors [`super::event::Event`].
#[derive(JsonSchema)]
#[allow(dead_code)]
struct Envelope {
    /// UUIDv7, derived deterministically from the command that produced it.
    event_id: Uuid,
    case_id: Uuid,
    /// Schema version of this event's shape.
    schema_version: u32,
    actor: Actor,
    /// Server time; clients never set it.
    at: chrono::DateTime<chrono::Utc>,
}

/// One generated schema: its file name (`<type>.v<version>.json`) and its JSON.
pub struct EventSchema {
    pub type_name: String,
    pub file_name: String,
    pub schema: Value,
}

/// Every event type's schema at the current version, in type-name order.
pub fn event_schemas() -> Vec<EventSchema> {
    let envelope = schemars::schema_for!(Envelope).to_value();
    let bodies = schemars::schema_for!(EventBody).to_value();
    let mut defs = object(&envelope, "$defs");
    defs.extend(object(&bodies, "$defs"));
    let variants = bodies.get("oneOf").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut out: Vec<EventSchema> = variants.iter().filter_map(|v| one_schema(&envelope, v, &defs)).collect();
    out.sort_by(|a, b| a.type_name.cmp(&b.type_name));
    out
}

fn one_schema(envelope: &Value, variant: &Value, defs: &Map<String, Value>) -> Option<EventSchema> {
    let type_name = variant.pointer("/properties/type/const")?.as_str()?.to_owned();
    let mut properties = object(envelope, "properties");
    properties.insert("schema_version".into(), json!({ "const": SCHEMA_VERSION }));
    properties.extend(object(variant, "properties"));
    let mut required: Vec<Value> = array(envelope, "required");
    required.extend(array(variant, "required"));
    let mut schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("urn:whistle:event:{type_name}:v{SCHEMA_VERSION}"),
        "title": format!("{type_name} (v{SCHEMA_VERSION})"),
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    });
    if let Some(description) = variant.get("description") {
        schema["description"] = description.clone();
    }
    let used = reachable_defs(&schema, defs);
    if !used.is_empty() {
        schema["$defs"] = Value::Object(used);
    }
    Some(EventSchema { file_name: format!("{type_name}.v{SCHEMA_VERSION}.json"), type_name, schema })
}

/// The definitions a schema refers to, directly or through other definitions.
fn reachable_defs(schema: &Value, defs: &Map<String, Value>) -> Map<String, Value> {
    let mut used = Map::new();
    let mut pending = refs_in(schema);
    while let Some(name) = pending.pop() {
        if used.contains_key(&name) {
            continue;
        }
        if let Some(def) = defs.get(&name) {
            pending.extend(refs_in(def));
            used.insert(name, def.clone());
        }
    }
    used
}

fn refs_in(value: &Value) -> Vec<String> {
    match value {
        Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| match (k.as_str(), v) {
                ("$ref", Value::String(r)) => r.strip_prefix("#/$defs/").map(str::to_owned).into_iter().collect(),
                _ => refs_in(v),
            })
            .collect(),
        Value::Array(items) => items.iter().flat_map(refs_in).collect(),
        _ => Vec::new(),
    }
}

fn object(value: &Value, key: &str) -> Map<String, Value> {
    value.get(key).and_then(Value::as_object).cloned().unwrap_or_default()
}

fn array(value: &Value, key: &str) -> Vec<Value> {
    value.get(key).and_then(Value::as_array).cloned().unwrap_or_default()
}
