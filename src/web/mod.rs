//! The web dashboard: one page and its JavaScript modules, served by the binary (no build
//! step). Chinese labels, English in titles. The page signs in with a token kept in the
//! browser's local storage and calls the same JSON API as every other client; it shows the
//! actions the API lists for a case and no others.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("index.html");

/// The page's scripts (ES modules), by the name under `/assets/`.
const SCRIPTS: &[(&str, &str)] = &[
    ("app.js", include_str!("app.js")),
    ("core.js", include_str!("core.js")),
    ("lists.js", include_str!("lists.js")),
    ("case.js", include_str!("case.js")),
    ("followup.js", include_str!("followup.js")),
    ("stats.js", include_str!("stats.js")),
];

/// The page loads only its own script, talks only to its own origin, and may not be framed;
/// inline style (the page's stylesheet and computed widths) is the one inline thing it uses.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'none'";

pub async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        INDEX_HTML,
    )
}

pub async fn script(Path(name): Path<String>) -> Response {
    let Some((_, text)) = SCRIPTS.iter().find(|(n, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        *text,
    )
        .into_response()
}
