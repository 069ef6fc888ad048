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
use crate::domain::state::State as CaseState;
use crate::execute::replay;
use crate::projector::keys::{status_list_prefix, unit_list_prefix};
use crate::projector::model::CaseView;

/// Most possible duplicates listed (a raise's answer lists the first [`SIMILAR_LISTED_ON_RAISE`]).
pub const SIMILAR_LISTED_MAX: usize = 10;
pub const SIMILAR_LISTED_ON_RAISE: usize = 5;
/// Most cases compared for a case's page: the window's newest first in each list read.
pub const SIMILAR_COMPARED_MAX: usize = 200;
/// Most cases compared while raising (the township's own newest): a township raises a few
/// whistles a week, and raising stays cheap however busy it is (reading a list newest first
/// costs a few microseconds an entry). The form's check before sending reads more.
pub const SIMILAR_COMPARED_ON_RAISE: usize = 20;
/// Most cases compared for the form's check before sending.
pub const SIMILAR_COMPARED_FOR_DRAFT: usize = 100;

/// Whether the actor may see the case: by its state, or because a case the actor's unit raised
/// is linked to it as a duplicate (the unit follows the original).
pub fn can_see_view(org: &super::auth::Org, actor: &Actor, view: &CaseView) -> bool {
    can_see(org, actor, &view.state)
        || (matches!(actor.role, Role::Township) && view.followers().any(|u| u == actor.unit))
}

/// What a new or existing report is compared with.
pub struct Probe {
    pub kind: &'static str,
    pub fingerprint: Fingerprint,
    /// The units whose lists hold the candidates: a whistle's township and departments.
    pub units: Vec<String>,
    pub exclude: Option<Uuid>,
    pub actor: Actor,
    /// Most list entries read per list.
    pub examined: usize,
    /// Most possible duplicates listed.
    pub listed: usize,
}

/// What is compared and shown of a case as a possible duplicate: its text's fingerprint, its
/// title and township — none of which changes once it is raised or submitted.
pub struct Known {
    pub fingerprint: Fingerprint,
    pub title: String,
    pub township: Option<String>,
}

impl Known {
    /// A case as its view shows it: a whistle's title and description, a feedback's body.
    pub fn of(view: &CaseView) -> Option<Known> {
        let fingerprint = match &view.state {
            CaseState::Whistle(c) => Fingerprint::of(&c.kind.title, &c.kind.description),
            CaseState::Feedback(c) => Fingerprint::of("", &c.kind.body),
            _ => return None,
        };
        Some(Known { fingerprint, title: view.title(), township: view.township().map(str::to_owned) })
    }
}

/// The [`Known`] parts of cases, so suggesting duplicates reads each candidate's status from
/// the lists and the rest from here, decoding a case view only the first time.
#[derive(Default)]
pub struct FingerprintCache(std::sync::Mutex<std::collections::HashMap<Uuid, std::sync::Arc<Known>>>);

/// Most cases kept (about 1 kB each for a typical whistle); the cache starts over past it.
const FINGERPRINTS_CACHED_MAX: usize = 10_000;

impl FingerprintCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Uuid, std::sync::Arc<Known>>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn put(&self, case_id: Uuid, known: Known) -> std::sync::Arc<Known> {
        let known = std::sync::Arc::new(known);
        let mut map = self.lock();
        if map.len() >= FINGERPRINTS_CACHED_MAX {
            map.clear();
        }
        map.insert(case_id, known.clone());
        known
    }

    /// The cached parts of these cases, under one lock.
    fn known(&self, ids: impl Iterator<Item = Uuid>) -> Vec<Option<std::sync::Arc<Known>>> {
        let map = self.lock();
        ids.map(|id| map.get(&id).cloned()).collect()
    }

    fn get(&self, state: &Shared, case_id: Uuid) -> Result<Option<std::sync::Arc<Known>>, ApiError> {
        if let Some(found) = self.lock().get(&case_id) {
            return Ok(Some(found.clone()));
        }
        let Some(view) = state.views.case(case_id)? else { return Ok(None) };
        Ok(Known::of(&view).map(|known| self.put(case_id, known)))
    }
}

