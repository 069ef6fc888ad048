//! Command endpoints: each turns a request into one domain command, runs it through
//! `execute`, and answers with the case as the command left it.

use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::auth::can_see;
use super::queries::case_json;
use super::{authenticated, caller, command_id, derived_id, parse_json, parse_json_bytes, refuse, ApiError, Shared};
use crate::domain::command::{Command, CommandBody};
use crate::domain::event::{Actor, ClockKind, ClockRef, ExtensionSpan, FeedbackTopic, Role, Satisfaction, Urgency};
use crate::domain::{armed_clocks, State as CaseState};
use crate::execute::{replay, Executed};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaiseRequest {
    title: String,
    description: String,
    departments: Vec<String>,
    category: Option<String>,
    location: Option<String>,
    urgency: Option<Urgency>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    topic: FeedbackTopic,
    body: String,
    #[serde(default)]
    anonymous: bool,
}

/// The fields any action may carry; which are required depends on the action.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    pub(super) reason: Option<String>,
    departments: Option<Vec<String>>,
    note: Option<String>,
    summary: Option<String>,
    body: Option<String>,
    satisfaction: Option<Satisfaction>,
    /// Confirm: ratings of single departments' parts.
    ratings: Option<std::collections::BTreeMap<String, Satisfaction>>,
    /// Duplicate: the case this one duplicates.
    of: Option<String>,
    /// Hand-over and reassignment: the department that takes the part.
    to: Option<String>,
    /// Reassignment: the department that gives it up.
    from: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionRequest {
    /// `ack:<department>`, `dispute:<department>`, `whistle_resolve:<department>`,
    /// `feedback_reply` or `feedback_resolve`.
    clock: String,
    working_days: Option<u32>,
    hours: Option<u32>,
    reason: String,
}

fn required<T>(value: Option<T>, field: &'static str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::invalid_field(field, format!("{field} is required")))
}

/// An action body: empty means `{}`.
fn action_body(bytes: &Bytes) -> Result<ActionRequest, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(ActionRequest::default());
    }
    parse_json_bytes(bytes)
}

/// A department of the organisation, named in field `field`.
fn known_department(state: &Shared, name: String, field: &'static str) -> Result<String, ApiError> {
    if state.org.departments.contains(&name.trim().to_owned()) {
        Ok(name.trim().to_owned())
    } else {
        Err(ApiError::invalid_field(field, format!("department {name} is not part of this organisation")))
    }
}

fn known_departments(state: &Shared, departments: &[String]) -> Result<(), ApiError> {
    match departments.iter().find(|d| !state.org.departments.contains(&d.trim().to_owned())) {
        Some(d) => {
            Err(ApiError::invalid_field("departments", format!("department {d} is not part of this organisation")))
        }
        None => Ok(()),
    }
}

/// Runs a command and answers with the case.
pub(super) async fn run(state: &Shared, cmd: Command, created: bool) -> Result<Response, ApiError> {
    let done = execute_counted(state, &cmd).await?;
    Ok(reply(state, &cmd, &done, created, serde_json::Map::new()))
}

