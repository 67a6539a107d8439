//! An HTTP echo server on loopback: `POST /echo` answers with the request body and
//! keeps it, so a test can see what a plugin's request really carried.

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use std::sync::{Arc, Mutex};

/// A running echo server; it stops when dropped.
pub struct EchoServer {
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    base_url: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EchoServer {
    pub fn start() -> anyhow::Result<EchoServer> {
        let received: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
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
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        rx.await.ok();
                    })
                    .await
                    .ok();
            });
        });
        Ok(EchoServer { received, base_url, shutdown: Some(tx), thread: Some(thread) })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Bodies received so far.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            tx.send(()).ok();
        }
        if let Some(thread) = self.thread.take() {
            thread.join().ok();
        }
    }
}
