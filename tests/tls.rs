//! HTTPS without a proxy: rustls in the real accept loop on 127.0.0.1, with self-signed certificates that
//! the `openssl` CLI makes at test time, on the tiny model (and once through the real binary).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hearth_server::config::{Config, ServeArgs, TlsFiles};
use hearth_server::ServeOptions;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::util::{raw_request, tiny_model, tiny_state_with, Hearth};

const MODEL: &str = "tiny-llama";

fn chat_body(max_tokens: u32, stream: bool) -> String {
    serde_json::json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens,
                       "ignore_eos": true, "stream": stream})
    .to_string()
}

/// The certificate for 127.0.0.1 the servers here use, and a second pair (`other`) it must not mix with.
struct Certificates {
    server: TlsFiles,
    other: TlsFiles,
}

fn certificates() -> &'static Certificates {
    static CERTS: OnceLock<Certificates> = OnceLock::new();
    CERTS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hearth-e2e-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Certificates { server: self_signed(&dir, "server"), other: self_signed(&dir, "other") }
    })
}

/// A self-signed P-256 certificate for 127.0.0.1 (an end-entity one: rustls clients refuse a CA as a server's
/// certificate) and its PKCS#8 key, as `DIR/NAME.crt` and `DIR/NAME.key`.
fn self_signed(dir: &Path, name: &str) -> TlsFiles {
    let files = TlsFiles { cert: dir.join(format!("{name}.crt")), key: dir.join(format!("{name}.key")) };
    let output = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&files.key)
        .arg("-out")
        .arg(&files.cert)
        .output()
        .expect("running the openssl CLI");
    assert!(output.status.success(), "openssl failed: {}", String::from_utf8_lossy(&output.stderr));
    files
}

/// A client that trusts exactly `cert` and offers HTTP/2 before HTTP/1.1, as browsers do.
fn connector(cert: &Path) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

async fn connect_tls(address: SocketAddr) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(address).await.unwrap();
    connector(&certificates().server.cert).connect(address.ip().into(), tcp).await.expect("TLS handshake")
}

/// A server on the tiny model with TLS, running until `stop` fires; then it drains for 30 s.
struct TlsServer {
    address: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn serve_tls(header_timeout: Duration) -> TlsServer {
    let state = tiny_state_with(|c| c.engine.limits.max_batch_tokens = 4);
    let lifecycle = state.lifecycle.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let tls = Some(hearth_server::tls::acceptor(&certificates().server).unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
        tokio::spawn(lifecycle.drain(Duration::from_secs(30)));
    };
    let served = tokio::spawn(hearth_server::serve(
        listener,
        hearth_server::app(state),
        shutdown,
        ServeOptions { header_timeout, tls },
    ));
    TlsServer { address, stop, served }
}

/// Reads until the peer closes (at most 20 s); the bytes as text.
async fn read_all(stream: &mut (impl AsyncRead + Unpin), mut received: Vec<u8>) -> String {
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut received)).await.unwrap().unwrap();
    String::from_utf8_lossy(&received).into_owned()
}

/// Reads until the first SSE event has arrived.
async fn read_first_event(stream: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut received = Vec::new();
    while !String::from_utf8_lossy(&received).contains("data: ") {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "closed before the first event");
        received.extend_from_slice(&chunk[..n]);
    }
    received
}

