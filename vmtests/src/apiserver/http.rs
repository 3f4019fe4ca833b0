//! The REST surface over HTTPS: path and query parsing, bearer-token
//! checks, JSON bodies, watch streams of newline-delimited events, and
//! errors as `Status` objects.
//!
//! Paths: `/api/v1/...` (core) and `/apis/GROUP/VERSION/...`, then
//! `[namespaces/NS/]PLURAL[/NAME[/status]]`. `limit` and `continue` are
//! ignored: a list always returns everything, in one page.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Bytes, Frame, Incoming};
use serde_json::{Value, json};

use super::{
    resources::{self, Resource},
    selector::Selector,
    store::{ApiError, Part, PatchKind, Preconditions, Store},
};

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// One request as the log keeps it, for tests to assert on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub query: String,
}

impl Logged {
    pub fn is_watch(&self) -> bool {
        self.query
            .split('&')
            .any(|kv| kv == "watch=true" || kv == "watch=1")
    }

    pub fn is_list_of(&self, path: &str) -> bool {
        self.method == "GET" && self.path == path && !self.is_watch()
    }
}

pub struct Ctx {
    pub store: Store,
    pub token: String,
    pub log: Mutex<Vec<Logged>>,
}

/// What a path names.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    resource: &'static Resource,
    namespace: Option<String>,
    name: Option<String>,
    part: Part,
}

fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, rest @ ..] => (Some((*ns).to_owned()), {
            let mut v = vec![*plural];
            v.extend_from_slice(rest);
            v
        }),
        _ => (None, rest.to_vec()),
    };
    let (plural, name, part) = match rest.as_slice() {
        [plural] => (*plural, None, Part::Object),
        [plural, name] => (*plural, Some((*name).to_owned()), Part::Object),
        [plural, name, "status"] => (*plural, Some((*name).to_owned()), Part::Status),
        _ => return None,
    };
    let resource = resources::find(group, version, plural)?;
    // A namespaced path for a cluster-wide resource names nothing.
    if namespace.is_some() && !resource.namespaced {
        return None;
    }
    Some(Target {
        resource,
        namespace,
        name,
        part,
    })
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

/// Percent-decoding (and `+` as space) of one query component.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&text[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed_unsync())
        .expect("valid response")
}

fn error_response(error: &ApiError) -> Response<Body> {
    let code = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &error.status())
}

/// Serves one request; never fails at the HTTP level.
pub async fn handle(
    request: Request<Incoming>,
    ctx: Arc<Ctx>,
) -> Result<Response<Body>, Infallible> {
    let logged = Logged {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
        query: request.uri().query().unwrap_or("").to_owned(),
    };
    ctx.log
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(logged);
    let authorized = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| token == ctx.token);
    if !authorized {
        return Ok(error_response(&ApiError::new(
            401,
            "Unauthorized",
            "Unauthorized",
        )));
    }
    Ok(match serve(request, &ctx).await {
        Ok(response) => response,
        Err(error) => error_response(&error),
    })
}

