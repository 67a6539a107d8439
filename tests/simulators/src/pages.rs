//! A loopback server of fixed JSON pages behind a bearer token: enough of an API
//! for a new plugin's first end-to-end test (the plugin author's guide uses it).

use crate::serve::{bind, spawn, Background};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::collections::HashMap;
use std::sync::Arc;

/// A running page server; it stops when dropped.
pub struct PagesServer {
    base_url: String,
    _server: Background,
}

struct Pages {
    token: String,
    /// Body by path and query, e.g. `/api/findings?page=2`.
    bodies: HashMap<String, String>,
}

impl PagesServer {
    /// Serves `pages` (path and query, body) to requests bearing `token`; `{base}`
    /// in a body becomes the server's base URL, for links to further pages.
    pub fn start(token: &str, pages: &[(&str, &str)]) -> anyhow::Result<PagesServer> {
        let listener = bind()?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let bodies = pages.iter().map(|(path, body)| ((*path).to_owned(), body.replace("{base}", &base_url))).collect();
        let app = Router::new().fallback(serve).with_state(Arc::new(Pages { token: token.to_owned(), bodies }));
        let server = spawn("pages-server", vec![(listener, app)])?;
        Ok(PagesServer { base_url, _server: server })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}

async fn serve(State(pages): State<Arc<Pages>>, uri: Uri, headers: HeaderMap) -> Response {
    let bearer = format!("Bearer {}", pages.token);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(bearer.as_str()) {
        return (StatusCode::UNAUTHORIZED, "{\"error\": \"bad token\"}").into_response();
    }
    let key = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    match pages.bodies.get(key) {
        Some(body) => ([("content-type", "application/json")], body.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, "{\"error\": \"no such page\"}").into_response(),
    }
}
