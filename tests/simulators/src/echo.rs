//! An HTTP echo server on loopback that keeps what it receives, so a test can see
//! what a plugin's request really carried:
//! - `POST /echo` answers with the request body, gzip-compressed (with
//!   `Content-Encoding: gzip`) when the request accepts gzip, as real servers do;
//! - `POST /echo-json` answers `{"echo": "..."}` with every character of the body
//!   written as a JSON `\u` escape;
//! - anything else answers 404, and is kept whole (request line, headers, body) in
//!   `requests`, as every request is.

use crate::serve::{bind, spawn, Background};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use std::sync::{Arc, Mutex};

/// A running echo server; it stops when dropped.
pub struct EchoServer {
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    requests: Arc<Mutex<Vec<String>>>,
    base_url: String,
    _server: Background,
}

impl EchoServer {
    pub fn start() -> anyhow::Result<EchoServer> {
        let received: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let listener = bind()?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let keep = requests.clone();
        let app = Router::new()
            .route("/echo", post(echo))
            .route("/echo-json", post(echo_json))
            .fallback(|| async { axum::http::StatusCode::NOT_FOUND })
            .with_state(received.clone())
            .layer(axum::middleware::from_fn(move |request, next| record(keep.clone(), request, next)));
        let server = spawn("echo-server", vec![(listener, app)])?;
        Ok(EchoServer { received, requests, base_url, _server: server })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Every request received so far, whole: request line, headers, body.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// Bodies received so far.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.received.lock().unwrap().clone()
    }
}

type Received = Arc<Mutex<Vec<Vec<u8>>>>;

/// Keeps a request whole, then passes it on.
async fn record(
    requests: Arc<Mutex<Vec<String>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 16 << 20).await.unwrap_or_default();
    let mut text = format!("{} {}\n", parts.method, parts.uri);
    for (name, value) in &parts.headers {
        text.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())));
    }
    text.push('\n');
    text.push_str(&String::from_utf8_lossy(&bytes));
    requests.lock().unwrap().push(text);
    next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

async fn echo(State(received): State<Received>, headers: HeaderMap, body: Bytes) -> Response {
    received.lock().unwrap().push(body.to_vec());
    let gzip = headers.get("accept-encoding").and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("gzip"));
    if !gzip {
        return body.into_response();
    }
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&body).expect("compress in memory");
    ([("content-encoding", "gzip")], encoder.finish().expect("compress in memory")).into_response()
}

async fn echo_json(State(received): State<Received>, body: Bytes) -> Response {
    received.lock().unwrap().push(body.to_vec());
    let escaped: String = String::from_utf8_lossy(&body).encode_utf16().map(|u| format!("\\u{u:04x}")).collect();
    ([("content-type", "application/json")], format!("{{\"echo\":\"{escaped}\"}}")).into_response()
}
