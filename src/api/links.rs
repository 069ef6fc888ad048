//! One problem, one case: possible duplicates (found through the views' unit and status lists
//! within a window, compared by character bigrams), linking a duplicate to its original, the
//! thread of comments with `@unit` mentions, and hand-overs between departments (转办).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::auth::can_see;
use super::commands::{matches_code, run};
use super::{authenticated, caller, command_id, parse_json, ApiError, Shared};
use crate::domain::command::{Command, CommandBody};
use crate::domain::event::{Actor, Role};
use crate::domain::similar::Fingerprint;
use crate::domain::state::{FeedbackStatus, State as CaseState, WhistleStatus};
use crate::execute::replay;
use crate::projector::keys::{status_list_prefix, unit_list_prefix};
use crate::projector::model::CaseView;

/// Most possible duplicates listed.
pub const SIMILAR_LISTED_MAX: usize = 10;
/// Most cases compared for one suggestion: the window's newest first.
const SIMILAR_COMPARED_MAX: usize = 2_000;

/// Whether the actor may see the case: by its state, or because a case the actor's unit raised
/// is linked to it as a duplicate (the unit follows the original).
pub fn can_see_view(actor: &Actor, view: &CaseView) -> bool {
    can_see(actor, &view.state) || (matches!(actor.role, Role::Township) && view.followers().any(|u| u == actor.unit))
}

/// What a new or existing report is compared with.
pub struct Probe<'a> {
    pub kind: &'static str,
    pub fingerprint: Fingerprint,
    /// The units whose lists hold the candidates: a whistle's township and departments.
    pub units: Vec<String>,
    pub exclude: Option<Uuid>,
    pub actor: &'a Actor,
}

/// Open cases of the same kind opened within the window that the actor may see and that are
/// alike enough, most alike first.
pub fn similar(state: &Shared, probe: &Probe<'_>) -> Result<Vec<Value>, ApiError> {
    let rules = &state.org.cases;
    let now = state.clock.now();
    let from = now - chrono::Duration::days(i64::from(rules.duplicate_window_days));
    let to = now + chrono::Duration::seconds(1);
    let prefixes: Vec<Vec<u8>> = match probe.kind {
        "whistle" => probe.units.iter().map(|u| unit_list_prefix(u)).collect(),
        _ => vec![status_list_prefix("feedback", Some("open")), status_list_prefix("feedback", Some("resolved"))],
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut found: Vec<(f64, CaseView)> = Vec::new();
    for prefix in prefixes {
        for id in state.views.opened_between(&prefix, from, to)? {
            let id = id?;
            if seen.len() >= SIMILAR_COMPARED_MAX {
                break;
            }
            if Some(id) == probe.exclude || !seen.insert(id) {
                continue;
            }
            let Some(view) = state.views.case(id)? else { continue };
            let (open, fingerprint) = match &view.state {
                CaseState::Whistle(c) => (
                    matches!(c.kind.status, WhistleStatus::Open | WhistleStatus::Resolved),
                    Fingerprint::of(&c.kind.title, &c.kind.description),
                ),
                CaseState::Feedback(c) => (
                    matches!(c.kind.status, FeedbackStatus::Open | FeedbackStatus::Resolved),
                    Fingerprint::of("", &c.kind.body),
                ),
                _ => continue,
            };
            if !open || view.kind() != Some(probe.kind) || !can_see_view(probe.actor, &view) {
                continue;
            }
            let score = probe.fingerprint.similarity(&fingerprint);
            if score >= rules.duplicate_threshold {
                found.push((score, view));
            }
        }
    }
    found.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.opened_at().cmp(&a.1.opened_at())));
    Ok(found
        .into_iter()
        .take(SIMILAR_LISTED_MAX)
        .map(|(score, view)| {
            json!({
                "id": view.case_id, "kind": view.kind(), "title": view.title(), "township": view.township(),
                "status": view.status(), "opened_at": view.opened_at(), "similarity": (score * 100.0).round() / 100.0,
            })
        })
        .collect())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimilarRequest {
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    departments: Vec<String>,
}

