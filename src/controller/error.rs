//! The failures of one reconcile, each with a stable [`Reason`].

use std::time::Duration;

use super::desired::BuildError;
use crate::api::Reason;
use crate::providers::ProviderError;
use crate::stores::StoreError;

/// Failures of one reconcile. Each has a stable [`Error::reason`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {call}: {detail}")]
    Kube {
        /// Which call, e.g. `apply Secret "db"` (names, never values).
        call: String,
        /// What the API server said.
        detail: String,
    },
    /// The provider failed.
    #[error("store {store:?}: {source}")]
    Provider {
        /// The store.
        store: String,
        /// The classified failure.
        source: ProviderError,
    },
    /// The store cannot be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The desired Secret cannot be built (bad input), or the target refuses it.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// This replica lost (or does not hold) the leader lease: it must not write.
    #[error("not the leader; writes are left to the lease holder")]
    NotLeader,
    /// The finalizer machinery failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// A write lost an optimistic-concurrency race (409 Conflict, or the finalizer patch's `test`
    /// failing because someone changed the object first): retried within a fraction of a second
    /// against the newer version, not backed off like a failure.
    #[error("Kubernetes API conflict: {call}: {detail}")]
    Conflict {
        /// Which call.
        call: String,
        /// What the API server said.
        detail: String,
    },
}

impl Error {
    /// Stable category: condition reason, event reason, metric label.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Kube { .. } | Self::Conflict { .. } => Reason::KubernetesError,
            Self::Provider { source, .. } => source.reason(),
            Self::Store(e) => e.reason(),
            Self::Build(e) => e.reason,
            Self::Finalizer(_) => Reason::FinalizerError,
            Self::NotLeader => Reason::NotLeader,
        }
    }

    /// The provider's retry hint, if it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Provider { source, .. } => source.retry_after(),
            _ => None,
        }
    }

    /// Whether the failure is about the spec or its store (the status then records the generation
    /// as observed: nothing changes until the spec or the store does).
    pub fn observes_spec(&self) -> bool {
        matches!(self, Self::Build(_) | Self::Store(_))
    }

    /// The outcome of an audit `deny` record for a refusal: the tenancy denials, a store missing
    /// from the SecretRef's namespace or unusable, a spec or template the controller refuses, a
    /// target Secret it must not write, a value that fails validation. `None` for failures that are
    /// not refusals.
    pub fn refusal(&self) -> Option<Reason> {
        match self {
            Self::Store(StoreError::Unavailable { .. }) => None,
            Self::Store(s) => Some(s.reason()),
            Self::Build(b)
                if matches!(
                    b.reason,
                    Reason::InvalidSpec
                        | Reason::TemplateFailed
                        | Reason::InvalidValue
                        | Reason::TargetConflict
                        | Reason::TargetTypeMismatch
                ) =>
            {
                Some(b.reason)
            }
            _ => None,
        }
    }

    /// The reason of the Warning event announcing this failure.
    pub fn event_reason(&self) -> Reason {
        match self {
            Self::Provider {
                source: ProviderError::AccessDenied { .. },
                ..
            } => Reason::AccessDenied,
            Self::Store(s) if s.is_denial() => Reason::AccessDenied,
            Self::Build(b) if b.reason == Reason::TargetConflict => Reason::TargetConflict,
            _ => Reason::SyncFailed,
        }
    }
}

/// A failed Kubernetes API call, naming it (`call`, e.g. `apply Secret "db"`). A 409 is a lost race.
pub fn kube_err(call: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let call = call.into();
    move |e| match &e {
        kube::Error::Api(s) if s.code == 409 => Error::Conflict {
            call,
            detail: kube_error_summary(&e),
        },
        _ => Error::Kube {
            call,
            detail: kube_error_summary(&e),
        },
    }
}

/// The finalizer helper's own API failures. Its patches carry a JSON-patch `test` of the
/// finalizer list, which the API server refuses (422) when the list changed since our copy — as
/// when the fast lane and the queue both add the finalizer to a new SecretRef.
pub fn finalizer_err(e: &kube::Error) -> Error {
    match e {
        kube::Error::Api(s) if s.code == 409 || s.code == 422 => Error::Conflict {
            call: "patch SecretRef finalizers".into(),
            detail: kube_error_summary(e),
        },
        other => Error::Finalizer(kube_error_summary(other)),
    }
}

/// A one-line summary of a Kubernetes client error (status code and reason, no bodies).
pub fn kube_error_summary(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("API error {} {}", s.code, s.reason),
        other => other.to_string(),
    }
}