async fn serve(request: Request<Incoming>, ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let not_found = || {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    };
    let target = parse_path(request.uri().path()).ok_or_else(not_found)?;
    let query = query_pairs(request.uri().query().unwrap_or(""));
    let param = |key: &str| {
        query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let content_type = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let method = request.method().clone();
    let body = request
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::new(400, "BadRequest", e.to_string()))?
        .to_bytes();
    let parse_body = || -> Result<Value, ApiError> {
        if content_type.starts_with("application/apply-patch+yaml") {
            serde_yaml::from_slice(&body)
                .map_err(|e| ApiError::new(400, "BadRequest", e.to_string()))
        } else {
            serde_json::from_slice(&body)
                .map_err(|e| ApiError::new(400, "BadRequest", e.to_string()))
        }
    };
    let store = &ctx.store;
    let (resource, ns) = (target.resource, target.namespace.as_deref());
    match (method, target.name.as_deref()) {
        (Method::GET, None) => {
            let selector = Selector::parse(param("labelSelector"), param("fieldSelector"))
                .map_err(|e| ApiError::new(400, "BadRequest", e))?;
            if matches!(param("watch"), Some("true" | "1")) {
                return Ok(watch(ctx, &target, selector, &param));
            }
            let (items, rv) = store.list(resource, ns, &selector);
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "apiVersion": resource.api_version(),
                    "kind": format!("{}List", resource.kind),
                    "metadata": {"resourceVersion": rv.to_string()},
                    "items": items,
                }),
            ))
        }
        (Method::GET, Some(name)) => Ok(json_response(
            StatusCode::OK,
            &store.get(resource, ns, name)?,
        )),
        (Method::POST, None) => Ok(json_response(
            StatusCode::CREATED,
            &store.create(resource, ns, parse_body()?)?,
        )),
        (Method::PUT, Some(name)) => Ok(json_response(
            StatusCode::OK,
            &store.update(resource, ns, name, parse_body()?, target.part)?,
        )),
        (Method::PATCH, Some(name)) => {
            let body = parse_body()?;
            let patch = match content_type.split(';').next().unwrap_or("") {
                "application/merge-patch+json" => PatchKind::Merge(body),
                "application/json-patch+json" => PatchKind::Json(body),
                "application/apply-patch+yaml" => match param("fieldManager") {
                    Some(manager) if !manager.is_empty() => PatchKind::Apply {
                        applied: body,
                        manager: manager.to_owned(),
                    },
                    _ => {
                        return Err(ApiError::new(
                            400,
                            "BadRequest",
                            "PATCH requests with apply-patch must have a fieldManager",
                        ));
                    }
                },
                other => {
                    return Err(ApiError::new(
                        415,
                        "UnsupportedMediaType",
                        format!("the double does not take {other:?} patches"),
                    ));
                }
            };
            Ok(json_response(
                StatusCode::OK,
                &store.patch(resource, ns, name, &patch, target.part)?,
            ))
        }
        (Method::DELETE, Some(name)) => {
            let options: Value = if body.is_empty() {
                json!({})
            } else {
                parse_body()?
            };
            let preconditions = Preconditions {
                uid: options["preconditions"]["uid"].as_str().map(str::to_owned),
                resource_version: options["preconditions"]["resourceVersion"]
                    .as_str()
                    .map(str::to_owned),
            };
            Ok(json_response(
                StatusCode::OK,
                &store.delete(resource, ns, name, &preconditions)?,
            ))
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "the double does not serve this method here",
        )),
    }
}

/// A watch response: newline-delimited JSON events until `timeoutSeconds`
/// or until the store ends the watch (after an ERROR event).
fn watch<'a>(
    ctx: &Ctx,
    target: &Target,
    selector: Selector,
    param: &impl Fn(&str) -> Option<&'a str>,
) -> Response<Body> {
    let since = param("resourceVersion")
        .filter(|rv| !rv.is_empty() && *rv != "0")
        .map(|rv| rv.parse::<u64>().unwrap_or(0));
    let bookmarks = param("allowWatchBookmarks") == Some("true");
    let timeout = Duration::from_secs(
        param("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .unwrap_or(1800),
    );
    let events = match ctx.store.watch(
        target.resource,
        target.namespace.clone(),
        selector,
        since,
        bookmarks,
    ) {
        Ok(events) => events,
        Err(error) => {
            // A watch from a compacted version is a 200 carrying one ERROR
            // event, as the API server answers it.
            let event = json!({"type": "ERROR", "object": error.status()});
            return json_response(StatusCode::OK, &event);
        }
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let stream = futures::stream::unfold(events, move |mut events| async move {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .ok()??;
        let mut line = event.to_string();
        line.push('\n');
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(line))), events))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(BodyExt::boxed_unsync(StreamBody::new(stream)))
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_resource_namespace_object_and_subresource() {
        let t = parse_path("/api/v1/namespaces/shop/pods/web/status").unwrap();
        assert_eq!(
            (
                t.resource.kind,
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.part
            ),
            ("Pod", Some("shop"), Some("web"), Part::Status)
        );
        let t = parse_path("/api/v1/namespaces/shop").unwrap();
        assert_eq!(
            (t.resource.kind, t.name.as_deref()),
            ("Namespace", Some("shop"))
        );
        let t = parse_path("/api/v1/namespaces").unwrap();
        assert_eq!((t.resource.kind, t.name), ("Namespace", None));
        let t = parse_path("/apis/sluice.io/v1alpha1/sluiceidentities/300/status").unwrap();
        assert_eq!((t.resource.kind, t.part), ("SluiceIdentity", Part::Status));
        assert!(parse_path("/apis/sluice.io/v1alpha1/namespaces/x/sluiceidentities").is_none());
        assert!(parse_path("/apis/apps/v1/deployments").is_none());
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let pairs = query_pairs("&fieldSelector=spec.nodeName%3Dnode-1&labelSelector=a+in+%28b%29");
        assert_eq!(
            pairs[0],
            ("fieldSelector".into(), "spec.nodeName=node-1".into())
        );
        assert_eq!(pairs[1].1, "a in (b)");
    }
}