/// `POST /v1/whistles/similar`: the raise form asks before sending. Only whistles the caller
/// may see are listed (a township sees its own; departments and the coordinator see more).
pub async fn similar_to_draft(
    State(state): State<Shared>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let actor = authenticated(&state, &headers)?;
    let req: SimilarRequest = parse_json(&headers, &bytes)?;
    let mut units = req.departments.clone();
    if actor.role == Role::Township {
        units.push(actor.unit.clone());
    }
    let probe = Probe {
        kind: "whistle",
        fingerprint: Fingerprint::of(&req.title, &req.description),
        units,
        exclude: None,
        actor: &actor,
    };
    Ok(Json(json!({ "items": similar(&state, &probe)? })))
}

/// `GET /v1/cases/{id}/similar`: possible duplicates of a case, for its page.
pub async fn similar_to_case(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let actor = authenticated(&state, &headers)?;
    let case_id = super::parse_id(&id)?;
    let view = state.views.case(case_id)?.filter(|v| can_see_view(&actor, v));
    let view = view.ok_or_else(|| ApiError::not_found(format!("no case {case_id}")))?;
    Ok(Json(json!({ "items": similar(&state, &probe_of(&view, &actor))? })))
}

/// The probe for an existing case.
pub fn probe_of<'a>(view: &CaseView, actor: &'a Actor) -> Probe<'a> {
    let (kind, fingerprint, units) = match &view.state {
        CaseState::Whistle(c) => (
            "whistle",
            Fingerprint::of(&c.kind.title, &c.kind.description),
            std::iter::once(c.kind.township.clone()).chain(c.kind.departments.keys().cloned()).collect(),
        ),
        CaseState::Feedback(c) => ("feedback", Fingerprint::of("", &c.kind.body), Vec::new()),
        _ => ("whistle", Fingerprint::of("", ""), Vec::new()),
    };
    Probe { kind, fingerprint, units, exclude: Some(view.case_id), actor }
}

/// The case a duplicate is linked to, checked: it exists, is of the same kind, the actor may
/// see it, it is not itself a duplicate or withdrawn, and the case being linked carries no
/// duplicates of its own (links are one level deep).
pub async fn check_original(state: &Shared, actor: &Actor, case_id: Uuid, of: &str) -> Result<Uuid, ApiError> {
    let original =
        Uuid::parse_str(of.trim()).map_err(|_| ApiError::invalid_field("of", format!("{of:?} is not a case id")))?;
    if original == case_id {
        return Err(ApiError::invalid_field("of", "a case cannot be a duplicate of itself"));
    }
    let view = match state.views.case(original)? {
        Some(view) => view,
        None => {
            let records = state.log.read_case(original).await.map_err(|e| ApiError::unavailable(e.to_string()))?;
            CaseView { state: replay(&records), ..CaseView::new(original) }
        }
    };
    if !view.state.exists() || !can_see_view(actor, &view) {
        return Err(ApiError::invalid_field("of", format!("no case {original}")));
    }
    let this = state.views.case(case_id)?;
    if this.as_ref().is_some_and(|t| t.kind() != view.kind()) {
        return Err(ApiError::invalid_field("of", "a whistle duplicates a whistle, feedback duplicates feedback"));
    }
    if matches!(view.status(), Some("duplicate" | "withdrawn")) {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "conflict",
            format!("case {original} is {}: link to the case it stands for", view.status().unwrap_or_default()),
        ));
    }
    if this.is_some_and(|t| !t.duplicates.is_empty()) {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "conflict",
            "other cases are linked to this one as duplicates: unlink them first",
        ));
    }
    Ok(original)
}

// ------------------------------------------------------------------------------ comments

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommentRequest {
    body: String,
}

