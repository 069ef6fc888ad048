//! `GET /openapi.json`: the API described as OpenAPI 3.1.

use axum::Json;
use serde_json::{json, Value};

/// (method, path, summary, request body schema or null, success status)
const OPERATIONS: &[(&str, &str, &str, &str, &str)] = &[
    ("post", "/v1/whistles", "Raise a whistle (吹哨): a township summons departments", "RaiseWhistle", "201"),
    ("post", "/v1/whistles/{id}/ack", "A summoned department reports in (报到)", "", "200"),
    ("post", "/v1/whistles/{id}/decline", "A summoned department declines, with a reason", "Reason", "200"),
    ("post", "/v1/whistles/{id}/assign", "A coordinator settles responsibility disputes", "Departments", "200"),
    ("post", "/v1/whistles/{id}/departments", "The township summons more departments", "Departments", "200"),
    ("post", "/v1/whistles/{id}/progress", "A working department notes progress", "Note", "200"),
    ("post", "/v1/whistles/{id}/handled", "A department reports its part handled", "Summary", "200"),
    ("post", "/v1/whistles/{id}/confirm", "The township confirms and rates the resolution", "Satisfaction", "200"),
    ("post", "/v1/whistles/{id}/reopen", "The township reopens a resolved whistle", "Reason", "200"),
    ("post", "/v1/whistles/{id}/withdraw", "The township withdraws its whistle", "OptionalReason", "200"),
    ("post", "/v1/feedback", "Submit feedback (基层意见直通车), optionally anonymous", "SubmitFeedback", "201"),
    ("post", "/v1/feedback/{id}/reply", "The office replies", "ReplyBody", "200"),
    ("post", "/v1/feedback/{id}/resolve", "The office resolves", "Summary", "200"),
    ("post", "/v1/feedback/{id}/rate", "The submitter rates (anonymous: X-Follow-Up-Code)", "Satisfaction", "200"),
    ("post", "/v1/feedback/{id}/reopen", "The submitter reopens (anonymous: X-Follow-Up-Code)", "Reason", "200"),
    ("post", "/v1/cases/{id}/extensions", "The party owing a clock asks for more time", "Extension", "201"),
    ("post", "/v1/cases/{id}/extensions/{n}/approve", "A supervisor approves an extension", "", "200"),
    ("post", "/v1/cases/{id}/extensions/{n}/refuse", "A supervisor refuses an extension", "OptionalReason", "200"),
    (
        "get",
        "/v1/cases/{id}",
        "A case: state, armed clocks, history, and the actions the caller may take on it now",
        "",
        "200",
    ),
    (
        "get",
        "/v1/cases",
        "Cases in scope, newest first, each with the caller's actions; filters kind, status, overdue, unit, todo, from, to (Beijing opening days) and q (text in title or description); paged by cursor",
        "",
        "200",
    ),
    (
        "get",
        "/v1/follow-up",
        "Anonymous feedback found by its follow-up code alone (header X-Follow-Up-Code), with the submitter's actions",
        "",
        "200",
    ),
    ("post", "/v1/whistles/similar", "Open whistles like a draft, visible to the caller (before raising)", "Draft", "200"),
    ("get", "/v1/cases/{id}/similar", "Possible duplicates of a case, visible to the caller", "", "200"),
    ("post", "/v1/whistles/{id}/duplicate", "Marks a whistle a duplicate of another (its township follows that one)", "Of", "200"),
    ("post", "/v1/whistles/{id}/unlink", "Undoes a duplicate link: clocks run from their first start", "", "200"),
    ("post", "/v1/feedback/{id}/duplicate", "The office links feedback about the same practice", "Of", "200"),
    ("post", "/v1/feedback/{id}/unlink", "The office undoes a feedback link", "", "200"),
    ("post", "/v1/cases/{id}/comments", "A comment in the case's thread; @unit tells that unit", "ReplyBody", "201"),
    ("post", "/v1/cases/{id}/comments/{n}/retract", "The author takes a comment back within 10 minutes", "", "200"),
    (
        "post",
        "/v1/cases/{id}/attachments",
        "An optional evidence file (photo, PDF, Office document): raw body with ?name=, or multipart/form-data",
        "",
        "201",
    ),
    (
        "get",
        "/v1/cases/{id}/attachments/{n}",
        "An evidence file, scoped like its case; images inline, other kinds as a download",
        "",
        "200",
    ),
    ("post", "/v1/whistles/{id}/hand-overs", "A summoned department proposes a hand-over (转办)", "HandOver", "200"),
    ("post", "/v1/whistles/{id}/hand-overs/{n}/accept", "The coordinator accepts a hand-over", "", "200"),
    ("post", "/v1/whistles/{id}/hand-overs/{n}/refuse", "The coordinator refuses a hand-over", "OptionalReason", "200"),
    ("post", "/v1/whistles/{id}/reassign", "The coordinator gives a department's part to another", "Reassign", "200"),
    ("get", "/v1/alerts", "Alerts in scope; open=true for unacknowledged ones", "", "200"),
    ("post", "/v1/alerts/{id}/ack", "A supervisor acknowledges an alert", "", "200"),
    ("get", "/v1/alerts/stream", "Live alerts in scope (Server-Sent Events; resumable with Last-Event-ID)", "", "200"),
    (
        "get",
        "/v1/stats",
        "响应率 / 解决率 / 满意率 by department, township, office, coordinator or topic, each with its numerator and denominator (docs/statistics.md); format=json|csv|xlsx|html or Accept",
        "",
        "200",
    ),
    (
        "get",
        "/v1/reports/{kind}",
        "The monthly or weekly 通报 (kind): units ranked by the three rates, with the change against the previous period; period=2026-11 or 2026-W48; format=json|csv|xlsx|html",
        "",
        "200",
    ),
    (
        "get",
        "/v1/cases/export",
        "One row per case part, for 考核 evidence (scoped); from, to, kind; format=csv|xlsx, streamed",
        "",
        "200",
    ),
    (
        "post",
        "/v1/calendar/{year}",
        "An admin publishes (or corrects) a year's official holiday schedule: the file as application/toml, or JSON",
        "",
        "200",
    ),
    ("get", "/v1/me", "The caller's identity", "", "200"),
    ("get", "/v1/org", "The organisation", "", "200"),
    ("get", "/healthz", "Alive", "", "200"),
    (
        "get",
        "/readyz",
        "Ready once the views have caught up with the log, and while the log and the views can be written",
        "",
        "200",
    ),
    ("get", "/metrics", "Prometheus metrics", "", "200"),
];

