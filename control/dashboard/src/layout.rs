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
                    @if viewer.authenticated {
                        form.logout method="post" action="/auth/logout" {
                            input type="hidden" name="csrf_token" value=(viewer.csrf_token);
                            button type="submit" { "Log out" }
                        }
                    }
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

/// A logged-in user whose clusters' RBAC grants nothing: why, and what
/// to ask for (403).
pub fn denied(user: &str, why: &str, csrf_token: &str) -> Response {
    let body = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Access denied · Sluice" }
                link rel="stylesheet" href="/static/style.css";
            }
            body {
                main #main {
                    h1 { "Access denied" }
                    p { "You are logged in as " strong { (user) } ", but no cluster lets you see anything." }
                    p.denial { (why) }
                    p { "Ask a cluster administrator for a RoleBinding (or ClusterRoleBinding) that grants "
                        code { "get" } " on " code { "pods" } " to your user or one of your groups." }
                    form method="post" action="/auth/logout" {
                        input type="hidden" name="csrf_token" value=(csrf_token);
                        button type="submit" { "Log out" }
                    }
                }
            }
        }
    };
    (axum::http::StatusCode::FORBIDDEN, Html(body.into_string())).into_response()
}

/// A data table: a caption for screen readers, one header cell per column
/// (`scope="col"`), and `rows` (the `tr`s) as its body.
pub fn table(caption: &str, columns: &[&str], rows: Markup) -> Markup {
    html! {
        table {
            caption.visually-hidden { (caption) }
            thead {
                tr {
                    @for column in columns {
                        th scope="col" { (column) }
                    }
                }
            }
            tbody { (rows) }
        }
    }
}
