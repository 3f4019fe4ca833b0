//! Server-side pagination: a page number and size from the query, the
//! slice of a sorted listing, and the links to the neighbouring pages.

use std::ops::Range;

use maud::{Markup, html};

pub const DEFAULT_PER_PAGE: usize = 50;
/// A bigger page is cut to this: a page's cost stays bounded.
pub const MAX_PER_PAGE: usize = 500;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paging {
    /// 1-based.
    pub page: usize,
    pub per_page: usize,
}

impl Paging {
    pub fn new(page: Option<usize>, per_page: Option<usize>) -> Self {
        Self {
            page: page.unwrap_or(1).max(1),
            per_page: per_page.unwrap_or(DEFAULT_PER_PAGE).clamp(1, MAX_PER_PAGE),
        }
    }

    /// The indexes of this page in a listing of `total` rows (empty past
    /// the end).
    pub fn range(&self, total: usize) -> Range<usize> {
        let start = (self.page - 1).saturating_mul(self.per_page).min(total);
        start..(start + self.per_page).min(total)
    }

    pub fn pages(&self, total: usize) -> usize {
        total.div_ceil(self.per_page).max(1)
    }
}

/// A query string of `params` (empty values left out) plus `page`.
pub fn href(path: &str, params: &[(&str, &str)], page: usize, per_page: usize) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        if !v.is_empty() {
            query.append_pair(k, v);
        }
    }
    if per_page != DEFAULT_PER_PAGE {
        query.append_pair("per_page", &per_page.to_string());
    }
    query.append_pair("page", &page.to_string());
    format!("{path}?{}", query.finish())
}

/// "Rows a–b of n", previous/next links keeping the filters.
pub fn nav(path: &str, params: &[(&str, &str)], paging: Paging, total: usize) -> Markup {
    let range = paging.range(total);
    let pages = paging.pages(total);
    html! {
        nav.pagination aria-label="Pagination" {
            p {
                @if total == 0 {
                    "No rows."
                } @else if range.is_empty() {
                    "Page " (paging.page) " is past the end (" (total) " rows)."
                } @else {
                    "Rows " (range.start + 1) "–" (range.end) " of " (total)
                    " (page " (paging.page) " of " (pages) ")."
                }
            }
            @if paging.page > 1 {
                a rel="prev" href=(href(path, params, (paging.page - 1).min(pages), paging.per_page)) { "Previous page" }
            }
            @if paging.page < pages {
                a rel="next" href=(href(path, params, paging.page + 1, paging.per_page)) { "Next page" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_slice_the_listing_and_clamp_bad_numbers() {
        let p = Paging::new(Some(2), Some(10));
        assert_eq!(p.range(25), 10..20);
        assert_eq!(Paging::new(Some(3), Some(10)).range(25), 20..25);
        assert_eq!(Paging::new(Some(9), Some(10)).range(25), 25..25);
        assert_eq!(
            Paging::new(Some(0), Some(0)),
            Paging {
                page: 1,
                per_page: 1
            }
        );
        assert_eq!(Paging::new(None, Some(100_000)).per_page, MAX_PER_PAGE);
        assert_eq!(p.pages(25), 3);
        assert_eq!(p.pages(0), 1);
    }

    #[test]
    fn links_keep_the_filters_and_encode_them() {
        assert_eq!(
            href(
                "/pods",
                &[("namespace", "a b"), ("q", "")],
                2,
                DEFAULT_PER_PAGE
            ),
            "/pods?namespace=a+b&page=2"
        );
        assert_eq!(href("/pods", &[], 1, 10), "/pods?per_page=10&page=1");
    }
}
