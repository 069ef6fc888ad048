//! Query endpoints: cases, alerts, statistics, identity, health and metrics. Reads come from
//! the views; a case the views have not reached yet is read from the log.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::commands::matches_code;
use super::{authenticated, caller, ApiError, Shared};
use crate::domain::clocks::ArmedClock;
use crate::domain::event::{Actor, AlertStage, ClockKind, Role};
use crate::domain::state::State as CaseState;
use crate::domain::{armed_clocks, Event};
use crate::execute::replay;
use crate::projector::keys::{overdue_list_prefix, status_list_prefix, unit_list_prefix};
use crate::projector::model::{AlertView, CaseView};

pub(super) type QueryResult<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

/// A query string, or 400 saying what is wrong with it.
pub(super) fn parse_query<T>(query: QueryResult<T>) -> Result<T, ApiError> {
    query.map(|Query(q)| q).map_err(|e| ApiError::bad_request(e.body_text()))
}

/// Largest page of cases.
pub const PAGE_CASES_MAX: usize = 100;
/// Most list entries examined for one page (filters may skip many).
const PAGE_SCAN_MAX: usize = 5_000;
/// Most alerts listed at once.
pub const ALERTS_LIST_MAX: usize = 500;

/// A case as the API shows it.
pub fn case_json(case_id: Uuid, state: &CaseState, armed: &[ArmedClock], history: Option<&[Event]>) -> Value {
    let view = CaseView { state: state.clone(), armed: armed.to_vec(), ..CaseView::new(case_id) };
    let overdue: Vec<&ArmedClock> = view.overdue();
    let mut out = json!({
        "id": case_id,
        "kind": view.kind(),
        "status": view.status(),
        "title": view.title(),
        "township": view.township(),
        "urgent": view.urgent(),
        "opened_at": view.opened_at(),
        "clocks": armed,
        "overdue": overdue.iter().map(|c| c.clock.to_string()).collect::<Vec<_>>(),
        "detail": state,
    });
    if let Some(events) = history {
        out["history"] = json!(events);
    }
    out
}

pub async fn ready(State(state): State<Shared>) -> Response {
    let checkpoint = *state.progress.checkpoint.borrow();
    if let Some(failure) = state.log.write_failure() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("the log cannot be written: {failure}")).into_response();
    }
    if let Some(failure) = state.progress.failure.borrow().clone() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("the views cannot be written: {failure}")).into_response();
    }
    if checkpoint >= state.startup_head {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("catching up: {checkpoint}/{}", state.startup_head)).into_response()
    }
}

