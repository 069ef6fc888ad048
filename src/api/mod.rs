//! The HTTP API (axum): commands, queries, the live alert stream, metrics, health.
//!
//! `app(state)` builds the router without a socket, so tests call it directly.
//! Every error is `{"error":{"code","message"}}`: 400 malformed, 401 no or unknown token,
//! 403 not allowed, 404 unknown or out-of-scope case, 409 illegal transition or conflict,
//! 413 body too large, 422 invalid field, 503 log unavailable. Nothing a client sends
//! produces a 500.

mod actions;
mod attachments;
pub mod auth;
mod commands;
mod export;
pub mod links;
mod openapi;
mod queries;
pub mod reports;
mod sse;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::clock::Clock;
use crate::domain::event::Actor;
use crate::domain::{Calendar, Rejection, SlaPolicy};
use crate::execute::ExecuteError;
use crate::log::{EventLog, LogError};
use crate::projector::model::AlertView;
use crate::projector::views::{ViewError, Views};
use auth::{Org, Tokens};

/// Largest request body accepted, in bytes.
pub const REQUEST_BODY_BYTES_MAX: usize = 64 * 1024;
/// Response header with the log position a command's record is at.
pub const POSITION_HEADER: &str = "x-log-position";
/// Request header: answer only from views that have applied the log up to this position.
pub const MIN_POSITION_HEADER: &str = "x-min-position";
/// Longest a request waits for the views to reach its `X-Min-Position`.
pub const MIN_POSITION_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Longest Idempotency-Key accepted, in characters.
pub const IDEMPOTENCY_KEY_CHARS_MAX: usize = 200;

/// Counters the API keeps for /metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    pub appends: AtomicU64,
    pub conflicts: AtomicU64,
    pub rejections: AtomicU64,
    pub refusals: AtomicU64,
}

/// Everything a request handler can reach.
pub struct AppState {
    pub log: Arc<dyn EventLog>,
    /// Runs commands (shared with the watchdog, so both use one cache of cases).
    pub executor: Arc<crate::execute::Executor>,
    pub views: Views,
    pub clock: Arc<dyn Clock>,
    pub org: Org,
    pub policy: SlaPolicy,
    pub tokens: RwLock<Tokens>,
    pub tokens_path: Option<std::path::PathBuf>,
    /// Modification time of the token file when it was last read.
    pub tokens_loaded: RwLock<Option<std::time::SystemTime>>,
    pub live_alerts: broadcast::Sender<AlertView>,
    /// The projector's checkpoint and health.
    pub progress: crate::projector::Progress,
    /// The log's head when the service started: ready once the views have reached it.
    pub startup_head: u64,
    pub metrics: Metrics,
    pub delivery: Option<Arc<crate::alerts::Delivery>>,
    /// Per-installation secret: anonymous follow-up codes for keyed requests derive from it.
    pub secret: String,
    /// Turns true when the service is stopping: live streams end so the server can stop.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Texts of cases as compared for possible duplicates.
    pub fingerprints: links::FingerprintCache,
    /// Evidence files (beside the log: the data folder, or the NATS Object Store).
    pub files: Arc<dyn crate::files::FileStore>,
}

pub type Shared = Arc<AppState>;

/// The whole router.
pub fn app(state: Shared) -> Router {
    Router::new()
        .route("/", get(crate::web::index))
        .route("/assets/{name}", get(crate::web::script))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(queries::ready))
        .route("/metrics", get(queries::metrics))
        .route("/openapi.json", get(openapi::document))
        .route("/v1/me", get(queries::me))
        .route("/v1/org", get(queries::org))
        .route("/v1/whistles", post(commands::raise))
        .route("/v1/whistles/similar", post(links::similar_to_draft))
        .route("/v1/whistles/{id}/{action}", post(commands::whistle_action))
        .route("/v1/whistles/{id}/hand-overs/{n}/{decision}", post(links::decide_hand_over))
        .route("/v1/feedback", post(commands::submit))
        .route("/v1/feedback/{id}/{action}", post(commands::feedback_action))
        .route("/v1/cases", get(queries::list_cases))
        .route("/v1/cases/export", get(export::export))
        .route("/v1/cases/{id}", get(queries::case))
        .route("/v1/follow-up", get(queries::follow_up))
        .route("/v1/cases/{id}/extensions", post(commands::request_extension))
        .route("/v1/cases/{id}/similar", get(links::similar_to_case))
        .route("/v1/cases/{id}/comments", post(links::comment))
        .route(
            "/v1/cases/{id}/attachments",
            post(attachments::upload).layer(DefaultBodyLimit::max(
                usize::try_from(state.org.attachments.max_bytes).unwrap_or(usize::MAX)
                    + attachments::MULTIPART_SLACK_BYTES,
            )),
        )
        .route("/v1/cases/{id}/attachments/{n}", get(attachments::download))
        .route("/v1/cases/{id}/comments/{n}/retract", post(links::retract_comment))
        .route("/v1/cases/{id}/extensions/{n}/{decision}", post(commands::decide_extension))
        .route("/v1/alerts", get(queries::alerts))
        .route("/v1/alerts/stream", get(sse::stream))
        .route("/v1/alerts/{id}/ack", post(commands::ack_alert))
        .route("/v1/stats", get(reports::stats))
        .route("/v1/reports/{kind}", get(reports::period_report))
        .route("/v1/calendar/{year}", post(commands::publish_calendar))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), read_your_writes))
        .layer(DefaultBodyLimit::max(REQUEST_BODY_BYTES_MAX))
        .layer(axum::middleware::map_response(too_large))
        .with_state(state)
}

