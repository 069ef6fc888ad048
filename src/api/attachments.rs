//! Evidence files: `POST /v1/cases/{id}/attachments` (a raw body with `?name=`, or
//! `multipart/form-data` with one file) and `GET /v1/cases/{id}/attachments/{n}`. The bytes go to
//! the file store first (durable), then the event naming them (name, size, kind, SHA-256) to the
//! log; the kind is told from the bytes, and a file is served as an attachment unless it is an
//! image, never sniffed.

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{authenticated, command_id, parse_id, ApiError, Shared};
use crate::domain::command::{Command, CommandBody};
use crate::domain::files::{clean_name, detect, is_image};
use crate::domain::State as CaseState;
use crate::execute::replay;

/// Room for the multipart framing around a file of the largest size allowed.
pub const MULTIPART_SLACK_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    name: Option<String>,
}

/// `POST /v1/cases/{id}/attachments`.
pub async fn upload(
    State(state): State<Shared>,
    Path(id): Path<String>,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let case_id = parse_id(&id)?;
    let actor = authenticated(&state, &headers)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let read = super::commands::visible_case(&state, &actor, case_id).await?;
    let (name, bytes) = body_file(&state, &headers, query, request).await?;
    let limits = &state.org.attachments;
    if bytes.is_empty() {
        return Err(ApiError::invalid_field("file", "the file is empty"));
    }
    if bytes.len() as u64 > limits.max_bytes {
        return Err(too_large(limits.max_bytes));
    }
    let content_type = detect(&bytes).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "only photos (JPEG, PNG, GIF, WebP, HEIC), PDF and Office documents are taken",
        )
    })?;
    let name = clean_name(&name).ok_or_else(|| ApiError::invalid_field("name", "a file needs a name"))?;
    let sha256 = crate::files::sha256_hex(&bytes);
    let salt = format!("{case_id}/attachment/{sha256}");
    let command_id = command_id(&state.secret, &headers, &actor, &salt)?;
    let body = CommandBody::AddAttachment {
        name,
        size: bytes.len() as u64,
        content_type: content_type.to_owned(),
        sha256: sha256.clone(),
    };
    let cmd = Command::new(command_id, case_id, actor, body);
    // Refused before anything is stored: who may attach, and how many files the case has.
    let records = match read {
        Some(records) => records,
        None => state.log.read_case(case_id).await.map_err(|e| ApiError::unavailable(e.to_string()))?,
    };
    let current = replay(&records);
    let command = cmd.command_id.to_string();
    let repeated = records.iter().any(|r| r.msg_id.as_deref() == Some(command.as_str()));
    if !repeated {
        if current.attachments().len() >= limits.max_per_case {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("this case carries its most files ({})", limits.max_per_case),
            ));
        }
        crate::domain::decide(&current, &cmd, state.clock.now())?;
        state.files.put(&sha256, bytes).await.map_err(|e| ApiError::unavailable(e.to_string()))?;
    }
    super::commands::run(&state, cmd, true).await
}

/// The file of a request: a raw body named by `?name=`, or the one file of a multipart form.
async fn body_file(
    state: &Shared,
    headers: &HeaderMap,
    query: UploadQuery,
    request: Request,
) -> Result<(String, Bytes), ApiError> {
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"));
    // axum answers a body over the route's limit with 413: say what the limit is.
    let failed = |status: StatusCode, text: String| {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(state.org.attachments.max_bytes)
        } else {
            ApiError::bad_request(format!("cannot read the upload: {text}"))
        }
    };
    if !multipart {
        let name = query.name.ok_or_else(|| ApiError::invalid_field("name", "name the file: ?name=照片.jpg"))?;
        let bytes = Bytes::from_request(request, state).await.map_err(|e| failed(e.status(), e.body_text()))?;
        return Ok((name, bytes));
    }
    let mut form = Multipart::from_request(request, state).await.map_err(|e| failed(e.status(), e.body_text()))?;
    let mut found = None;
    while let Some(field) = form.next_field().await.map_err(|e| failed(e.status(), e.body_text()))? {
        let Some(file_name) = field.file_name().map(str::to_owned) else { continue };
        if found.is_some() {
            return Err(ApiError::bad_request("send one file per request"));
        }
        let bytes = field.bytes().await.map_err(|e| failed(e.status(), e.body_text()))?;
        found = Some((query.name.clone().unwrap_or(file_name), bytes));
    }
    found.ok_or_else(|| ApiError::invalid_field("file", "the form holds no file"))
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("a file may be at most {:.1} MiB", max as f64 / (1024.0 * 1024.0)),
    )
}

/// `GET /v1/cases/{id}/attachments/{n}`: scoped like the case.
pub async fn download(
    State(state): State<Shared>,
    Path((id, number)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let case_id = parse_id(&id)?;
    let actor = authenticated(&state, &headers)?;
    let read = super::commands::visible_case(&state, &actor, case_id).await?;
    let not_found = || ApiError::not_found(format!("no file {number} on case {case_id}"));
    let number: u32 = number.parse().map_err(|_| not_found())?;
    let find = |case: &CaseState| case.attachments().iter().find(|a| a.number == number).cloned();
    // What the scope check read, else the views, else (a file just attached) the log.
    let found = match read {
        Some(records) => find(&replay(&records)),
        None => match state.views.case(case_id)?.and_then(|v| find(&v.state)) {
            Some(a) => Some(a),
            None => {
                find(&replay(&state.log.read_case(case_id).await.map_err(|e| ApiError::unavailable(e.to_string()))?))
            }
        },
    };
    let attachment = found.ok_or_else(not_found)?;
    let bytes = match state.files.get(&attachment.sha256).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            tracing::error!(%case_id, number, sha256 = %attachment.sha256, "an attached file is missing from the store");
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "file_missing",
                format!("file {number} of this case is missing from the file store; restore it from a backup"),
            ));
        }
        Err(e @ crate::files::FileError::Damaged(_)) => {
            tracing::error!(%case_id, number, "{e}");
            return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "file_damaged", e.to_string()));
        }
        Err(e) => return Err(ApiError::unavailable(e.to_string())),
    };
    let disposition = if is_image(&attachment.content_type) { "inline" } else { "attachment" };
    let encoded = super::reports::percent(&attachment.name);
    let mut response = (StatusCode::OK, bytes).into_response();
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&attachment.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("{disposition}; filename*=UTF-8''{encoded}")) {
        out.insert(header::CONTENT_DISPOSITION, value);
    }
    out.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    out.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=86400, immutable"));
    if let Ok(value) = HeaderValue::from_str(&format!("\"{}\"", attachment.sha256)) {
        out.insert(header::ETAG, value);
    }
    Ok(response)
}
