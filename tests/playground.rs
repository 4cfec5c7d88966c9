//! The web playground at `/`: its files and headers through the router on the tiny model, then the page
//! itself in a real headless Chromium (Debian's `chromium` and `chromium-driver`, driven through WebDriver
//! by `tests/playground/test_playground.py`) against the real server with the real default model.

use std::process::Command;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use hearth_models::WeightFormat;
use hearth_server::config::{Config, EmbeddingModelConfig};
use hearth_server::playground::CONTENT_SECURITY_POLICY;
use hearth_server::ServeOptions;
use serde_json::Value;

use crate::util::{
    body_text, call, call_with, config, default_embedding_model, default_model, init, python, root, tiny_state,
    tiny_state_with,
};

/// Each file, its content type, and a line it must contain.
const FILES: [(&str, &str, &str); 4] = [
    ("/", "text/html; charset=utf-8", "<title>Hearth playground</title>"),
    ("/playground/app.js", "text/javascript; charset=utf-8", "function renderText("),
    ("/playground/style.css", "text/css; charset=utf-8", "prefers-color-scheme: dark"),
    ("/playground/icon.svg", "image/svg+xml", "<svg"),
];

fn get(path: &str, key: Option<&str>) -> Request<Body> {
    let builder = Request::builder().uri(path);
    let builder = match key {
        Some(key) => builder.header(header::AUTHORIZATION, format!("Bearer {key}")),
        None => builder,
    };
    builder.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn the_page_and_its_files_come_with_a_strict_policy() {
    let state = tiny_state();
    let mut bodies = Vec::new();
    for (path, content_type, contains) in FILES {
        let response = call_with(&state, get(path, None)).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers[header::CONTENT_TYPE], content_type, "{path}");
        assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY, "{path}");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        assert!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none(), "{path}: CORS stays off");
        let body = body_text(response).await;
        assert!(body.contains(contains), "{path}");
        bodies.push(body);
    }
    for directive in ["default-src 'self'", "frame-ancestors 'none'", "require-trusted-types-for 'script'"] {
        assert!(CONTENT_SECURITY_POLICY.contains(directive), "{directive}");
    }
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"), "no inline script or style, no eval");
    let [html, js, css, _] = &bodies[..] else { unreachable!("four files") };
    // Nothing on the page loads from elsewhere, and nothing inline needs a looser policy.
    for attribute in ["src=\"", "href=\""] {
        for (i, _) in html.match_indices(attribute) {
            let value = &html[i + attribute.len()..];
            assert!(value.starts_with("/playground/"), "{attribute}{}", &value[..value.find('"').unwrap_or(0)]);
        }
    }
    assert_eq!(html.matches("<script").count(), html.matches("<script type=\"module\" src=").count());
    assert!(!html.contains(" style=") && !html.contains("<style"), "inline style");
    for (i, _) in html.match_indices(" on") {
        let name: String = html[i + 3..].chars().take_while(char::is_ascii_alphabetic).collect();
        assert!(!html[i + 3 + name.len()..].starts_with('='), "an inline handler: on{name}");
    }
    assert!(!css.contains("url(") && !css.contains("@import") && !css.contains("@font-face"));
    assert!(!js.contains("://"), "the script names no other origin");
    for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"] {
        assert!(!js.contains(sink), "the script uses {sink}");
    }
}

#[tokio::test]
async fn the_files_need_no_key_but_the_api_does() {
    let state = tiny_state_with(|c| c.server.api_keys = vec!["sk-page".into()]);
    for (path, ..) in FILES {
        assert_eq!(call_with(&state, get(path, None)).await.status(), StatusCode::OK, "{path}");
    }
    for path in ["/v1/models", "/metrics", "/playground/", "/playground/other.js", "/index.html"] {
        assert_eq!(call_with(&state, get(path, None)).await.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(call_with(&state, get("/v1/models", Some("sk-page"))).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn no_playground_leaves_slash_a_404_error_object() {
    let state = tiny_state_with(|c| c.server.playground = false);
    for (path, ..) in FILES {
        let (status, body) = call(&state, "GET", path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        let error: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["error"]["message"], format!("no route for {path}"));
    }
    // And with a key required, a request without one is refused like any other.
    let keyed = tiny_state_with(|c| {
        c.server.playground = false;
        c.server.api_keys = vec!["sk-page".into()];
    });
    assert_eq!(call_with(&keyed, get("/", None)).await.status(), StatusCode::UNAUTHORIZED);
}

/// A real server on 127.0.0.1 serving `config` in `runtime`; stopped by dropping `stop`.
struct Served {
    url: String,
    model: String,
    embedding: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

fn serve(runtime: &tokio::runtime::Runtime, config: &Config) -> Served {
    let state = hearth_server::start(config).unwrap();
    let (model, embedding) = crate::util::served_ids(&state);
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async {
        let _ = stopped.await;
    };
    let app = hearth_server::app(state);
    let task = runtime.spawn(hearth_server::serve(
        listener,
        app,
        shutdown,
        ServeOptions::plain(std::time::Duration::from_secs(30)),
    ));
    Served { url, model, embedding, stop, task }
}

#[test]
fn a_real_browser_chats_with_the_real_model() {
    init();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut open = config(default_model(), WeightFormat::AsStored);
    open.model.embedding =
        Some(EmbeddingModelConfig { path: default_embedding_model(), served_model_name: None, optional: false });
    let open = serve(&runtime, &open);
    let key = "sk-playground";
    let mut keyed = config(default_model(), WeightFormat::AsStored);
    keyed.server.api_keys = vec![key.into()];
    (keyed.engine.limits.max_running, keyed.engine.limits.max_waiting) = (1, 0);
    let keyed = serve(&runtime, &keyed);
    let artifacts = root().join("target/playground");

    let started = std::time::Instant::now();
    let status = Command::new(python())
        .arg(root().join("tests/playground/test_playground.py"))
        .env("HEARTH_URL", &open.url)
        .env("HEARTH_KEYED_URL", &keyed.url)
        .env("HEARTH_API_KEY", key)
        .env("HEARTH_MODEL", &open.model)
        .env("HEARTH_EMBEDDING_MODEL", &open.embedding)
        .env("HEARTH_ARTIFACTS", &artifacts)
        .env("PYTHONUNBUFFERED", "1")
        .status()
        .expect("running tests/playground/test_playground.py");
    eprintln!(
        "playground browser suite: {:.0} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        artifacts.display()
    );

    for server in [open, keyed] {
        let _ = server.stop.send(());
        runtime.block_on(server.task).unwrap().unwrap();
    }
    assert!(status.success(), "the playground's browser suite failed");
}
