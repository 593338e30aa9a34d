//! `GET /` serves the chat page from the binary; every asset it loads is served with its type and
//! the page's security headers; unknown assets are a JSON 404.

use crate::support::harness::{test_settings, TempDir, TestServer};
use crate::support::test_agent;

async fn server() -> TestServer {
    let dir = TempDir::with_rooms(&[&test_agent::room("echo", 2, 0, false)]);
    let settings = test_settings("http://127.0.0.1:9", dir.path.clone());
    TestServer::start_with(settings, test_agent::registry(), dir).await
}

async fn fetch(server: &TestServer, path: &str) -> (u16, String, String, String) {
    let resp = TestServer::client()
        .get(format!("{}{path}", server.url))
        .send()
        .await
        .expect("GET");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (content_type, csp) = (header("content-type"), header("content-security-policy"));
    let status = resp.status().as_u16();
    (status, content_type, csp, resp.text().await.expect("body"))
}

/// The `/assets/...` paths a text references, in `"..."` or `'./name'` form.
fn referenced_assets(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for quote in ['"', '\''] {
        for part in text.split(quote).skip(1).step_by(2) {
            if let Some(name) = part.strip_prefix("/assets/").or(part.strip_prefix("./")) {
                if !name.is_empty() && !name.contains('/') {
                    found.push(name.to_owned());
                }
            }
        }
    }
    found
}

#[tokio::test]
async fn the_page_and_everything_it_loads_is_served_from_the_binary() {
    let server = server().await;
    let (status, content_type, csp, html) = fetch(&server, "/").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/html; charset=utf-8");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(html.contains("id=\"transcript\""));

    let mut queue = referenced_assets(&html);
    assert!(queue.contains(&"app.js".to_owned()), "{queue:?}");
    let mut seen = Vec::new();
    while let Some(name) = queue.pop() {
        if seen.contains(&name) {
            continue;
        }
        let (status, content_type, _, body) = fetch(&server, &format!("/assets/{name}")).await;
        assert_eq!(status, 200, "/assets/{name}");
        let expected = match name.rsplit('.').next() {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            other => panic!("unexpected asset type {other:?}"),
        };
        assert_eq!(content_type, expected, "/assets/{name}");
        if name.ends_with(".js") {
            queue.extend(referenced_assets(&body));
        }
        seen.push(name);
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "app.js",
            "favicon.svg",
            "markdown.js",
            "patch.js",
            "room-brainstorm.js",
            "room-debate.js",
            "room-shark-tank.js",
            "room-views.js",
            "sse.js",
            "style.css"
        ]
    );
}

#[tokio::test]
async fn an_unknown_asset_is_a_json_404() {
    let server = server().await;
    let (status, content_type, _, body) = fetch(&server, "/assets/nope.js").await;
    assert_eq!(status, 404);
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert!(body.contains("\"not_found\""), "{body}");
}