/// Reads after writes: a request with `X-Min-Position: N` (the position a command answered
/// with) is answered only once the views have applied the log up to N, waiting at most
/// [`MIN_POSITION_WAIT`]; after that it is a 503 to retry, never a stale answer.
async fn read_your_writes(
    axum::extract::State(state): axum::extract::State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(value) = request.headers().get(MIN_POSITION_HEADER) else { return next.run(request).await };
    let Some(position) = value.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()) else {
        return ApiError::bad_request("X-Min-Position must be a log position (a whole number)").into_response();
    };
    let mut checkpoint = state.progress.checkpoint.clone();
    let reached =
        matches!(tokio::time::timeout(MIN_POSITION_WAIT, checkpoint.wait_for(|c| *c >= position)).await, Ok(Ok(_)));
    if !reached {
        let at = *state.progress.checkpoint.borrow();
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "catching_up",
            format!("the views have reached log position {at}, not yet {position}; retry shortly"),
        )
        .into_response();
    }
    next.run(request).await
}

// ------------------------------------------------------------------------------------ errors

/// An error answer: a status, a stable code and a sentence.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The request field an `invalid_field` error is about, when it is about one.
    pub field: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), field: None }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message)
    }
    /// An `invalid_field` error about one named field.
    pub fn invalid_field(field: &'static str, message: impl Into<String>) -> Self {
        ApiError { field: Some(field), ..ApiError::invalid(message) }
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(field) = self.field {
            error["field"] = json!(field);
        }
        let body = Json(json!({ "error": error }));
        (self.status, body).into_response()
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        let status = match r {
            Rejection::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Rejection::Forbidden(_) => StatusCode::FORBIDDEN,
            Rejection::NotFound(_) => StatusCode::NOT_FOUND,
            Rejection::Conflict(_) => StatusCode::CONFLICT,
        };
        let field = match &r {
            Rejection::Invalid { field, .. } => Some(*field),
            _ => None,
        };
        ApiError { field, ..ApiError::new(status, r.code(), r.to_string()) }
    }
}

impl From<ExecuteError> for ApiError {
    fn from(e: ExecuteError) -> Self {
        match e {
            ExecuteError::Rejected(r) => r.into(),
            ExecuteError::Busy(_) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            ExecuteError::Log(l) => l.into(),
        }
    }
}

impl From<LogError> for ApiError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::TooLarge { .. } => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string()),
            LogError::NotStored(_) => ApiError::unavailable(format!(
                "{e}; nothing was stored, the command may be retried (with the same Idempotency-Key)"
            )),
            LogError::Unavailable(_) | LogError::Conflict { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "outcome_unknown",
                format!(
                    "{e}; the command may or may not have been stored: retry with the same Idempotency-Key, \
                     which returns the stored result or stores it once"
                ),
            ),
            LogError::Encode(_) | LogError::Setup(_) => {
                tracing::error!("log: {e}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
        }
    }
}

impl From<ViewError> for ApiError {
    fn from(e: ViewError) -> Self {
        tracing::error!("views: {e}");
        ApiError::unavailable("the views are not readable right now")
    }
}

/// The request's media type, lower case, without parameters ("" when there is none).
pub fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Parses a JSON request body, after the caller has been checked: a body error never
/// reaches an unauthenticated caller.
pub fn parse_json<T: DeserializeOwned>(headers: &HeaderMap, bytes: &[u8]) -> Result<T, ApiError> {
    if media_type(headers) != "application/json" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as Content-Type: application/json",
        ));
    }
    parse_json_bytes(bytes)
}

/// Parses JSON: syntax errors are 400, wrong or missing fields 422.
pub fn parse_json_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::invalid(e.to_string()),
        _ => ApiError::bad_request(format!("the body is not valid JSON: {e}")),
    })
}

