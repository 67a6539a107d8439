//! Serving axum routers on loopback listeners from a background thread, stopped
//! when the handle is dropped: the plumbing every simulator shares.

use axum::Router;
use std::net::TcpListener;

/// Binds an ephemeral port of 127.0.0.1.
pub fn bind() -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Routers being served; dropping it shuts them down and waits for the thread.
pub struct Background {
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Serves each router on its listener, on a runtime of two worker threads.
pub fn spawn(name: &str, servers: Vec<(TcpListener, Router)>) -> anyhow::Result<Background> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let thread = std::thread::Builder::new().name(name.into()).spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("simulator runtime");
        runtime.block_on(async move {
            let tasks = servers.into_iter().map(|(listener, app)| {
                let mut rx = rx.clone();
                async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("simulator listener");
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            rx.wait_for(|stop| *stop).await.ok();
                        })
                        .await
                        .ok();
                }
            });
            futures_util::future::join_all(tasks).await;
        });
    })?;
    Ok(Background { shutdown: Some(tx), thread: Some(thread) })
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            tx.send(true).ok();
        }
        if let Some(thread) = self.thread.take() {
            thread.join().ok();
        }
    }
}
