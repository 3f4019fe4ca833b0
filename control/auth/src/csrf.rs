//! CSRF protection: every state-changing request (any method but GET,
//! HEAD, OPTIONS) must carry the session's token, in the `x-csrf-token`
//! header or the `csrf_token` field of a urlencoded form; compared in
//! constant time.

use axum::{
    body::{Body, to_bytes},
    extract::{Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use subtle::ConstantTimeEq;

use crate::Auth;

/// Header carrying the token (scripts).
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Form field carrying the token (HTML forms).
pub const CSRF_FIELD: &str = "csrf_token";
/// Largest form body read to find the token.
const MAX_FORM: usize = 1 << 20;

/// Constant-time equality of two tokens.
pub fn tokens_match(expected: &str, given: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// The token of a urlencoded form body.
pub fn form_token(body: &[u8]) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.into_owned())
}

/// Middleware (see [`Auth::protect`]): refuses a state-changing request
/// without the session's CSRF token (403). In the no-auth mode it lets
/// everything through (there is no session to ride on).
pub async fn require_csrf(State(auth): State<Auth>, request: Request, next: Next) -> Response {
    if is_safe(request.method()) || !auth.enabled() {
        return next.run(request).await;
    }
    let session = match auth.session_of(request.headers()).await {
        Ok(Some((_, session))) => session,
        Ok(None) => return (StatusCode::UNAUTHORIZED, "not logged in").into_response(),
        Err(e) => return e.into_response(),
    };
    if let Some(given) = request
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        if tokens_match(&session.csrf, given) {
            return next.run(request).await;
        }
        return refused();
    }
    if !is_form(request.headers()) {
        return refused();
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_FORM).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response();
    };
    match form_token(&bytes) {
        Some(given) if tokens_match(&session.csrf, &given) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        _ => refused(),
    }
}

fn refused() -> Response {
    (StatusCode::FORBIDDEN, "missing or wrong CSRF token").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_forms() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
        assert!(!tokens_match("abc", "ab"));
        assert!(
            !tokens_match("", ""),
            "an empty expected token never matches"
        );
        assert_eq!(
            form_token(b"a=1&csrf_token=x%2By&b=2").as_deref(),
            Some("x+y")
        );
        assert_eq!(form_token(b"a=1"), None);
        assert!(is_safe(&Method::GET) && !is_safe(&Method::POST) && !is_safe(&Method::DELETE));
    }
}