/// Open cases of the same kind opened within the window that the actor may see and that are
/// alike enough, most alike first. Candidates come from the views' lists, newest first and
/// bounded; their status from the status lists; their text from the fingerprint cache.
pub fn similar(state: &Shared, probe: &Probe) -> Result<Vec<Value>, ApiError> {
    let rules = &state.org.cases;
    let now = state.clock.now();
    let from = now - chrono::Duration::days(i64::from(rules.duplicate_window_days));
    let to = now + chrono::Duration::seconds(1);
    // A township or department sees what its own list holds (a follower township's list holds
    // the originals it follows too): only that list is read. Others read the probe's units'.
    // Each list read is one or more prefixes (a kind's cases are its status lists, merged).
    let lists: Vec<Vec<Vec<u8>>> = match (probe.kind, probe.actor.role) {
        ("whistle", Role::Township | Role::Department) => vec![vec![unit_list_prefix(&probe.actor.unit)]],
        ("whistle", _) => probe.units.iter().map(|u| vec![unit_list_prefix(u)]).collect(),
        _ => vec![state.views.status_lists(Some("feedback"))?],
    };
    let mut seen = std::collections::BTreeSet::new();
    // (similarity, case, status, what is known of it, its list suffix)
    type Alike = (f64, Uuid, &'static str, std::sync::Arc<Known>, Vec<u8>);
    let mut alike: Vec<Alike> = Vec::new();
    let statuses = ["open", "resolved"].map(|s| (s, status_list_prefix(probe.kind, s)));
    for list in lists {
        let mut entries = state.views.recent_in_list(&list, from, to, probe.examined)?;
        entries.retain(|(id, _)| Some(*id) != probe.exclude && seen.insert(*id));
        let cached = state.fingerprints.known(entries.iter().map(|(id, _)| *id));
        for ((id, suffix), cached) in entries.into_iter().zip(cached) {
            let known = match cached {
                Some(k) => k,
                None => match state.fingerprints.get(state, id)? {
                    Some(k) => k,
                    None => continue,
                },
            };
            let score = probe.fingerprint.similarity(&known.fingerprint);
            if score < rules.duplicate_threshold {
                continue;
            }
            // Alike enough, then still open (or resolved, awaiting confirmation), of this kind.
            let status = statuses.iter().find(|(_, p)| state.views.listed(p, &suffix).unwrap_or(false));
            if let Some((status, _)) = status {
                alike.push((score, id, status, known, suffix));
            }
        }
    }
    alike.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
    // A township's or department's own list holds only what it may see; otherwise the case is
    // read to check.
    let listed_is_visible = probe.kind == "whistle" && matches!(probe.actor.role, Role::Township | Role::Department);
    let mut out = Vec::new();
    for (score, id, status, known, suffix) in alike {
        if out.len() == probe.listed {
            break;
        }
        if !listed_is_visible && !state.views.case(id)?.is_some_and(|v| can_see_view(&state.org, &probe.actor, &v)) {
            continue;
        }
        out.push(json!({
            "id": id, "kind": probe.kind, "title": known.title, "township": known.township,
            "status": status, "opened_at": crate::projector::keys::list_suffix_time(&suffix),
            "similarity": (score * 100.0).round() / 100.0,
        }));
    }
    Ok(out)
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
        actor: actor.clone(),
        examined: SIMILAR_COMPARED_FOR_DRAFT,
        listed: SIMILAR_LISTED_MAX,
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
    let view = state.views.case(case_id)?.filter(|v| can_see_view(&state.org, &actor, v));
    let view = view.ok_or_else(|| ApiError::not_found(format!("no case {case_id}")))?;
    Ok(Json(json!({ "items": similar(&state, &probe_of(&view, &actor))? })))
}

/// The probe for an existing case.
pub fn probe_of(view: &CaseView, actor: &Actor) -> Probe {
    let (kind, fingerprint, units) = match &view.state {
        CaseState::Whistle(c) => (
            "whistle",
            Fingerprint::of(&c.kind.title, &c.kind.description),
            std::iter::once(c.kind.township.clone()).chain(c.kind.departments.keys().cloned()).collect(),
        ),
        CaseState::Feedback(c) => ("feedback", Fingerprint::of("", &c.kind.body), Vec::new()),
        _ => ("whistle", Fingerprint::of("", ""), Vec::new()),
    };
    Probe {
        kind,
        fingerprint,
        units,
        exclude: Some(view.case_id),
        actor: actor.clone(),
        examined: SIMILAR_COMPARED_MAX,
        listed: SIMILAR_LISTED_MAX,
    }
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
    if !view.state.exists() || !can_see_view(&state.org, actor, &view) {
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
    let (actor, case_id, number, req) =
        super::commands::numbered_decision(&state, &headers, &id, &number, "hand-over proposal", &bytes)?;
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
