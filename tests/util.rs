//! Shared set-up: models, state, and the one place tests talk to the router.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hearth_models::{tiny, WeightFormat};
use hearth_server::config::{Config, EngineSettings, ModelConfig};
use hearth_server::registry::catalog::Kind;
use hearth_server::AppState;
use tower::ServiceExt;

/// Everything this test binary logged (one global subscriber: per-test subscribers miss events when
/// tests run in parallel, because tracing caches each call site's interest process-wide).
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The logs captured so far.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

/// One inference thread (CI has two cores, and tests run side by side) and log capture.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        hearth_models::set_inference_threads(1);
        let subscriber = tracing_subscriber::fmt().with_writer(|| LogWriter).with_ansi(false).finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
    });
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The Python interpreter with the packages the tests use (the OpenAI and Anthropic SDKs, LangChain,
/// `gguf`, `numpy`): `HEARTH_PYTHON`, else the repository's `.venv`.
pub fn python() -> String {
    if let Ok(python) = std::env::var("HEARTH_PYTHON") {
        return python;
    }
    let venv = root().join(".venv/bin/python");
    assert!(venv.exists(), "{} is missing: scripts/test.sh creates it", venv.display());
    venv.display().to_string()
}

/// The real default model; fetched by `scripts/fetch-models.sh` (the README's test command runs it).
pub fn default_model() -> PathBuf {
    let path = root().join(hearth_server::config::DEFAULT_MODEL);
    assert!(path.exists(), "{} is missing: run scripts/fetch-models.sh (scripts/test.sh does)", path.display());
    path
}

/// The real embedding model directory; fetched by `scripts/fetch-models.sh`.
pub fn default_embedding_model() -> PathBuf {
    let path = root().join(hearth_server::config::DEFAULT_EMBEDDING_MODEL);
    assert!(path.exists(), "{} is missing: run scripts/fetch-models.sh (scripts/test.sh does)", path.display());
    path
}

/// A config serving `path` (and no embedding model) with small engine limits.
pub fn config(path: PathBuf, weights: WeightFormat) -> Config {
    let default = Config::default_resolved();
    Config {
        model: ModelConfig {
            path: Some(path),
            served_model_name: None,
            weights,
            chat_template: None,
            reasoning: Default::default(),
            embedding: None,
        },
        engine: EngineSettings { threads: 1, ..default.engine },
        ..default
    }
}

/// The tiny random-weight model's file (written once per test binary).
pub fn tiny_model() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hearth-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        tiny::write_llama(&dir, 7).unwrap()
    })
    .clone()
}

/// The id of the chat model and of the embedding model (empty when none) that `state` serves.
pub fn served_ids(state: &AppState) -> (String, String) {
    let listed = state.models.list();
    let id = |kind| listed.iter().find(|m| m.entry.kind == kind).map(|m| m.entry.id.clone()).unwrap_or_default();
    (id(Kind::Chat), id(Kind::Embedding))
}

/// The engine counters of the one chat model `state` has loaded.
pub fn engine_stats(state: &AppState) -> hearth_engine::EngineStats {
    state.models.list().into_iter().find_map(|m| m.engine).expect("a chat model is loaded")
}

/// A started app on the tiny model, shared by the tests that need no special configuration.
pub fn tiny_state() -> AppState {
    static STATE: OnceLock<AppState> = OnceLock::new();
    STATE.get_or_init(|| tiny_state_with(|_| {})).clone()
}

/// A fresh app on the tiny model, its default configuration changed by `adjust`.
pub fn tiny_state_with(adjust: impl FnOnce(&mut Config)) -> AppState {
    init();
    let mut config = config(tiny_model(), WeightFormat::AsStored);
    adjust(&mut config);
    hearth_server::start(&config).unwrap()
}

/// Sends a request with extra headers; returns the whole response.
pub async fn call_with(state: &AppState, request: Request<Body>) -> axum::response::Response {
    hearth_server::app(state.clone()).oneshot(request).await.unwrap()
}

