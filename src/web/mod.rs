//! The web dashboard: one page and one script, served by the binary (no build step).
//! Chinese labels, English in titles. The page signs in with a token kept in the browser's
//! local storage and calls the same JSON API as every other client.

use axum::http::header;
use axum::response::IntoResponse;

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");

pub async fn index() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], INDEX_HTML)
}

pub async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], APP_JS)
}