/// Turns axum's body-size refusal into this API's error shape.
pub async fn too_large(response: Response) -> Response {
    // A handler's own 413 (a file over its limit) already says what the limit is.
    let explained = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !explained {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than {REQUEST_BODY_BYTES_MAX} bytes"),
        )
        .into_response();
    }
    response
}

// ------------------------------------------------------------------------------------ callers

/// Who is calling: a bearer token's identity, or (for anonymous feedback) a follow-up code.
pub struct Caller {
    pub actor: Option<Actor>,
    pub follow_up_code: Option<String>,
}

impl Caller {
    /// The identity, or 401.
    pub fn actor(&self) -> Result<&Actor, ApiError> {
        self.actor.as_ref().ok_or_else(|| ApiError::unauthorized("send Authorization: Bearer <token>"))
    }
}

/// Reads the caller from the headers; a present but unknown token is 401.
pub fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let follow_up_code = headers
        .get("x-follow-up-code")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    let token = match headers.get(axum::http::header::AUTHORIZATION) {
        None => return Ok(Caller { actor: None, follow_up_code }),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must be Bearer <token>"))?,
    };
    match identify(state, token) {
        Some(actor) => Ok(Caller { actor: Some(actor), follow_up_code }),
        None => {
            state.metrics.refusals.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("refused: unknown token");
            Err(ApiError::unauthorized("unknown token"))
        }
    }
}

/// A caller with a token, or 401.
pub fn authenticated(state: &AppState, headers: &HeaderMap) -> Result<Actor, ApiError> {
    caller(state, headers)?.actor().cloned()
}

fn identify(state: &AppState, token: &str) -> Option<Actor> {
    if let Some(actor) = state.tokens.read().ok()?.identify(token) {
        return Some(actor.clone());
    }
    // A token added with `whistle token add` while serving: reload when the file changed.
    let path = state.tokens_path.as_ref()?;
    let modified = token_file_modified(path);
    {
        let mut loaded = state.tokens_loaded.write().ok()?;
        if *loaded == modified {
            return None;
        }
        *loaded = modified;
    }
    let fresh = Tokens::load(path).ok()?;
    let found = fresh.identify(token).cloned();
    if let Ok(mut tokens) = state.tokens.write() {
        *tokens = fresh;
    }
    found
}

/// The token file's modification time, to notice tokens added while serving.
pub fn token_file_modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Logs and counts a refusal.
pub fn refuse(state: &AppState, actor: &Actor, what: &str) -> ApiError {
    state.metrics.refusals.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(role = actor.role.as_str(), unit = %actor.unit, "refused: {what}");
    ApiError::forbidden(format!("a {} may not {what}", actor.role.as_str()))
}

/// The command id for a request: derived from the installation secret, the caller and its
/// Idempotency-Key, so a repeated request is recognised; a fresh one otherwise. Without the
/// secret, whoever sees ids (they are published) could test guessed keys against each unit
/// and name the submitter of anonymous feedback.
pub fn command_id(secret: &str, headers: &HeaderMap, actor: &Actor, salt: &str) -> Result<Uuid, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(Uuid::now_v7()),
        Some(v) => {
            let key = v.to_str().map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII"))?;
            if key.is_empty() || key.chars().count() > IDEMPOTENCY_KEY_CHARS_MAX {
                return Err(ApiError::bad_request(format!(
                    "Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_CHARS_MAX} characters"
                )));
            }
            Ok(derived_id(&[secret, actor.role.as_str(), &actor.unit, salt, key]))
        }
    }
}

pub use crate::domain::decide::derived_id;

/// The calendar as published so far, from its one owner (the projector).
pub fn calendar(state: &AppState) -> Arc<Calendar> {
    state.progress.calendar.borrow().clone()
}

pub fn parse_id(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| ApiError::not_found(format!("no case {text}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: every log error answered 503 "may be retried", a record too large included.
    #[test]
    fn log_errors_answer_what_happened_and_whether_a_retry_can_help() {
        let too_large = ApiError::from(LogError::TooLarge { bytes: 300_000 });
        assert_eq!((too_large.status, too_large.code), (StatusCode::PAYLOAD_TOO_LARGE, "too_large"));
        let not_stored = ApiError::from(LogError::NotStored("disk full".into()));
        assert_eq!(not_stored.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(not_stored.message.contains("nothing was stored"), "{}", not_stored.message);
        let unknown = ApiError::from(LogError::Unavailable("no ack".into()));
        assert_eq!((unknown.status, unknown.code), (StatusCode::SERVICE_UNAVAILABLE, "outcome_unknown"));
        assert!(unknown.message.contains("same Idempotency-Key"), "{}", unknown.message);
        let setup = ApiError::from(LogError::Setup("stream misconfigured".into()));
        assert_eq!(setup.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
