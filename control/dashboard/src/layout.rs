//! The page shell: head, the no-auth banner, navigation, main content.

use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::viewer::Viewer;

/// The navigation, in order: (path, label).
pub const NAV: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/clusters", "Clusters"),
    ("/pods", "Pods"),
    ("/services", "Services"),
    ("/policies", "Policies"),
    ("/insights", "Insights"),
];

/// A full page; `current` is the path of its navigation entry.
pub fn page(viewer: &Viewer, current: &str, title: &str, content: Markup) -> Response {
    let body = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Sluice" }
                link rel="icon" href="/static/favicon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/static/style.css";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                @if !viewer.authenticated {
                    p.banner role="status" {
                        strong { "Authentication disabled." }
                        " Everyone who can reach this address sees every cluster."
                    }
                }
                header {
                    span.brand { "Sluice" }
                    nav aria-label="Main" {
                        ul {
                            @for (path, label) in NAV {
                                li {
                                    a href=(path) aria-current=[(*path == current).then_some("page")] { (label) }
                                }
                            }
                        }
                    }
                    span.viewer { "Viewer: " (viewer.name) }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (content)
                }
            }
        }
    };
    Html(body.into_string()).into_response()
}

/// A GET form of filters; `fields` are (name, label, current value,
/// choices — empty for free text).
pub fn filters(action: &str, fields: &[(&str, &str, &str, Vec<String>)]) -> Markup {
    html! {
        form.filters method="get" action=(action) role="search" {
            @for (name, label, value, choices) in fields {
                label for=(format!("f-{name}")) { (label) }
                @if choices.is_empty() {
                    input id=(format!("f-{name}")) name=(name) type="search" value=(value);
                } @else {
                    select id=(format!("f-{name}")) name=(name) {
                        option value="" selected[value.is_empty()] { "any" }
                        @for choice in choices {
                            option value=(choice) selected[choice == value] { (choice) }
                        }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
    }
}
