//! `GET /`: the chat page and its assets, embedded in the binary so the server needs no build step
//! and the page needs nothing but this server.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// Scripts and styles load only from this server and model output can never run as code; the
/// page fetches nothing but this server's routes.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// (file name under `/assets/`, content type, bytes)
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/app.js"),
    ),
    (
        "markdown.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/markdown.js"),
    ),
    (
        "patch.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/patch.js"),
    ),
    (
        "sse.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/sse.js"),
    ),
    (
        "room-views.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/rooms/views.js"),
    ),
    (
        "room-brainstorm.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/rooms/brainstorm.js"),
    ),
    (
        "room-debate.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/rooms/debate.js"),
    ),
    (
        "room-shark-tank.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/rooms/shark-tank.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../web/style.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../web/favicon.svg"),
    ),
];

const INDEX: &str = include_str!("../../web/index.html");

pub async fn index() -> Response {
    respond("text/html; charset=utf-8", INDEX)
}

pub async fn asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    ASSETS
        .iter()
        .find(|(file, _, _)| *file == name)
        .map(|(_, content_type, body)| respond(content_type, body))
        .ok_or_else(|| ApiError::NoRoute(format!("GET /assets/{name}")))
}

fn respond(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // Embedded in the binary: a new build is a new page, so always revalidate.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
