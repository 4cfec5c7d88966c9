//! The web playground at `/`: a chat page for trying the served chat models from a browser.
//!
//! Its four files (`assets/playground/`: plain HTML, CSS, one script and an icon, with no build step) are
//! compiled into the binary, and the page calls only this server's own API on the same origin, so it
//! needs neither CORS nor any outbound request. Every file is served with a Content-Security-Policy that
//! allows scripts, styles, images and connections from this origin only, no inline script or style, no
//! framing, and no HTML sinks at all (Trusted Types with no policy): model output can only become text.
//! The files need no API key, since they hold no data; every API call the page makes does.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::app::AppState;

/// The policy every playground file is served with.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'; object-src 'none'; require-trusted-types-for 'script'; trusted-types 'none'";

/// Each file's path, content type and bytes.
const FILES: [(&str, &str, &str); 4] = [
    ("/", "text/html; charset=utf-8", include_str!("../assets/playground/index.html")),
    ("/playground/app.js", "text/javascript; charset=utf-8", include_str!("../assets/playground/app.js")),
    ("/playground/style.css", "text/css; charset=utf-8", include_str!("../assets/playground/style.css")),
    ("/playground/icon.svg", "image/svg+xml", include_str!("../assets/playground/icon.svg")),
];

/// A route for each of the playground's files.
pub fn routes() -> Router<AppState> {
    FILES.iter().fold(Router::new(), |router, &(path, content_type, body)| {
        router.route(path, get(move || async move { file(content_type, body) }))
    })
}

/// Whether `path` is one of the playground's files, which `auth` serves without a key.
pub fn serves(path: &str) -> bool {
    FILES.iter().any(|&(file, ..)| file == path)
}

/// One file with its security headers; `no-cache` so that an upgraded server's page is never stale.
fn file(content_type: &'static str, body: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    (headers, body).into_response()
}
