//! The one error type reconcilers return.

use kube::runtime::finalizer;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    #[error(transparent)]
    Pool(#[from] crate::ipam::pool::PoolError),
    #[error("no free identity number left (256-65535 all taken)")]
    IdentitiesExhausted,
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// Short label for the `reconcile_errors_total` metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::Pool(_) => "pool",
            Error::IdentitiesExhausted => "identities_exhausted",
            Error::Invalid(_) => "invalid",
        }
    }
}

/// Whether `error` is the API server's 409 Conflict / AlreadyExists.
pub fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// Whether `error` is the API server's 404 Not Found.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}