fn schemas() -> Value {
    let text = json!({ "type": "string" });
    let departments = json!({ "type": "array", "items": { "type": "string" }, "minItems": 1, "maxItems": 30 });
    let satisfaction = json!({ "type": "string", "enum": ["satisfied", "basically_satisfied", "unsatisfied"] });
    let object = |props: Value, required: &[&str]| json!({ "type": "object", "properties": props, "required": required, "additionalProperties": false });
    json!({
        "RaiseWhistle": object(json!({
            "title": text, "description": text, "departments": departments,
            "category": text, "location": text, "urgency": { "type": "string", "enum": ["normal", "urgent"] }
        }), &["title", "description", "departments"]),
        "SubmitFeedback": object(json!({
            "topic": { "type": "string", "enum": ["documents_meetings", "excessive_paperwork", "apps_chat_groups", "inspections_assessments", "work_pushed_down", "other"] },
            "body": text, "anonymous": { "type": "boolean" }
        }), &["topic", "body"]),
        "Reason": object(json!({ "reason": text }), &["reason"]),
        "OptionalReason": object(json!({ "reason": text }), &[]),
        "Departments": object(json!({ "departments": departments }), &["departments"]),
        "Note": object(json!({ "note": text }), &["note"]),
        "Summary": object(json!({ "summary": text }), &["summary"]),
        "ReplyBody": object(json!({ "body": text }), &["body"]),
        "Satisfaction": object(json!({ "satisfaction": satisfaction }), &["satisfaction"]),
        "Extension": object(json!({
            "clock": { "type": "string", "description": "ack:<department>, dispute:<department>, whistle_resolve:<department>, feedback_reply or feedback_resolve" },
            "working_days": { "type": "integer", "minimum": 1, "maximum": 30 },
            "hours": { "type": "integer", "minimum": 1, "maximum": 720 },
            "reason": text
        }), &["clock", "reason"]),
        "Draft": object(json!({ "title": text, "description": text, "departments": { "type": "array", "items": text } }), &["title"]),
        "Of": object(json!({ "of": { "type": "string", "format": "uuid" } }), &["of"]),
        "HandOver": object(json!({ "to": text, "reason": text }), &["to", "reason"]),
        "Reassign": object(json!({ "from": text, "to": text, "reason": text }), &["from", "to", "reason"]),
        "Error": object(json!({ "error": object(json!({ "code": text, "message": text, "field": text }), &["code", "message"]) }), &["error"]),
    })
}

fn error_responses() -> Value {
    let e = |d: &str| json!({ "description": d, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    json!({
        "400": e("malformed request"), "401": e("no or unknown token"), "403": e("not allowed"),
        "404": e("unknown or out-of-scope case"), "409": e("illegal transition or conflict"),
        "413": e("body too large"), "422": e("invalid field"), "503": e("log unavailable; retry with the same Idempotency-Key")
    })
}

pub fn spec() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary, body, status) in OPERATIONS {
        let mut op = json!({ "summary": summary, "responses": error_responses(), "security": [{ "bearer": [] }] });
        op["responses"][*status] = json!({ "description": "success" });
        if !body.is_empty() {
            op["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{body}") } } } });
        }
        if *method == "post" {
            op["parameters"] = json!([{ "name": "Idempotency-Key", "in": "header", "required": false, "schema": { "type": "string", "maxLength": 200 },
                "description": "The same key returns the same result and writes nothing twice" }]);
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "whistle", "version": env!("CARGO_PKG_VERSION"),
                  "description": "吹哨报到 and 基层意见直通车: cases, SLA clocks and supervisor alerts" },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } }
        }
    })
}

pub async fn document() -> Json<Value> {
    Json(spec())
}
