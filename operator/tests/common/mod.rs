//! A tower-test mock API server: each test states the exact requests the
//! reconciler must send (method, path and query, body) and the replies.
#![allow(dead_code)] // each test file uses a subset

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::{Client, client::Body};
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

pub type MockHandle = Handle<Request<Body>, Response<Body>>;

pub fn mock_client() -> (Client, MockHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

/// One expected request and the reply to send.
pub struct Exchange {
    pub method: Method,
    pub uri: String,
    /// Exact JSON body, or `None` for a bodiless request.
    pub body: Option<Value>,
    pub content_type: Option<&'static str>,
    /// For bodies with a value only known at run time (a timestamp).
    pub check: Option<fn(&Value)>,
    pub status: StatusCode,
    pub reply: Value,
}

impl Exchange {
    pub fn new(method: Method, uri: &str) -> Self {
        Self {
            method,
            uri: uri.to_owned(),
            body: None,
            content_type: None,
            check: None,
            status: StatusCode::OK,
            reply: json!({}),
        }
    }

    pub fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    pub fn check(mut self, check: fn(&Value)) -> Self {
        self.check = Some(check);
        self
    }

    pub fn content_type(mut self, content_type: &'static str) -> Self {
        self.content_type = Some(content_type);
        self
    }

    pub fn reply(mut self, status: StatusCode, reply: Value) -> Self {
        self.status = status;
        self.reply = reply;
        self
    }
}

/// Serves `exchanges` in order, asserting each request; then asserts that
/// nothing else is requested while the reconciler finishes.
pub async fn serve(mut handle: MockHandle, exchanges: Vec<Exchange>) -> MockHandle {
    for (i, exchange) in exchanges.into_iter().enumerate() {
        let what = format!("request {i}: {} {}", exchange.method, exchange.uri);
        let next = tokio::time::timeout(Duration::from_secs(10), handle.next_request());
        let (request, send) = next
            .await
            .unwrap_or_else(|_| panic!("no request arrived; expected {what}"))
            .unwrap_or_else(|| panic!("client went away; expected {what}"));
        assert_eq!(request.method(), exchange.method, "{what}");
        assert_eq!(request.uri().to_string(), exchange.uri, "{what}");
        if let Some(content_type) = exchange.content_type {
            assert_eq!(
                request
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok()),
                Some(content_type),
                "{what}"
            );
        }
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .expect("request body");
        match (exchange.body, exchange.check) {
            (_, Some(check)) => {
                let actual: Value = serde_json::from_slice(&bytes)
                    .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e})"));
                check(&actual);
            }
            (Some(expected), None) => {
                let actual: Value = serde_json::from_slice(&bytes)
                    .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e})"));
                assert_eq!(actual, expected, "{what}: body");
            }
            (None, None) => assert!(bytes.is_empty(), "{what}: unexpected body"),
        }
        let response = Response::builder()
            .status(exchange.status)
            .header("content-type", "application/json")
            .body(Body::from(exchange.reply.to_string().into_bytes()))
            .expect("response");
        send.send_response(response);
    }
    handle
}

/// Runs `work` against the mock while `exchanges` are served; the mock
/// then must see no further request.
pub async fn scenario<F, T>(handle: MockHandle, exchanges: Vec<Exchange>, work: F) -> T
where
    F: std::future::Future<Output = T>,
{
    let server = tokio::spawn(serve(handle, exchanges));
    let result = tokio::time::timeout(Duration::from_secs(20), work)
        .await
        .expect("reconcile finished");
    let mut handle = server.await.expect("mock server");
    let extra = tokio::time::timeout(Duration::from_millis(50), handle.next_request()).await;
    if let Ok(Some((request, _))) = extra {
        panic!(
            "unexpected extra request: {} {}",
            request.method(),
            request.uri()
        );
    }
    result
}

/// The API server's Status body for an error.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}
