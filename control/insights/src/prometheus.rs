//! [`PromSource`] over Prometheus' HTTP API (`GET /api/v1/query`).

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde::Deserialize;

use crate::{input::Sample, sources::PromSource};

/// Per-query deadline: a slow Prometheus must not stall the pass.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct PrometheusHttp {
    /// `http://host:port` (no trailing slash).
    base: String,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl PrometheusHttp {
    /// `base` is Prometheus' address, `http://host:port` (plain HTTP:
    /// Prometheus runs next to the management server).
    pub fn new(base: &str) -> Result<Self, String> {
        let base = base.trim_end_matches('/').to_string();
        let uri: http::Uri = base
            .parse()
            .map_err(|e| format!("prometheus address {base:?}: {e}"))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(format!(
                "prometheus address {base:?}: expected http://host:port"
            ));
        }
        Ok(Self {
            base,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    async fn get(&self, promql: &str) -> Result<(http::StatusCode, Bytes), String> {
        let query: String = url::form_urlencoded::byte_serialize(promql.as_bytes()).collect();
        let uri: http::Uri = format!("{}/api/v1/query?query={query}", self.base)
            .parse()
            .map_err(|e| format!("query URI: {e}"))?;
        let request = async {
            let response = self.client.get(uri).await.map_err(|e| format!("{e:?}"))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(QUERY_TIMEOUT, request)
            .await
            .map_err(|_| format!("no answer within {QUERY_TIMEOUT:?}"))?
    }
}

#[derive(Deserialize)]
struct Response {
    status: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: Vec<VectorSample>,
}

#[derive(Deserialize)]
struct VectorSample {
    metric: std::collections::BTreeMap<String, String>,
    /// `[unix time, "value"]`.
    value: (f64, String),
}

/// An instant vector from Prometheus' JSON answer.
fn parse(status: http::StatusCode, body: &[u8]) -> Result<Vec<Sample>, String> {
    let response: Response = serde_json::from_slice(body)
        .map_err(|e| format!("HTTP {status}: unreadable answer: {e}"))?;
    if response.status != "success" {
        return Err(format!("HTTP {status}: {}", response.error));
    }
    let data = response.data.ok_or("a success without data")?;
    if data.result_type != "vector" {
        return Err(format!(
            "expected an instant vector, got {}",
            data.result_type
        ));
    }
    data.result
        .into_iter()
        .map(|s| {
            let value = s
                .value
                .1
                .parse::<f64>()
                .map_err(|e| format!("sample value {:?}: {e}", s.value.1))?;
            Ok(Sample {
                labels: s.metric,
                value,
            })
        })
        .collect()
}

impl PromSource for PrometheusHttp {
    async fn query(&self, promql: &str) -> Result<Vec<Sample>, String> {
        let (status, body) = self.get(promql).await?;
        parse(status, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_into_samples_and_errors_keep_their_reason() {
        let ok = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"cluster":"c1","reason":"policy_denied"},"value":[1.7e9,"25.5"]}]}}"#;
        let samples = parse(http::StatusCode::OK, ok).unwrap();
        assert_eq!(samples[0].value, 25.5);
        assert_eq!(samples[0].labels["reason"], "policy_denied");
        let bad = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        let err = parse(http::StatusCode::BAD_REQUEST, bad).unwrap_err();
        assert!(err.contains("400") && err.contains("parse error"), "{err}");
        assert!(parse(http::StatusCode::OK, b"<html>").is_err());
        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[]}}"#;
        assert!(
            parse(http::StatusCode::OK, scalar)
                .unwrap_err()
                .contains("scalar")
        );
    }

    #[test]
    fn addresses_are_checked() {
        assert!(PrometheusHttp::new("http://127.0.0.1:9090/").is_ok());
        assert!(PrometheusHttp::new("https://prom:9090").is_err());
        assert!(PrometheusHttp::new("prom:9090").is_err());
    }
}