/// The body of a response as text.
pub async fn body_text(response: axum::response::Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Sends one request to the router; returns the status and the body as text.
pub async fn call(state: &AppState, method: &str, path: &str, body: Option<&str>) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let response = call_with(state, request).await;
    (response.status(), body_text(response).await)
}

/// A request for `path` on `address` as raw HTTP/1.1 bytes, JSON `body` or none, closing after the response.
pub fn raw_request(address: std::net::SocketAddr, method: &str, path: &str, body: Option<&str>) -> Vec<u8> {
    let body = body.unwrap_or("");
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The `hearth` binary beside this test binary (a different package's binary has no `CARGO_BIN_EXE_*`).
pub fn hearth_binary() -> PathBuf {
    let me = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/e2e-<hash> -> target/<profile>/hearth
    let path = me.parent().and_then(Path::parent).expect("target/<profile>/deps").join("hearth");
    assert!(
        path.exists(),
        "{} is missing: run cargo build --release --bin hearth (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A running `hearth serve` process on 127.0.0.1, killed on drop if it is still running.
pub struct Hearth {
    child: Child,
    logs: Arc<Mutex<String>>,
    /// Where it listens, as it logged it: `http://127.0.0.1:PORT` or `https://…`.
    pub url: String,
}

impl Hearth {
    /// Runs `hearth serve ARGS` on 127.0.0.1 and a free port; returns once it logs that it listens.
    pub fn start(args: &[&str]) -> Self {
        let mut child = Command::new(hearth_binary())
            .arg("serve")
            .args(args)
            .args(["--host", "127.0.0.1", "--port", "0", "--log-format", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting hearth");
        let logs = Arc::new(Mutex::new(String::new()));
        let (url_tx, url_rx) = mpsc::channel();
        collect_lines(child.stdout.take().expect("piped"), logs.clone(), Some(url_tx));
        collect_lines(child.stderr.take().expect("piped"), logs.clone(), None);
        let mut hearth = Self { child, logs, url: String::new() };
        match url_rx.recv_timeout(Duration::from_secs(120)) {
            Ok(url) => hearth.url = url,
            Err(_) => panic!("hearth did not start listening:\n{}", hearth.logs()),
        }
        hearth
    }

    /// The address it listens on.
    pub fn address(&self) -> std::net::SocketAddr {
        let authority = self.url.split_once("://").map_or(self.url.as_str(), |(_, rest)| rest);
        authority.parse().unwrap_or_else(|_| panic!("no address in {}", self.url))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the process a real SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("running kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("polling hearth").is_none()
    }

    /// Waits up to `limit` for the process to exit; its exit code (`None` when a signal ended it).
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("polling hearth") {
                return status.code();
            }
            assert!(started.elapsed() < limit, "hearth still running after {limit:?}:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything it printed so far, stdout and stderr.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Hearth {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Appends `output`'s lines to `logs` on a thread of its own; sends the listening URL to `url` once logged.
fn collect_lines(
    output: impl std::io::Read + Send + 'static,
    logs: Arc<Mutex<String>>,
    url: Option<mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            if let (Some(url), Some(found)) = (&url, listening_url(&line)) {
                let _ = url.send(found);
            }
            let mut logs = logs.lock().unwrap_or_else(|p| p.into_inner());
            logs.push_str(&line);
            logs.push('\n');
        }
    });
}

/// `http://127.0.0.1:PORT` from the JSON log line `serving MODEL on http://127.0.0.1:PORT/v1`.
fn listening_url(line: &str) -> Option<String> {
    let line: serde_json::Value = serde_json::from_str(line).ok()?;
    let message = line["fields"]["message"].as_str()?;
    let url = message.strip_prefix("serving ")?.split_once(" on ")?.1;
    Some(url.trim_end_matches("/v1").to_string())
}

/// A fixture's `[{"role", "content"}]` as template messages.
pub fn text_messages(messages: &serde_json::Value) -> Vec<hearth_text::PromptMessage> {
    let text = |m: &serde_json::Value| {
        hearth_text::PromptMessage::text(m["role"].as_str().unwrap(), m["content"].as_str().unwrap())
    };
    messages.as_array().unwrap().iter().map(text).collect()
}