pub async fn metrics(State(state): State<Shared>) -> Response {
    let head = state.log.head().await.unwrap_or(0);
    let checkpoint = *state.progress.checkpoint.borrow();
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    metric(
        "whistle_appends_total",
        "Commands stored through the API.",
        "counter",
        state.metrics.appends.load(Ordering::Relaxed),
    );
    metric(
        "whistle_append_conflicts_total",
        "Commands given up after repeated conflicts.",
        "counter",
        state.metrics.conflicts.load(Ordering::Relaxed),
    );
    metric(
        "whistle_rejections_total",
        "Commands the domain refused.",
        "counter",
        state.metrics.rejections.load(Ordering::Relaxed),
    );
    metric(
        "whistle_refusals_total",
        "Requests refused for authentication or permission.",
        "counter",
        state.metrics.refusals.load(Ordering::Relaxed),
    );
    metric("whistle_log_head", "Position of the last record in the log.", "gauge", head);
    metric("whistle_projector_checkpoint", "Last log position applied to the views.", "gauge", checkpoint);
    metric("whistle_projector_lag", "Records not yet applied to the views.", "gauge", head.saturating_sub(checkpoint));
    metric("whistle_armed_clocks", "Clocks in the deadline index.", "gauge", state.views.armed_count().unwrap_or(0));
    metric("whistle_open_alerts", "Alerts not yet acknowledged.", "gauge", state.views.open_alert_count().unwrap_or(0));
    let (files, file_bytes) = state.views.file_totals().unwrap_or((0, 0));
    metric("whistle_attachments_total", "Evidence files attached, whole installation.", "counter", files);
    metric(
        "whistle_attachment_bytes_total",
        "Bytes of evidence files attached, whole installation.",
        "counter",
        file_bytes,
    );
    for stage in [AlertStage::Warning, AlertStage::Breach, AlertStage::Escalation] {
        let name = format!("whistle_alerts_{}_total", stage.as_str());
        metric(&name, "SLA alerts recorded of this stage.", "counter", state.views.alert_count(stage).unwrap_or(0));
    }
    metric(
        "whistle_dead_letters",
        "Log records the projector could not use.",
        "gauge",
        state.views.dead_letter_count().unwrap_or(0),
    );
    if let Some(delivery) = &state.delivery {
        let stats = &delivery.stats;
        metric(
            "whistle_alerts_published_total",
            "Alerts published on whistle.alert subjects.",
            "counter",
            stats.published.load(Ordering::Relaxed),
        );
        metric(
            "whistle_webhook_deliveries_total",
            "Webhook calls that succeeded.",
            "counter",
            stats.webhook_sent.load(Ordering::Relaxed),
        );
        metric(
            "whistle_webhook_failures_total",
            "Webhook calls given up after retries.",
            "counter",
            stats.webhook_failed.load(Ordering::Relaxed),
        );
        metric(
            "whistle_alerts_held_total",
            "Alerts held for working hours.",
            "counter",
            stats.held.load(Ordering::Relaxed),
        );
        let _ = writeln!(out, "# HELP whistle_messages_total Alerts and notices by kind, channel and outcome.");
        let _ = writeln!(out, "# TYPE whistle_messages_total counter");
        for ((kind, channel, outcome), n) in stats.by_kind() {
            let label = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(
                out,
                "whistle_messages_total{{kind=\"{}\",channel=\"{}\",outcome=\"{outcome}\"}} {n}",
                label(&kind),
                label(&channel)
            );
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

pub async fn me(State(state): State<Shared>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let actor = authenticated(&state, &headers)?;
    let seat = state.org.supervisors.iter().find(|s| s.unit == actor.unit && actor.role == Role::Supervisor);
    let level = seat.map(|s| s.level);
    let district = match actor.role {
        Role::Supervisor => seat.and_then(|s| s.district.clone()),
        Role::Township => state.org.district_of(&actor.unit).map(str::to_owned),
        _ => None,
    };
    Ok(Json(json!({ "role": actor.role, "unit": actor.unit, "level": level, "district": district })))
}

pub async fn org(State(state): State<Shared>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authenticated(&state, &headers)?;
    Ok(Json(json!(state.org)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    kind: Option<String>,
    status: Option<String>,
    overdue: Option<bool>,
    unit: Option<String>,
    /// Text to find in the title and description (a feedback item's body): a substring, as
    /// Chinese has no spaces to split words at; Latin letters match in either case.
    q: Option<String>,
    /// Only cases on which the caller owes a step now (`true`): see [`super::actions::OWED`].
    todo: Option<bool>,
    /// Opened on or after this Beijing date.
    from: Option<String>,
    /// Opened on or before this Beijing date.
    to: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// Longest search text accepted, in characters.
pub const SEARCH_CHARS_MAX: usize = 100;

/// The period and text a list is narrowed to.
struct Narrowing {
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: Option<chrono::DateTime<chrono::Utc>>,
    text: Option<String>,
}

impl Narrowing {
    fn of(q: &ListQuery) -> Result<Narrowing, ApiError> {
        let day = |field: &str,
                   text: &Option<String>,
                   next: bool|
         -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
            let Some(text) = text.as_deref().filter(|t| !t.is_empty()) else { return Ok(None) };
            let date = parse_date(field, Some(text), chrono::NaiveDate::MIN)?;
            let date = if next { date.succ_opt().unwrap_or(date) } else { date };
            Ok(Some(super::export::day_start(date)))
        };
        let (from, to) = (day("from", &q.from, false)?, day("to", &q.to, true)?);
        if let (Some(f), Some(t)) = (from, to) {
            if f >= t {
                return Err(ApiError::invalid("from is after to"));
            }
        }
        let text = q.q.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_lowercase);
        if text.as_ref().is_some_and(|t| t.chars().count() > SEARCH_CHARS_MAX) {
            return Err(ApiError::invalid(format!("q is at most {SEARCH_CHARS_MAX} characters")));
        }
        Ok(Narrowing { from, to, text })
    }

    fn matches(&self, view: &CaseView) -> bool {
        let Some(text) = &self.text else { return true };
        match &view.state {
            CaseState::Whistle(c) => {
                c.kind.title.to_lowercase().contains(text.as_str())
                    || c.kind.description.to_lowercase().contains(text.as_str())
                    || c.kind.location.as_deref().is_some_and(|l| l.to_lowercase().contains(text.as_str()))
            }
            CaseState::Feedback(c) => {
                c.kind.body.to_lowercase().contains(text.as_str()) || c.kind.topic.label_zh().contains(text.as_str())
            }
            _ => false,
        }
    }
}

pub async fn list_cases(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: QueryResult<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let actor = authenticated(&state, &headers)?;
    let q = parse_query(query)?;
    if let Some(kind) = &q.kind {
        if kind != "whistle" && kind != "feedback" {
            return Err(ApiError::invalid("kind is whistle or feedback"));
        }
    }
    let limit = q.limit.unwrap_or(50).clamp(1, PAGE_CASES_MAX);
    let unit =
        q.unit.clone().or_else(|| matches!(actor.role, Role::Township | Role::Department).then(|| actor.unit.clone()));
    let lists = match (&unit, q.overdue, &q.kind, &q.status) {
        (Some(u), _, _, _) => vec![unit_list_prefix(u)],
        (None, Some(true), _, _) => vec![overdue_list_prefix()],
        (None, _, Some(kind), Some(status)) => vec![status_list_prefix(kind, status)],
        (None, _, kind, _) => state.views.status_lists(kind.as_deref())?,
    };
    let narrowing = Narrowing::of(&q)?;
    // Lists run newest first: a period starts at its end and stops at its beginning.
    let mut cursor = match (&q.cursor, narrowing.to) {
        (Some(c), _) => Some(decode_cursor(c)?),
        (None, Some(to)) => Some(crate::projector::keys::list_suffix(to, Uuid::nil())),
        (None, None) => None,
    };
    let now = state.clock.now();
    let mut items = Vec::new();
    let mut scanned = 0;
    // A page ends where it is full: the cursor then points after its last case, not after
    // the last one read (which may have matched too).
    let mut last_shown = None;
    'pages: while scanned < PAGE_SCAN_MAX {
        let (ids, next) = state.views.list(&lists, cursor.as_deref(), limit)?;
        scanned += ids.len();
        for id in ids {
            let Some(view) = state.views.case(id)? else { continue };
            if narrowing.from.is_some_and(|from| view.opened_at().is_some_and(|at| at < from)) {
                cursor = None;
                break 'pages;
            }
            if super::links::can_see_view(&state.org, &actor, &view)
                && matches_filters(&view, &q)
                && narrowing.matches(&view)
            {
                let asker = super::actions::Asker { actor: &actor, follow_up_code: None };
                let facts = facts_of(&state, &view);
                let actions = super::actions::available(id, &view.state, &facts, &asker, &state.org.departments, now);
                if q.todo == Some(true) && !super::actions::owes(&actions) {
                    continue;
                }
                let mut item = case_json(id, &view.state, &view.armed, None);
                item["actions"] = actions;
                items.push(item);
                if items.len() == limit {
                    last_shown = view.opened_at().map(|at| crate::projector::keys::list_suffix(at, id));
                    break 'pages;
                }
            }
        }
        cursor = next;
        if cursor.is_none() {
            break;
        }
    }
    // A full page: the next one starts after its last case.
    if last_shown.is_some() {
        cursor = last_shown;
    }
    Ok(Json(json!({ "items": items, "next_cursor": cursor.map(|c| encode_cursor(&c)) })))
}

fn matches_filters(view: &CaseView, q: &ListQuery) -> bool {
    q.kind.as_deref().is_none_or(|k| view.kind() == Some(k))
        && q.status.as_deref().is_none_or(|s| view.status() == Some(s))
        && q.overdue.is_none_or(|o| o != view.overdue().is_empty())
}

fn encode_cursor(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(text: &str) -> Result<Vec<u8>, ApiError> {
    let bad = || ApiError::bad_request("cursor is not one this service gave out");
    if text.len() != 48 || !text.is_ascii() {
        return Err(bad());
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|_| bad())).collect()
}

pub async fn case(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let who = caller(&state, &headers)?;
    let case_id = super::parse_id(&id)?;
    case_answer(&state, &who, case_id).await
}

/// The anonymous submitter's follow-up page: the feedback its `X-Follow-Up-Code` belongs to,
/// found through the views' index of code hashes (the code itself is never stored).
pub async fn follow_up(State(state): State<Shared>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let who = caller(&state, &headers)?;
    let Some(code) = who.follow_up_code.as_deref() else {
        return Err(ApiError::unauthorized("send the follow-up code as X-Follow-Up-Code"));
    };
    let hash = crate::domain::decide::follow_up_code_sha256(code.trim());
    let case_id =
        state.views.follow_up_case(&hash)?.ok_or_else(|| ApiError::not_found("no feedback has this follow-up code"))?;
    case_answer(&state, &who, case_id).await
}

/// A case with its history and the actions the caller may take on it now; 404 when the caller
/// may not see it.
async fn case_answer(state: &Shared, who: &super::Caller, case_id: Uuid) -> Result<Json<Value>, ApiError> {
    // The history is the log's (the views keep current state only); up to what the view shows,
    // so state and history agree.
    let records = state.log.read_case(case_id).await.map_err(|e| ApiError::unavailable(e.to_string()))?;
    let history_of = |records: &[crate::log::StoredRecord], upto: u64| -> Vec<crate::domain::Event> {
        records.iter().filter(|r| r.position <= upto).filter_map(|r| r.decode().ok()).flat_map(|c| c.events).collect()
    };
    let (view, history) = match state.views.case(case_id)? {
        Some(view) => {
            let history = history_of(&records, view.last_position);
            (view, history)
        }
        None => {
            let case_state = replay(&records);
            let armed = armed_clocks(&case_state, &state.policy, &super::calendar(state)).unwrap_or_default();
            (CaseView { state: case_state, armed, ..CaseView::new(case_id) }, history_of(&records, u64::MAX))
        }
    };
    let anonymous = Actor::anonymous();
    let asker = match (&who.actor, &who.follow_up_code) {
        (Some(actor), _) if super::links::can_see_view(&state.org, actor, &view) => {
            super::actions::Asker { actor, follow_up_code: None }
        }
        (_, Some(code)) if matches_code(&view.state, code) => {
            super::actions::Asker { actor: &anonymous, follow_up_code: Some(code.as_str()) }
        }
        (None, None) => return Err(ApiError::unauthorized("send Authorization: Bearer <token>")),
        _ => return Err(ApiError::not_found(format!("no case {case_id}"))),
    };
    let mut out = case_json(case_id, &view.state, &view.armed, Some(&history));
    out["duplicates"] = json!(view.duplicates);
    out["actions"] = super::actions::available(
        case_id,
        &view.state,
        &facts_of(state, &view),
        &asker,
        &state.org.departments,
        state.clock.now(),
    );
    Ok(Json(out))
}

/// What the views add to a case for offering actions.
fn facts_of<'a>(state: &Shared, view: &'a CaseView) -> super::actions::Facts<'a> {
    super::actions::Facts {
        armed: &view.armed,
        has_duplicates: !view.duplicates.is_empty(),
        township_decides: state.org.cases.township_decides_hand_overs,
        attachments_max: state.org.attachments.max_per_case,
    }
}

/// Whether an alert is in the caller's scope.
pub fn alert_visible(state: &Shared, actor: &Actor, alert: &AlertView) -> bool {
    match actor.role {
        Role::Admin => true,
        Role::Supervisor => state.org.within_district(actor, &alert.case_kind, alert.township.as_deref()),
        Role::Department => alert.unit == actor.unit,
        Role::Office => alert.case_kind == "feedback",
        Role::Coordinator => alert.clock.kind == ClockKind::Dispute,
        Role::Township => alert.case_kind == "whistle" && alert.township.as_deref() == Some(actor.unit.as_str()),
        Role::System | Role::Anonymous => false,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsQuery {
    open: Option<bool>,
}

pub async fn alerts(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: QueryResult<AlertsQuery>,
) -> Result<Json<Value>, ApiError> {
    let actor = authenticated(&state, &headers)?;
    let q = parse_query(query)?;
    let all = state.views.alerts(q.open.unwrap_or(false), ALERTS_LIST_MAX)?;
    let items: Vec<AlertView> = all.into_iter().filter(|a| alert_visible(&state, &actor, a)).collect();
    Ok(Json(json!({ "items": items })))
}

pub(super) fn parse_date(
    field: &str,
    text: Option<&str>,
    default: chrono::NaiveDate,
) -> Result<chrono::NaiveDate, ApiError> {
    match text {
        None => Ok(default),
        Some(t) => chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
            .map_err(|_| ApiError::invalid(format!("{field} is a date like 2026-03-01, not {t:?}"))),
    }
}