async fn send(stream: &mut (impl AsyncWrite + Unpin), request: &[u8]) {
    stream.write_all(request).await.unwrap();
    stream.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_a_chat_completion_to_a_client_trusting_the_certificate() {
    let server = serve_tls(Duration::from_secs(30)).await;
    let mut tls = connect_tls(server.address).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]), "HTTP/2 is not served");
    send(&mut tls, &raw_request(server.address, "POST", "/v1/chat/completions", Some(&chat_body(5, false)))).await;
    let response = read_all(&mut tls, Vec::new()).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body: serde_json::Value = serde_json::from_str(response.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["object"], "chat.completion", "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "length", "{body}");
    assert_eq!(body["usage"]["completion_tokens"], 5, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_tls_port_gets_no_response() {
    let server = serve_tls(Duration::from_secs(30)).await;
    let mut plain = TcpStream::connect(server.address).await.unwrap();
    send(&mut plain, &raw_request(server.address, "GET", "/v1/models", None)).await;
    // The handshake fails at the first byte: the server closes, at most after a TLS alert record.
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut received))
        .await
        .expect("the server kept a plain-HTTP connection open");
    assert!(!String::from_utf8_lossy(&received).contains("HTTP/"), "plain HTTP got an answer: {received:?}");
    let mut tls = connect_tls(server.address).await;
    send(&mut tls, &raw_request(server.address, "GET", "/v1/models", None)).await;
    assert!(read_all(&mut tls, Vec::new()).await.starts_with("HTTP/1.1 200"), "HTTPS still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_handshakes_is_disconnected() {
    let server = serve_tls(Duration::from_millis(300)).await;
    let mut silent = TcpStream::connect(server.address).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the server kept a connection with no handshake open past its timeout");
    assert!(rest.is_empty(), "{rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_running_tls_streams_finish() {
    let server = serve_tls(Duration::from_secs(30)).await;
    let mut streams = Vec::new();
    for _ in 0..2 {
        let mut tls = connect_tls(server.address).await;
        send(&mut tls, &raw_request(server.address, "POST", "/v1/chat/completions", Some(&chat_body(480, true)))).await;
        let first = read_first_event(&mut tls).await;
        streams.push((tls, first));
    }
    server.stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(TcpStream::connect(server.address).await.is_err(), "new connections are refused while draining");
    for (mut tls, first) in streams {
        let body = read_all(&mut tls, first).await;
        assert!(body.contains("\"finish_reason\":\"length\""), "{body}");
        assert!(body.contains("data: [DONE]") && !body.contains("\"error\""), "{body}");
    }
    tokio::time::timeout(Duration::from_secs(20), server.served).await.unwrap().unwrap().unwrap();
}

#[test]
fn unusable_tls_files_are_startup_errors_naming_the_flag() {
    let Certificates { server, other } = certificates();
    let error = |cert: &PathBuf, key: &PathBuf| {
        let args = ServeArgs { tls_cert: Some(cert.clone()), tls_key: Some(key.clone()), ..ServeArgs::default() };
        let files = Config::resolve(&args).map_err(|e| e.to_string())?.server.tls.expect("both files given");
        hearth_server::tls::acceptor(&files).map(drop).map_err(|e| e.to_string())
    };
    let missing = PathBuf::from("/nonexistent/hearth.crt");
    let message = error(&missing, &server.key).unwrap_err();
    assert_eq!(message, "--tls-cert /nonexistent/hearth.crt: no such file");
    let message = error(&server.key, &server.key).unwrap_err();
    assert!(message.starts_with("--tls-cert ") && message.ends_with("no PEM certificate in the file"), "{message}");
    let message = error(&server.cert, &server.cert).unwrap_err();
    assert!(message.starts_with("--tls-key "), "{message}");
    let message = error(&server.cert, &other.key).unwrap_err();
    assert!(message.starts_with("--tls-cert and --tls-key are not a usable pair"), "{message}");
    assert!(error(&server.cert, &server.key).is_ok());
}

#[test]
fn the_binary_serves_https_and_says_so() {
    let (model, files) = (tiny_model(), &certificates().server);
    let [model, cert, key] = [&model, &files.cert, &files.key].map(|p| p.to_str().unwrap().to_string());
    let mut hearth = Hearth::start(&["--model", &model, "--threads", "1", "--tls-cert", &cert, "--tls-key", &key]);
    assert!(hearth.url.starts_with("https://127.0.0.1:"), "{}", hearth.url);
    let address = hearth.address();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let response = runtime.block_on(async {
        let mut tls = connect_tls(address).await;
        send(&mut tls, &raw_request(address, "GET", "/v1/models", None)).await;
        read_all(&mut tls, Vec::new()).await
    });
    assert!(response.starts_with("HTTP/1.1 200") && response.contains(MODEL), "{response}");
    hearth.terminate();
    assert_eq!(hearth.wait(Duration::from_secs(30)), Some(0), "{}", hearth.logs());

    let bad = std::process::Command::new(crate::util::hearth_binary())
        .args(["serve", "--model", &model, "--port", "0", "--tls-cert", &key, "--tls-key", &key])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && stderr.contains("--tls-cert ") && stderr.contains("no PEM certificate"),
        "{stderr}"
    );
}
