//! A page that could not be built: the store is down or the query is bad.

use axum::{
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};
use maud::html;

#[derive(Debug)]
pub enum PageError {
    /// Redis (the management store) did not answer.
    Store(String),
    /// A query parameter we cannot use; the message says which.
    BadQuery(String),
    NotFound(String),
}

impl From<sluice_store::StoreError> for PageError {
    fn from(e: sluice_store::StoreError) -> Self {
        PageError::Store(e.to_string())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            PageError::Store(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Management store unavailable",
                m,
            ),
            PageError::BadQuery(m) => (StatusCode::BAD_REQUEST, "Bad request", m),
            PageError::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!("dashboard: {message}");
        }
        let body = html! {
            (maud::DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { (title) " · Sluice" }
                    link rel="icon" href="/static/favicon.svg";
                    link rel="stylesheet" href="/static/style.css";
                }
                body {
                    main {
                        h1 { (title) }
                        p role="alert" { (message) }
                        p { a href="/" { "Back to the overview" } }
                    }
                }
            }
        };
        (status, Html(body.into_string())).into_response()
    }
}