/// Runs a command through the executor, counting it for /metrics.
async fn execute_counted(state: &Shared, cmd: &Command) -> Result<Executed, ApiError> {
    let result = state.executor.execute(cmd, state.clock.now()).await;
    match &result {
        Ok(done) if !done.repeated => {
            state.metrics.appends.fetch_add(1, Ordering::Relaxed);
        }
        Err(crate::execute::ExecuteError::Rejected(_)) => {
            state.metrics.rejections.fetch_add(1, Ordering::Relaxed);
        }
        Err(crate::execute::ExecuteError::Busy(_)) => {
            state.metrics.conflicts.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
    Ok(result?)
}

/// The answer to a command: the case as it left it, and `fields` besides (a creation's
/// follow-up code, its possible duplicates).
fn reply(
    state: &Shared,
    cmd: &Command,
    done: &Executed,
    created: bool,
    fields: serde_json::Map<String, Value>,
) -> Response {
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let mut body = answer(state, cmd, done);
    if let Some(out) = body.as_object_mut() {
        out.extend(fields);
    }
    let mut response = (status, Json(body)).into_response();
    // The same position as a header, for clients that pass it on as X-Min-Position.
    if let Ok(value) = axum::http::HeaderValue::from_str(&done.position.to_string()) {
        response.headers_mut().insert(super::POSITION_HEADER, value);
    }
    response
}

fn fields<const N: usize>(pairs: [(&str, Value); N]) -> serde_json::Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn answer(state: &Shared, cmd: &Command, done: &Executed) -> Value {
    let armed = armed_clocks(&done.state, &state.policy, &super::calendar(state)).unwrap_or_default();
    json!({
        "case": case_json(cmd.case_id, &done.state, &armed, None),
        "events": done.events,
        "repeated": done.repeated,
        "position": done.position,
    })
}

/// Reads a case from the log for a scope check: unknown or out of scope is 404.
/// 404 unless the actor may see the case. The executor's cached copy answers when it shows
/// the case to the actor (a command then still meets the log's state when it is appended);
/// otherwise the log does, and the records read are returned for the caller to use.
pub(super) async fn visible_case(
    state: &Shared,
    actor: &Actor,
    case_id: Uuid,
) -> Result<Option<Vec<crate::log::StoredRecord>>, ApiError> {
    if state.executor.cached_satisfies(case_id, |case| can_see(&state.org, actor, case)) {
        return Ok(None);
    }
    let records = state.log.read_case(case_id).await.map_err(|e| ApiError::unavailable(e.to_string()))?;
    // A township also sees the original of a duplicate it raised (the views know the link).
    let follows = || -> Result<bool, ApiError> {
        Ok(state.views.case(case_id)?.is_some_and(|v| super::links::can_see_view(&state.org, actor, &v)))
    };
    if !can_see(&state.org, actor, &replay(&records)) && !follows()? {
        return Err(ApiError::not_found(format!("no case {case_id}")));
    }
    // The command that follows decides on what was just read: one read per uncached command.
    state.executor.learn(case_id, &records);
    Ok(Some(records))
}

pub async fn raise(State(state): State<Shared>, headers: HeaderMap, bytes: Bytes) -> Result<Response, ApiError> {
    let actor = authenticated(&state, &headers)?;
    let req: RaiseRequest = parse_json(&headers, &bytes)?;
    if actor.role != Role::Township {
        return Err(refuse(&state, &actor, "raise a whistle"));
    }
    known_departments(&state, &req.departments)?;
    let (command_id, case_id) = creation_ids(&state, &headers, &actor, false)?;
    // What is already open about the same thing, for the township to link if it is: looked
    // up on a blocking thread while the command is stored.
    let probe = super::links::Probe {
        kind: "whistle",
        fingerprint: crate::domain::similar::Fingerprint::of(&req.title, &req.description),
        units: std::iter::once(actor.unit.clone()).chain(req.departments.iter().cloned()).collect(),
        exclude: Some(case_id),
        actor: actor.clone(),
        examined: super::links::SIMILAR_COMPARED_ON_RAISE,
        listed: super::links::SIMILAR_LISTED_ON_RAISE,
    };
    let known = super::links::Known {
        fingerprint: probe.fingerprint.clone(),
        title: req.title.trim().to_owned(),
        township: Some(actor.unit.clone()),
    };
    let looking = {
        let state = state.clone();
        tokio::task::spawn_blocking(move || super::links::similar(&state, &probe))
    };
    let body = CommandBody::RaiseWhistle {
        title: req.title,
        description: req.description,
        departments: req.departments,
        category: req.category,
        location: req.location,
        urgency: req.urgency.unwrap_or_default(),
    };
    let cmd = Command::new(command_id, case_id, actor, body);
    let done = execute_counted(&state, &cmd).await?;
    state.fingerprints.put(case_id, known);
    let possible = looking.await.map_err(|e| ApiError::unavailable(format!("looking for duplicates: {e}")))??;
    Ok(reply(&state, &cmd, &done, true, fields([("possible_duplicates", json!(possible))])))
}

/// Command and case ids for a creation: derived from the Idempotency-Key (and the
/// installation secret) when there is one, so a retried request finds the case it created.
/// Without a key, anonymous feedback gets random ids that carry no time either.
fn creation_ids(state: &Shared, headers: &HeaderMap, actor: &Actor, anonymous: bool) -> Result<(Uuid, Uuid), ApiError> {
    if anonymous && !headers.contains_key("idempotency-key") {
        return Ok((Uuid::new_v4(), Uuid::new_v4()));
    }
    let command_id = command_id(&state.secret, headers, actor, "create")?;
    let case_id = if headers.contains_key("idempotency-key") { command_id } else { Uuid::now_v7() };
    Ok((command_id, case_id))
}

pub async fn whistle_action(
    State(state): State<Shared>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let actor = authenticated(&state, &headers)?;
    let case_id = super::parse_id(&id)?;
    let req = action_body(&bytes)?;
    let body = match action.as_str() {
        "ack" => CommandBody::AcknowledgeSummons,
        "decline" => CommandBody::DeclineSummons { reason: required(req.reason, "reason")? },
        "assign" | "departments" => {
            let departments = required(req.departments, "departments")?;
            known_departments(&state, &departments)?;
            if action == "assign" {
                CommandBody::AssignDepartments { departments }
            } else {
                CommandBody::AddDepartments { departments }
            }
        }
        "progress" => CommandBody::NoteProgress { note: required(req.note, "note")? },
        "handled" => CommandBody::ReportHandled { summary: required(req.summary, "summary")? },
        "confirm" => CommandBody::ConfirmWhistle {
            satisfaction: required(req.satisfaction, "satisfaction")?,
            ratings: req.ratings.unwrap_or_default(),
        },
        "reopen" => CommandBody::ReopenWhistle { reason: required(req.reason, "reason")? },
        "withdraw" => CommandBody::WithdrawWhistle { reason: req.reason },
        "duplicate" => duplicate_of(req.of.as_deref())?,
        "unlink" => CommandBody::UnlinkDuplicate,
        "hand-overs" => CommandBody::ProposeHandOver {
            to: known_department(&state, required(req.to, "to")?, "to")?,
            reason: required(req.reason, "reason")?,
        },
        "reassign" => CommandBody::ReassignDepartment {
            from: required(req.from, "from")?,
            to: known_department(&state, required(req.to, "to")?, "to")?,
            reason: required(req.reason, "reason")?,
        },
        other => return Err(ApiError::not_found(format!("no whistle action {other:?}"))),
    };
    visible_case(&state, &actor, case_id).await?;
    let body = with_original(&state, &actor, case_id, body, req.of.as_deref()).await?;
    let command_id = command_id(&state.secret, &headers, &actor, &format!("{case_id}/{action}"))?;
    run(&state, Command::new(command_id, case_id, actor, body), false).await
}

pub async fn submit(State(state): State<Shared>, headers: HeaderMap, bytes: Bytes) -> Result<Response, ApiError> {
    let actor = authenticated(&state, &headers)?;
    let req: SubmitRequest = parse_json(&headers, &bytes)?;
    if actor.role != Role::Township {
        return Err(refuse(&state, &actor, "submit feedback"));
    }
    let (command_id, case_id) = creation_ids(&state, &headers, &actor, req.anonymous)?;
    let code = req.anonymous.then(|| follow_up_code(&state, &headers, &actor));
    let mut cmd = Command::new(
        command_id,
        case_id,
        actor,
        CommandBody::SubmitFeedback { topic: req.topic, body: req.body, anonymous: req.anonymous },
    );
    cmd.follow_up_code = code.clone();
    let done = execute_counted(&state, &cmd).await?;
    // The code is shown here only: the service keeps its hash.
    let extra = code.map(|code| fields([("follow_up_code", Value::String(code))])).unwrap_or_default();
    Ok(reply(&state, &cmd, &done, true, extra))
}

/// A follow-up code: random, or derived from the installation secret and the
/// Idempotency-Key so that a retried request is given the same code.
fn follow_up_code(state: &Shared, headers: &HeaderMap, actor: &Actor) -> String {
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    let id = match key {
        Some(key) => derived_id(&[&state.secret, actor.role.as_str(), &actor.unit, "follow-up", key]),
        None => Uuid::new_v4(),
    };
    format!("fu-{}", id.simple())
}

pub async fn feedback_action(
    State(state): State<Shared>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let who = caller(&state, &headers)?;
    let case_id = super::parse_id(&id)?;
    let req = action_body(&bytes)?;
    let req_of = req.of.clone();
    let mut body = match action.as_str() {
        "reply" => CommandBody::ReplyFeedback { body: required(req.body, "body")? },
        "resolve" => CommandBody::ResolveFeedback { summary: required(req.summary, "summary")? },
        "rate" => CommandBody::RateFeedback { satisfaction: required(req.satisfaction, "satisfaction")? },
        "reopen" => CommandBody::ReopenFeedback { reason: required(req.reason, "reason")? },
        "duplicate" => duplicate_of(req.of.as_deref())?,
        "unlink" => CommandBody::UnlinkDuplicate,
        other => return Err(ApiError::not_found(format!("no feedback action {other:?}"))),
    };
    let (actor, code) = match (&who.actor, &who.follow_up_code) {
        (_, Some(code)) if matches!(action.as_str(), "rate" | "reopen") => {
            let records = state.log.read_case(case_id).await.map_err(|e| ApiError::unavailable(e.to_string()))?;
            if !matches_code(&replay(&records), code) {
                return Err(ApiError::not_found(format!("no case {case_id}")));
            }
            (Actor::anonymous(), Some(code.clone()))
        }
        (Some(actor), _) => {
            visible_case(&state, actor, case_id).await?;
            body = with_original(&state, actor, case_id, body, req_of.as_deref()).await?;
            (actor.clone(), None)
        }
        (None, _) => {
            return Err(ApiError::unauthorized(
                "send Authorization: Bearer <token> (or X-Follow-Up-Code to rate or reopen anonymous feedback)",
            ))
        }
    };
    let salt_unit = code.clone().unwrap_or_default();
    let command_id = command_id(&state.secret, &headers, &actor, &format!("{case_id}/{action}/{salt_unit}"))?;
    let mut cmd = Command::new(command_id, case_id, actor, body);
    cmd.follow_up_code = code;
    run(&state, cmd, false).await
}

/// A duplicate mark waiting for its original: `of` is required, and checked (by
/// [`with_original`]) only once the case itself is known to be in the caller's scope, so an
/// out-of-scope case is 404 whatever `of` says.
fn duplicate_of(of: Option<&str>) -> Result<CommandBody, ApiError> {
    required(of, "of")?;
    Ok(CommandBody::MarkDuplicate { original: Uuid::nil() })
}

/// Fills in a duplicate mark's original, checked for the caller; other commands pass through.
async fn with_original(
    state: &Shared,
    actor: &Actor,
    case_id: Uuid,
    body: CommandBody,
    of: Option<&str>,
) -> Result<CommandBody, ApiError> {
    match (body, of) {
        (CommandBody::MarkDuplicate { .. }, Some(of)) => {
            Ok(CommandBody::MarkDuplicate { original: super::links::check_original(state, actor, case_id, of).await? })
        }
        (body, _) => Ok(body),
    }
}

/// Whether a follow-up code belongs to this (anonymous) feedback.
pub fn matches_code(case: &CaseState, code: &str) -> bool {
    matches!(case, CaseState::Feedback(c) if c.kind.follow_up_code_sha256.as_deref() == Some(crate::domain::decide::follow_up_code_sha256(code).as_str()))
}

pub async fn request_extension(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let actor = authenticated(&state, &headers)?;
    let req: ExtensionRequest = parse_json(&headers, &bytes)?;
    let case_id = super::parse_id(&id)?;
    let clock = parse_clock(&req.clock)?;
    let span = match (req.working_days, req.hours) {
        (Some(d), None) => ExtensionSpan::WorkingDays(d),
        (None, Some(h)) => ExtensionSpan::Hours(h),
        _ => return Err(ApiError::invalid("give either working_days or hours")),
    };
    visible_case(&state, &actor, case_id).await?;
    let command_id = command_id(&state.secret, &headers, &actor, &format!("{case_id}/extension"))?;
    let body = CommandBody::RequestExtension { clock, span, reason: req.reason };
    run(&state, Command::new(command_id, case_id, actor, body), true).await
}

fn parse_clock(text: &str) -> Result<ClockRef, ApiError> {
    let (kind, department) = match text.split_once(':') {
        Some((k, d)) => (k, Some(d.trim().to_owned())),
        None => (text, None),
    };
    let kind = ClockKind::ALL
        .into_iter()
        .find(|k| k.as_str() == kind.trim())
        .ok_or_else(|| ApiError::invalid(format!("clock {text:?} is not one of ack:<department>, dispute:<department>, whistle_resolve:<department>, feedback_reply, feedback_resolve")))?;
    if kind.per_department() != department.is_some() {
        return Err(ApiError::invalid(format!(
            "clock {text:?}: {} clocks {} a department",
            kind.as_str(),
            if kind.per_department() { "name" } else { "do not name" }
        )));
    }
    Ok(ClockRef { kind, department })
}

/// The caller, the case, the number and the body of a decision on a numbered request (an
/// extension, a hand-over proposal): an unknown number is 404 like an unknown case.
pub(super) fn numbered_decision(
    state: &Shared,
    headers: &HeaderMap,
    id: &str,
    number: &str,
    what: &str,
    bytes: &Bytes,
) -> Result<(Actor, Uuid, u32, ActionRequest), ApiError> {
    let actor = authenticated(state, headers)?;
    let case_id = super::parse_id(id)?;
    let number: u32 = number.parse().map_err(|_| ApiError::not_found(format!("no {what} {number}")))?;
    Ok((actor, case_id, number, action_body(bytes)?))
}

pub async fn decide_extension(
    State(state): State<Shared>,
    Path((id, number, decision)): Path<(String, String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let (actor, case_id, number, req) = numbered_decision(&state, &headers, &id, &number, "extension request", &bytes)?;
    let body = match decision.as_str() {
        "approve" => CommandBody::ApproveExtension { number },
        "refuse" => CommandBody::RefuseExtension { number, reason: req.reason },
        other => return Err(ApiError::not_found(format!("no extension decision {other:?}"))),
    };
    visible_case(&state, &actor, case_id).await?;
    let command_id = command_id(&state.secret, &headers, &actor, &format!("{case_id}/extension/{number}/{decision}"))?;
    run(&state, Command::new(command_id, case_id, actor, body), false).await
}

pub async fn ack_alert(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let actor = authenticated(&state, &headers)?;
    let alert_id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found(format!("no alert {id}")))?;
    let alert = state.views.alert(alert_id)?.ok_or_else(|| ApiError::not_found(format!("no alert {id}")))?;
    if !super::queries::alert_visible(&state, &actor, &alert) {
        return Err(ApiError::not_found(format!("no alert {id}")));
    }
    if actor.role != Role::Supervisor {
        return Err(refuse(&state, &actor, "acknowledge an alert"));
    }
    let command_id = command_id(&state.secret, &headers, &actor, &format!("alert/{alert_id}"))?;
    let cmd = Command::new(command_id, alert.case_id, actor, CommandBody::AcknowledgeAlert { alert_id });
    run(&state, cmd, false).await
}

/// Publishes (or corrects) a year's official schedule while serving: admin only; the body is
/// the schedule file as TOML (`application/toml` or `text/plain`) or as JSON, checked as
/// strictly as `whistle calendar publish` checks a file. Every instance's projector picks the
/// year up from the log, and with it commands, queries and alert delivery.
pub async fn publish_calendar(
    State(state): State<Shared>,
    Path(year): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let actor = authenticated(&state, &headers)?;
    if actor.role != Role::Admin {
        return Err(refuse(&state, &actor, "publish a calendar"));
    }
    let year: i32 = year.parse().map_err(|_| ApiError::bad_request(format!("{year} is not a year")))?;
    let schedule = calendar_body(&headers, &bytes)?;
    if schedule.year != year {
        return Err(ApiError::invalid(format!("the body is the {} calendar, the address says {year}", schedule.year)));
    }
    let command_id = command_id(&state.secret, &headers, &actor, &format!("calendar/{year}"))?;
    let body = CommandBody::PublishCalendar { schedule };
    run(&state, Command::new(command_id, crate::domain::event::CALENDAR_CASE_ID, actor, body), false).await
}

/// A schedule from a TOML or JSON body, validated.
fn calendar_body(headers: &HeaderMap, bytes: &[u8]) -> Result<crate::domain::YearSchedule, ApiError> {
    let schedule: crate::domain::YearSchedule = match super::media_type(headers).as_str() {
        "application/json" => parse_json_bytes(bytes)?,
        "application/toml" | "text/plain" | "text/x-toml" => {
            let text = std::str::from_utf8(bytes).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
            return crate::domain::YearSchedule::from_toml(text).map_err(|e| ApiError::invalid(e.to_string()));
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the schedule as Content-Type: application/toml (the file) or application/json",
            ))
        }
    };
    schedule.validate().map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(schedule)
}