/// The organisation's units a comment names with `@`, longest names first so that `@市委编办`
/// is not also read as a shorter unit's name.
pub fn mentions(state: &Shared, body: &str) -> Vec<String> {
    let org = &state.org;
    let mut units: Vec<&String> = org
        .townships
        .iter()
        .chain(&org.departments)
        .chain([&org.office, &org.coordinator])
        .chain(org.supervisors.iter().map(|s| &s.unit))
        .collect();
    units.sort_by_key(|u| std::cmp::Reverse(u.chars().count()));
    let mut rest = body.to_owned();
    let mut out = Vec::new();
    for unit in units {
        let tag = format!("@{unit}");
        if rest.contains(&tag) {
            out.push(unit.clone());
            rest = rest.replace(&tag, "");
        }
    }
    out.sort();
    out
}

/// Who may act on a case through a comment: a signed-in caller who sees it (a follower
/// township included), or the anonymous submitter with the follow-up code.
async fn commenter(state: &Shared, headers: &HeaderMap, case_id: Uuid) -> Result<(Actor, Option<String>), ApiError> {
    let who = caller(state, headers)?;
    match (&who.actor, &who.follow_up_code) {
        (Some(actor), _) => {
            super::commands::visible_case(state, actor, case_id).await?;
            Ok((actor.clone(), None))
        }
        (None, Some(code)) => {
            let records = state.log.read_case(case_id).await.map_err(|e| ApiError::unavailable(e.to_string()))?;
            if !matches_code(&replay(&records), code) {
                return Err(ApiError::not_found(format!("no case {case_id}")));
            }
            Ok((Actor::anonymous(), Some(code.clone())))
        }
        (None, None) => Err(ApiError::unauthorized("send Authorization: Bearer <token> (or X-Follow-Up-Code)")),
    }
}

/// `POST /v1/cases/{id}/comments`.
pub async fn comment(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let case_id = super::parse_id(&id)?;
    let (actor, code) = commenter(&state, &headers, case_id).await?;
    let req: CommentRequest = parse_json(&headers, &bytes)?;
    let mentions = mentions(&state, &req.body);
    let salt = format!("{case_id}/comment/{}", code.as_deref().unwrap_or_default());
    let command_id = command_id(&state.secret, &headers, &actor, &salt)?;
    let mut cmd = Command::new(command_id, case_id, actor, CommandBody::AddComment { body: req.body, mentions });
    cmd.follow_up_code = code;
    run(&state, cmd, true).await
}

/// `POST /v1/cases/{id}/comments/{n}/retract`.
pub async fn retract_comment(
    State(state): State<Shared>,
    Path((id, number)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let case_id = super::parse_id(&id)?;
    let number: u32 = number.parse().map_err(|_| ApiError::not_found(format!("no comment {number}")))?;
    let (actor, code) = commenter(&state, &headers, case_id).await?;
    let salt = format!("{case_id}/comment/{number}/retract/{}", code.as_deref().unwrap_or_default());
    let command_id = command_id(&state.secret, &headers, &actor, &salt)?;
    let mut cmd = Command::new(command_id, case_id, actor, CommandBody::RetractComment { number });
    cmd.follow_up_code = code;
    run(&state, cmd, false).await
}

// ------------------------------------------------------------------------------ hand-overs

/// `POST /v1/whistles/{id}/hand-overs/{n}/{accept|refuse}`.
pub async fn decide_hand_over(
    State(state): State<Shared>,
    Path((id, number, decision)): Path<(String, String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let actor = authenticated(&state, &headers)?;
    let case_id = super::parse_id(&id)?;
    let number: u32 = number.parse().map_err(|_| ApiError::not_found(format!("no hand-over proposal {number}")))?;
    let req = super::commands::action_body(&bytes)?;
    let accept = match decision.as_str() {
        "accept" => true,
        "refuse" => false,
        other => return Err(ApiError::not_found(format!("no hand-over decision {other:?}"))),
    };
    super::commands::visible_case(&state, &actor, case_id).await?;
    let command_id = command_id(&state.secret, &headers, &actor, &format!("{case_id}/hand-over/{number}/{decision}"))?;
    let body = CommandBody::DecideHandOver {
        number,
        accept,
        reason: req.reason,
        township_decides: state.org.cases.township_decides_hand_overs,
    };
    run(&state, Command::new(command_id, case_id, actor, body), false).await
}
