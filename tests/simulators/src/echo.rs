//! An HTTP echo server on loopback: `POST /echo` answers with the request body and
//! keeps it, so a test can see what a plugin's request really carried.

use crate::serve::{bind, spawn, Background};
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use std::sync::{Arc, Mutex};

/// A running echo server; it stops when dropped.
pub struct EchoServer {
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    base_url: String,
    _server: Background,
}

impl EchoServer {
    pub fn start() -> anyhow::Result<EchoServer> {
        let received: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let listener = bind()?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let app = Router::new()
            .route(
                "/echo",
                post(|State(received): State<Arc<Mutex<Vec<Vec<u8>>>>>, body: Bytes| async move {
                    received.lock().unwrap().push(body.to_vec());
                    body
                }),
            )
            .with_state(received.clone());
        let server = spawn("echo-server", vec![(listener, app)])?;
        Ok(EchoServer { received, base_url, _server: server })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Bodies received so far.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.received.lock().unwrap().clone()
    }
}
