//! API request latency per gRPC method (`sluice_agent_api_request_duration
//! _seconds`), recorded by a tower layer around the tonic server.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use prometheus_client::{
    metrics::{
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

type Labels = Vec<(String, String)>;

/// The latency histograms, one per method.
#[derive(Clone)]
pub struct ApiLatency {
    family: Family<Labels, Histogram, fn() -> Histogram>,
}

impl Default for ApiLatency {
    fn default() -> Self {
        // 50 µs .. ~1.6 s.
        let histogram: fn() -> Histogram =
            || Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        Self {
            family: Family::new_with_constructor(histogram),
        }
    }
}

impl ApiLatency {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "sluice_agent_api_request_duration_seconds",
            "Time the agent took to answer a gRPC request, by method",
            self.family.clone(),
        );
    }

    fn observe(&self, method: &str, seconds: f64) {
        self.family
            .get_or_create(&vec![("method".to_owned(), method.to_owned())])
            .observe(seconds);
    }

    /// The tower layer recording every request.
    pub fn layer(&self) -> tower::layer::util::Stack<Timed, tower::layer::util::Identity> {
        tower::layer::util::Stack::new(
            Timed(Arc::new(self.clone())),
            tower::layer::util::Identity::new(),
        )
    }
}

/// A layer wrapping each service in [`TimedService`].
#[derive(Clone)]
pub struct Timed(Arc<ApiLatency>);

impl<S> tower::Layer<S> for Timed {
    type Service = TimedService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TimedService {
            inner,
            latency: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct TimedService<S> {
    inner: S,
    latency: Arc<ApiLatency>,
}

impl<S, B> tower::Service<http::Request<B>> for TimedService<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // "/sluice.agent.v1.Agent/ListEndpoints" → "ListEndpoints".
        let method = request
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let started = Instant::now();
        let latency = self.latency.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            latency.observe(&method, started.elapsed().as_secs_f64());
            result
        })
    }
}
