//! One module per page. Handlers take the [`Viewer`] and filter by its
//! scope before anything is rendered.

pub mod clusters;
pub mod insights;
pub mod overview;
pub mod pods;
pub mod policies;
pub mod services;

use maud::{Markup, html};
use serde::Deserialize;

use crate::{
    data::{Filter, Listing},
    error::PageError,
    layout,
    paging::{self, Paging},
};

/// The query of a table page: `?cluster=&namespace=&q=&page=&per_page=`.
#[derive(Debug, Default, Deserialize)]
pub struct TableQuery {
    #[serde(default)]
    pub cluster: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub q: String,
    pub page: Option<usize>,
    pub per_page: Option<usize>,
}

impl TableQuery {
    pub fn filter(&self) -> Filter {
        Filter {
            cluster: self.cluster.clone(),
            namespace: self.namespace.clone(),
            text: self.q.trim().to_string(),
        }
    }

    pub fn paging(&self) -> Paging {
        Paging::new(self.page, self.per_page)
    }

    /// The filter form and the pagination above a table.
    pub fn controls(&self, path: &str, clusters: &[String], listing: &Listing) -> (Markup, Markup) {
        let form = layout::filters(
            path,
            &[
                ("cluster", "Cluster", &self.cluster, clusters.to_vec()),
                (
                    "namespace",
                    "Namespace",
                    &self.namespace,
                    listing.namespaces.iter().cloned().collect(),
                ),
                ("q", "Name contains", &self.q, Vec::new()),
            ],
        );
        let params = [
            ("cluster", self.cluster.as_str()),
            ("namespace", self.namespace.as_str()),
            ("q", self.q.as_str()),
        ];
        let nav = paging::nav(path, &params, self.paging(), listing.total);
        (form, nav)
    }
}

pub async fn not_found() -> PageError {
    PageError::NotFound("There is no such page.".into())
}

/// A table cell for a possibly missing string.
pub fn or_dash(value: Option<&str>) -> Markup {
    html! {
        @match value.filter(|v| !v.is_empty()) {
            Some(v) => (v),
            None => span.muted aria-label="none" { "—" },
        }
    }
}
