//! The real `hearth` binary on the real default model, stopped by a real SIGTERM while it streams.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::{default_model, raw_request, Hearth};

/// Opens a streaming chat on `address`; returns the socket once the first event arrived, and what came.
fn open_stream(address: std::net::SocketAddr) -> (TcpStream, Vec<u8>) {
    let body = json!({"model": "smollm2", "messages": [{"role": "user", "content": "Tell me a story."}],
                      "max_tokens": 128, "ignore_eos": true, "stream": true})
    .to_string();
    let mut socket = TcpStream::connect(address).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    socket.write_all(&raw_request(address, "POST", "/v1/chat/completions", Some(&body))).unwrap();
    let mut received = Vec::new();
    while !String::from_utf8_lossy(&received).contains("data: ") {
        let mut chunk = [0u8; 4096];
        let n = socket.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before the first event: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&chunk[..n]);
    }
    (socket, received)
}

#[test]
fn sigterm_lets_running_streams_finish_and_exits_zero() {
    let model = default_model();
    let mut hearth = Hearth::start(&[
        "--model",
        model.to_str().unwrap(),
        "--served-model-name",
        "smollm2",
        "--threads",
        "1",
        "--shutdown-grace-seconds",
        "60",
    ]);
    let address = hearth.address();
    let streams: Vec<_> = (0..4).map(|_| open_stream(address)).collect();

    hearth.terminate();
    let signalled = Instant::now();
    while TcpStream::connect(address).is_ok() {
        assert!(signalled.elapsed() < Duration::from_secs(5), "still accepting 5 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(hearth.is_running(), "connections must be refused while draining, not only once the process is gone");

    for (mut socket, mut received) in streams {
        socket.read_to_end(&mut received).unwrap();
        let body = String::from_utf8_lossy(&received);
        assert!(body.contains("\"finish_reason\":\"length\""), "{body}");
        assert!(body.contains("data: [DONE]") && !body.contains("\"error\""), "{body}");
    }
    assert_eq!(hearth.wait(Duration::from_secs(30)), Some(0), "{}", hearth.logs());
    assert!(hearth.logs().contains("draining"), "{}", hearth.logs());
}
